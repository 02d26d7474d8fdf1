"""Blocking reads of the streams of every book an engine process serves.

Each book reads its own group of streams: a leading book its command stream, a following
book (a standby) the leader's event stream and checkpoint markers. The streams of one group
share the book's hash tag, so one XREAD reads them; but one XREAD over several instruments'
streams is a multi-key command across hash slots, which a Redis Cluster refuses (and the
streams may live on different nodes). So with one book, the engine thread reads directly;
with several, one thread per book blocks on that book's streams and hands what it read to
the engine thread, which still applies everything in order, one book at a time.

The threads only read: the engine thread does every write and every fork (a checkpoint
child touches no lock and no connection that a reader thread might hold).
"""

from __future__ import annotations

import queue
import select
import socket
import threading
from collections.abc import Callable
from typing import Any, cast

import hiredis
import redis

from shared.redis_client import Client
from shared.stream_entries import Entries, streams_of

Read = dict[str, Entries]  # stream -> entries read after its position
Batch = tuple[str, Read]  # group (book) -> what it read
BLOCK_MS = 1000  # how long a reader thread waits per XREAD; also how long a closed one lingers
# One byte more than a carried publish's usual reply (`:0\r\n`), and how long past the read's
# block time the engine waits for the read's reply before it settles anyway: `_send_carried`.
CARRY_LOW_WATER = 5
CARRY_WAIT_SLACK_MS = 1000


def _decoded(name: Any) -> str:
    return name.decode() if isinstance(name, bytes) else str(name)


