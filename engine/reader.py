"""Blocking reads of the command streams of every book an engine process serves.

One XREAD over several instruments' streams is a multi-key command across hash slots, which
a Redis Cluster refuses (and the streams may live on different nodes). So each stream is
read on its own: with one book, directly by the engine thread; with several, by one thread
per stream, each blocking on its own stream and handing what it read to the engine thread,
which still applies everything in order, one book at a time.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

from shared.redis_client import Client

Entries = list[tuple[bytes, dict[bytes, bytes]]]
Batch = tuple[str, Entries]
BLOCK_MS = 1000  # how long a reader thread waits per XREAD; also how long a closed one lingers


class CommandReader:
    def __init__(self, client: Client, positions: dict[str, str], count: int) -> None:
        """`positions`: stream -> the id after which to read."""
        self.client = client
        self.positions = dict(positions)
        self.count = count
        self.closed = threading.Event()
        self._ready: queue.Queue[Batch | BaseException] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._turns: dict[str, threading.Semaphore] = {}
        if len(positions) > 1:
            for stream in positions:
                # Read ahead at most one batch: the next read waits until this one is taken.
                turn = threading.Semaphore(1)
                thread = threading.Thread(
                    target=self._follow, args=(stream, turn), daemon=True, name=f"read-{stream}"
                )
                self._threads.append(thread)
                self._turns[stream] = turn
                thread.start()

    def read(self, block_ms: int) -> list[Batch]:
        """What arrived, waiting up to `block_ms` for the first entries; a reader thread's
        Redis error is raised here, on the engine thread."""
        if not self._threads:
            ((stream, after),) = self.positions.items()
            response: Any = self.client.xread({stream: after}, count=self.count, block=block_ms)
            batches = [(stream, entries) for _, entries in response or ()]
        else:
            try:
                first = self._ready.get(timeout=block_ms / 1000)
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
        for stream, entries in batches:
            self.positions[stream] = entries[-1][0].decode()
        return batches

    def _follow(self, stream: str, turn: threading.Semaphore) -> None:
        after = self.positions[stream]
        while not self.closed.is_set():
            turn.acquire()
            try:
                response: Any = self.client.xread({stream: after}, count=self.count, block=BLOCK_MS)
            except Exception as exc:  # handed to the engine thread, which recovers
                self._ready.put(exc)
                return
            if self.closed.is_set():
                return
            if not response:
                turn.release()
                continue
            entries: Entries = response[0][1]
            after = entries[-1][0].decode()
            self._ready.put((stream, entries))

    def close(self) -> None:
        """Stop the reader threads; one blocked in XREAD ends within BLOCK_MS."""
        self.closed.set()