class StreamReader:
    def __init__(self, client: Client, groups: dict[str, dict[str, str]], count: int) -> None:
        """`groups`: group -> {stream: the id after which to read}, streams of one slot."""
        self.client = client
        self.groups = {name: dict(positions) for name, positions in groups.items()}
        self.count = count
        self.closed = threading.Event()
        self._ready: queue.Queue[Batch | BaseException] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._connections: dict[int, Any] = {}  # thread -> its connection (`_xread_raw`)
        self._turns: dict[str, threading.Semaphore] = {}
        self._carried: tuple[bytes, Callable[[], object]] | None = None  # see `carry`
        if len(groups) > 1:
            for name in groups:
                # Read ahead at most one batch: the next read waits until this one is taken.
                turn = threading.Semaphore(1)
                thread = threading.Thread(
                    target=self._follow, args=(name, turn), daemon=True, name=f"read-{name}"
                )
                self._threads.append(thread)
                self._turns[name] = turn
                thread.start()

    def _xread(self, positions: dict[str, str], block_ms: int) -> Read:
        if isinstance(self.client, redis.Redis):
            response = self._xread_raw(positions, block_ms)
        else:
            block = block_ms or None  # 0: do not wait (XREAD's BLOCK 0 would wait forever)
            response = self.client.xread(positions, count=self.count, block=block)  # type: ignore[arg-type]
        read = {_decoded(stream): entries for stream, entries in streams_of(response) if entries}
        for stream, entries in read.items():
            positions[stream] = _decoded(entries[-1][0])
        return read

    @property
    def carries(self) -> bool:
        """Whether `carry` may be used: the engine thread reads directly, from one server."""
        return not self._threads and isinstance(self.client, redis.Redis)

    def carry(self, packed: bytes, settle: Callable[[], object]) -> Any:
        """Send the command `packed` with the next read, in the same write, on the connection
        returned, where its reply comes first: `settle` reads it once both are sent, before
        the read's own reply. Under live load each batch is then one write for its publish
        and the next read instead of two, on each side of Redis. Only when `carries`."""
        assert self.carries and self._carried is None
        self._carried = (packed, settle)
        return self._connection()

    def _connection(self) -> Any:
        """The calling thread's connection, kept across reads."""
        connection = self._connections.get(threading.get_ident())
        if connection is None:
            pool = cast(redis.Redis, self.client).connection_pool
            connection = self._connections[threading.get_ident()] = pool.get_connection()
        return connection

    def _xread_raw(self, positions: dict[str, str], block_ms: int) -> Any:
        """XREAD on a connection this reader keeps (one per calling thread): on a single
        server, sent and read straight, without the client's per-command dispatch, which
        costs more engine CPU than the read itself when a batch is a few commands. A Redis
        error leaves the connection closed; the service then recovers with a new reader."""
        connection = self._connection()
        command: list[Any] = ["XREAD", "COUNT", self.count]
        if block_ms:  # 0: do not wait (XREAD's BLOCK 0 would wait forever)
            command += ["BLOCK", block_ms]
        command += ["STREAMS", *positions, *positions.values()]
        packed = hiredis.pack_command(tuple(command))
        carried, self._carried = self._carried, None
        try:
            if carried is None:
                connection.send_packed_command([packed])
            else:
                self._send_carried(connection, carried[0] + packed, carried[1], block_ms)
            return connection.read_response()
        except BaseException:
            connection.disconnect()
            raise

    @staticmethod
    def _send_carried(
        connection: Any, packed: bytes, settle: Callable[[], object], block_ms: int
    ) -> None:
        """Send a carried command and the read; settle the carried command's reply.

        Redis answers the carried publish at once, and the read only when commands come.
        Woken for the first answer alone, the engine would read it and sleep again: a
        second wake-up per batch, which costs more CPU than the batch on a machine where
        waking a process on the other core is dear. So it first waits (poll) with the
        socket's receive low-water mark one byte above the publish's usual answer, `:0\r\n`
        (none of this batch's entries was published before): over TCP the kernel wakes it
        once the read's answer begins too. Any other answer is 5 bytes at least and wakes
        it at once: a fence (`:-1\r\n`), an error, or a count of 10 or more entries
        published before (1 to 9, after a takeover, wait for the read like 0). Nothing
        read is applied before the publish is settled.

        Only the wait is under the mark, never a recv: a recv under it that has taken the
        4 bytes waits for 5 more, and an empty read's answer in RESP3 (`_\r\n`) is 3. On a
        Unix socket (poll there ignores the mark) and on TLS (the answer is a record of
        more than 5 bytes) the wait ends at once: no gain, no harm."""
        connection.send_packed_command([packed])
        sock = connection._sock
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, CARRY_LOW_WATER)
        # No longer than the block time with some slack, nor than the socket timeout (a
        # stalled Redis is then reported within twice that, and a timeout shorter than the
        # block fails the read as it fails a plain one). Past that it stops waiting and
        # reads as any read would: the replies come, or the read times out.
        wait_ms = block_ms + CARRY_WAIT_SLACK_MS
        if connection.socket_timeout is not None:
            wait_ms = min(wait_ms, int(connection.socket_timeout * 1000))
        try:
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            poller.poll(wait_ms)
        finally:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
        settle()  # its reply, first

    def _release(self) -> None:
        """Give back the calling thread's connection."""
        connection = self._connections.pop(threading.get_ident(), None)
        if connection is not None:
            cast(redis.Redis, self.client).connection_pool.release(connection)

    def read(self, block_ms: int) -> list[Batch]:
        """What arrived, waiting up to `block_ms` (0: not at all) for the first entries; a
        reader thread's Redis error is raised here, on the engine thread."""
        if not self._threads:
            ((name, positions),) = self.groups.items()
            read = self._xread(positions, block_ms)
            return [(name, read)] if read else []
        try:
            first = self._ready.get(block_ms > 0, block_ms / 1000)
        except queue.Empty:
            return []
        got = [first]
        while not self._ready.empty():
            got.append(self._ready.get_nowait())
        batches = []
        for item in got:
            if isinstance(item, BaseException):
                raise item
            batches.append(item)
            self._turns[item[0]].release()
        return batches

    def _follow(self, name: str, turn: threading.Semaphore) -> None:
        try:
            self._follow_group(name, turn)
        finally:
            self._release()

    def _follow_group(self, name: str, turn: threading.Semaphore) -> None:
        positions = self.groups[name]
        while not self.closed.is_set():
            turn.acquire()
            try:
                read = self._xread(positions, BLOCK_MS)
            except Exception as exc:  # handed to the engine thread, which recovers
                self._ready.put(exc)
                return
            if self.closed.is_set():
                return
            if not read:
                turn.release()
                continue
            self._ready.put((name, read))

    def close(self) -> None:
        """Stop the reader threads; one blocked in XREAD ends within BLOCK_MS."""
        self.closed.set()
        self._release()  # the engine thread's own, when it reads directly
