"""Leadership of one instrument: a lease with a fencing token, and the only writes a leader makes.

Two engine processes may serve one instrument: the one holding the lease leads (matches
and publishes), the other follows as a hot standby (`engine.standby`). Keys, all under the
instrument's hash tag so that every script (`engine.lease_scripts`) touches one Redis
Cluster slot:

- `exchange:{SYM}:engine:lease`: the leader's owner id, with a PX expiry (`LEASE_MS`). The
  leader renews it at least every `RENEW_S` (every publish renews it too). Present means an
  engine leads this instrument and was alive less than `LEASE_MS` ago: it doubles as the
  engine heartbeat that readiness checks.
- `exchange:{SYM}:engine:token`: the fencing token, an integer incremented by every
  acquisition of an expired (or absent) lease. It never expires.
- `exchange:{SYM}:engine:standby`: `<command id> <owner> <store id>`, the last command a
  standby applied and its checkpoint directory (`checkpoint.store_id`), refreshed while it
  runs (expiry `STANDBY_POSITION_MS`): the leader trims the command stream only behind it
  (unless the owner is itself, leading since), and leaves its checkpoints to a standby that
  reported within `FRESH_MS` and shares its checkpoint directory.
- `exchange:{SYM}:engine:checkpoints`: checkpoint markers, `<seq>-0 {c: command id, w}`
  in the same script call as the events up to `seq` (`w`: who writes this checkpoint,
  `leader` or `standby`), and `<seq>-1 {h: state hash, w}` once the writer's child has
  hashed that state. A standby checks its own state hash against a leader's `h`.
- `exchange:{SYM}:engine:standby_checkpoint`: what the standby's child wrote for a marker
  `w=standby` (JSON); the leader publishes its hash as `<seq>-1` and trims (fenced).

Every write of a leader (events, replies, markers, the trim of the command stream, the
book broadcast, the state hash, the lease renewal) is a Lua script that first checks that
the token in Redis is still the one this leader acquired. A leader that was paused past
its lease (SIGSTOP, a long stall) and woke up after a standby took over finds a newer
token and writes nothing: the check and the writes are one atomic script. It then drops
its state and follows the new leader (`LeaseLost`). Each event entry records the token of
the leader that appended it (field `t`), so the stream itself shows who wrote what:
tokens never decrease along it.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import hiredis
import redis
from redis.exceptions import NoScriptError

from shared.config import Settings
from shared.redis_client import Client, ReplicaAcks, node_client

from . import lease_scripts as scripts

LEASE_MS = 500  # expiry of the lease: a dead leader is replaced within this (plus polling)
RENEW_S = 0.1  # a leader renews at least this often
POLL_S = 0.05  # a standby tries to acquire an absent lease this often
STANDBY_POSITION_MS = 2000  # a standby silent this long no longer holds the trim back
FRESH_MS = 1000  # a standby that reported within this may be left the checkpoints
STANDBY_REPORT_S = 300  # expiry of a standby's checkpoint report
LEADER = "leader"
STANDBY = "standby"

_BYTE = [bytes((n,)) for n in range(256)]
_SHORT = struct.Struct(">H").pack
_LONG = struct.Struct(">I").pack


def frame(
    event_id: bytes, request_id: bytes, command_id: bytes, events: bytes, reply: int
) -> tuple[bytes, ...]:
    """One command's part of a batch (`lease_scripts.FRAME`), as pieces to join."""
    return (
        _BYTE[len(event_id)],
        event_id,
        _SHORT(len(request_id)),
        request_id,
        _BYTE[len(command_id)],
        command_id,
        _LONG(len(events)),
        events,
        _SHORT(reply),
    )


@dataclass(frozen=True)
class Marker:
    """A checkpoint marker: the state after command `command`, at `seq`."""

    seq: int
    command: bytes
    writer: str  # LEADER (it forks) or STANDBY (it forks and reports)


class LeaseLost(RuntimeError):
    """Another engine took this instrument over: this one must not write anything more."""


def new_owner_id() -> str:
    """Unique per process; the pid lets operators (and the crash harness) find the leader."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def owner_pid(owner: str) -> int | None:
    """The pid in an owner id, if it has one."""
    parts = owner.split(":")
    return int(parts[-2]) if len(parts) >= 3 and parts[-2].isdigit() else None


class Lease:
    """One instrument's lease as seen by one engine process, and its fenced writes.

    Every script runs on the node that holds the instrument's keys (`node_client`; the
    client itself on a single server). Where that node has a replica in sync (`acks`), a
    batch's events are confirmed by WAIT on the connection that wrote them before its
    replies are appended: no client hears of a write that a failover could still lose."""

    def __init__(
        self, settings: Settings, symbol: str, client: Client, owner: str, acks: ReplicaAcks
    ) -> None:
        self.settings = settings
        self.symbol = symbol
        self.redis = client
        self.owner = owner
        self.acks = acks
        self.token = 0  # 0: not leading
        key = settings.key
        self.lease_key = settings.engine_lease_of(symbol)
        self.token_key = key(symbol, "engine:token")
        self.markers_key = key(symbol, "engine:checkpoints")
        self.event_stream = settings.event_stream_of(symbol)
        self.command_stream = settings.command_stream_of(symbol)
        self.published_key = key(symbol, "engine:published")
        self.state_hash_key = key(symbol, "engine:state_hash")
        self.book_key = key(symbol, "engine:book")
        self.book_channel = settings.book_channel_of(symbol)
        self.standby_key = key(symbol, "engine:standby")
        self.standby_checkpoint_key = key(symbol, "engine:standby_checkpoint")
        self._fence_keys = [self.token_key, self.lease_key]
        self._in_flight: tuple[Any, list[Any], list[Any], bool] | None = None
        # The token under which this leader's publishes are known to be past every entry
        # published before it (see `_checked`): until then each publish looks for them.
        self._verified = 0
        self._publishing: tuple[redis.Redis, Any] | None = None  # (node, its connection)
        self._publishes = 0
        # Each reply entry is also published as a message on a single server, where a
        # replica subscribes to it (`lease_scripts.ANSWER`); on a cluster replicas read.
        self._notices = "1" if isinstance(client, redis.Redis) else "0"

    @property
    def leading(self) -> bool:
        return self.token != 0

    def node(self) -> redis.Redis:
        return node_client(self.redis, self.lease_key)

    def _run(self, script: str, keys: list[str], args: list[Any], wait: int = 0) -> list[Any]:
        """EVALSHA `script` (loading it into a node that lost its script cache, e.g. after
        a restart), then WAIT for `wait` replicas on the same connection."""
        node = self.node()
        sha = scripts.SHA[script]
        for attempt in (1, 2):
            pipe = node.pipeline(transaction=False)
            queue = cast(Callable[..., object], pipe.execute_command)  # untyped in redis-py
            queue("EVALSHA", sha, len(keys), *keys, *args)
            if wait:
                queue("WAIT", wait, self.acks.timeout_ms)
            results: list[Any] = pipe.execute(raise_on_error=False)
            if isinstance(results[0], NoScriptError) and attempt == 1:
                node.script_load(script)
                continue
            if isinstance(results[0], Exception):
                raise results[0]
            return results
        raise AssertionError("unreachable")

    def _fenced(self, script: str, keys: list[str], args: list[Any]) -> list[Any]:
        self.settle()  # in order: the publish in flight first
        results = self._run(script, [*self._fence_keys, *keys], [*self._fence_args(), *args])
        self._fence_check(results[0])
        return results

    def _fence_check(self, result: Any) -> int:
        if result == scripts.FENCED:
            token = self.token
            self.token = 0
            raise LeaseLost(f"{self.symbol}: fencing token {token} is no longer the newest")
        return int(result)

    def _fence_args(self) -> list[Any]:
        return [self.token, self.owner, LEASE_MS]

    def acquire(self) -> bool:
        """Take the lease if nobody holds it; True when this process now leads."""
        keys = [self.lease_key, self.token_key]
        token = int(self._run(scripts.ACQUIRE, keys, [self.owner, LEASE_MS])[0])
        self.token = token
        self._verified = 0  # the first publish looks for what is already published
        return token != 0

    def renew(self) -> None:
        self._fenced(scripts.RENEW, [], [])

    def release(self) -> None:
        """Give the lease up at a clean stop, so that a standby need not wait for it to expire."""
        if self.leading:
            self.settle()
            self._run(scripts.RELEASE, self._fence_keys, [self.token, self.owner])
            self.token = 0

    def publish(
        self,
        frames: bytes,
        replies: list[tuple[str, bytes]],
        marker: Marker | None,
        wait: bool = True,
        carrier: Callable[[bytes], Any] | None = None,
    ) -> int | None:
        """Append a batch's events and replies (and a checkpoint marker); returns how many
        entries were already published. `frames`: the batch, one `frame` per command;
        `replies`: each asking replica's reply stream and its answers to the batch
        (`shared.replies.pack_answers`), in the order of the frames' reply indexes.

        `wait=False` sends the script and returns None at once: the engine matches the next
        batch while Redis appends this one, and `settle` reads the outcome (before the next
        publish, any other write, or a fork). Where a replica must confirm the events first,
        the publish always waits. `carrier` (with `wait=False`): takes the packed script
        call to send with its own next command (`StreamReader.carry`), and returns the
        connection its reply comes back on; nothing else may be sent before that."""
        self.settle()
        keys = [*self._fence_keys, self.event_stream, self.markers_key, self.published_key]
        keys += [key for key, _ in replies]
        node = self.node()
        replicas = self.acks.wanted(node)
        args = [*self._fence_args(), *_marker_args(marker), "0" if replicas else "1", frames]
        args.append(marker.writer if marker else "")
        checking = self._verified != self.token
        args.append("1" if checking else "0")
        self._publishes += 1
        args.append("1" if self._publishes % scripts.TRIM_EVERY == 0 else "0")
        args.append(self._notices)
        args += [answers for _, answers in replies]
        if not replicas and not wait:
            packed = hiredis.pack_command(
                ("EVALSHA", scripts.SHA[scripts.PUBLISH], len(keys), *keys, *args)
            )
            if carrier is not None:
                connection = carrier(packed)
            else:
                connection = self._publisher(node)
                connection.send_packed_command([packed])
            self._in_flight = (connection, keys, args, checking and bool(frames))
            return None
        results = self._run(scripts.PUBLISH, keys, args, wait=replicas)
        skipped = self._fence_check(results[0])
        self._checked(checking and bool(frames), skipped)
        if replicas:
            self.acks.check(node, replicas, int(results[1]))
            args[5] = skipped  # the replies of the entries published now
            self._fence_check(self._run(scripts.REPLIES, keys, args)[0])
        return skipped

    def settle(self) -> int | None:
        """The outcome of the publish in flight, if any: how many entries were already
        published; raises LeaseLost when it was fenced, or its Redis error."""
        if self._in_flight is None:
            return None
        connection, keys, args, checked = self._in_flight
        self._in_flight = None
        try:
            result = connection.read_response()
        except NoScriptError:  # the node restarted meanwhile: nothing was written
            result = self._run(scripts.PUBLISH, keys, args)[0]
        except BaseException:
            connection.disconnect()  # the next publish connects again
            raise
        if isinstance(result, redis.ResponseError):
            raise result
        skipped = self._fence_check(result)
        self._checked(checked, skipped)
        return skipped

    def _checked(self, checked: bool, skipped: int) -> None:
        """After a publish that looked for entries published before it: once one such
        publish skipped none of its (non-empty) batch, this leader appends past everything
        published before it, and only it appends, so later publishes need not look. A batch
        skipped in part or whole (a standby that took over behind the old leader's last
        entries, which may take several batches to pass) keeps the next one looking."""
        if checked and skipped == 0:
            self._verified = self.token

    def abandon(self) -> None:
        """Forget the publish in flight (its connection is closed: after a Redis error,
        recovery finds out what was published)."""
        if self._in_flight is not None:
            connection, _, _, _ = self._in_flight
            self._in_flight = None
            connection.disconnect()

    def _publisher(self, node: redis.Redis) -> Any:
        """The connection that publishes without waiting are sent on, kept across batches:
        a checkout from the pool per batch costs a lock and a readiness poll (a syscall)."""
        if self._publishing is not None:
            kept_node, connection = self._publishing
            if kept_node is node:
                return connection
            kept_node.connection_pool.release(connection)  # the slot moved to another node
        connection = node.connection_pool.get_connection()
        self._publishing = (node, connection)
        return connection

    def checkpointed(
        self,
        seq: int,
        state_hash: str,
        trim_to: str | None,
        marker: Marker | None = None,
        store_hash: bool = False,
        release: bool = False,
        writer: str = LEADER,
    ) -> int:
        """Publish a checkpoint's hash (and its marker when not published with its batch),
        trim the command stream behind the oldest kept checkpoint; at a clean stop also
        store the state hash and release the lease. Returns the number of commands trimmed."""
        keys = [self.markers_key, self.command_stream, self.state_hash_key, self.standby_key]
        args = [
            *_marker_args(marker),
            f"{seq}-1",
            state_hash,
            trim_to or "",
            "1" if store_hash else "0",
            "1" if release else "0",
            writer,
        ]
        trimmed = int(self._fenced(scripts.CHECKPOINTED, keys, args)[0])
        if release:
            self.token = 0
        return trimmed

    def report_position(self, last_command_id: str, store: str) -> None:
        """A standby's progress, which the leader's trim waits for, and its checkpoint
        directory (not fenced: this key only holds the trim back, and makes a leader that
        shares the directory leave the checkpoints to this standby)."""
        position = f"{last_command_id} {self.owner} {store}"  # the leader ignores its own
        self.node().set(self.standby_key, position, px=STANDBY_POSITION_MS)

    def standby_shares(self, store: str) -> bool:
        """Whether another engine follows, reported within FRESH_MS, and writes its
        checkpoints where this one reads them."""
        pipe = self.node().pipeline(transaction=False)
        pipe.get(self.standby_key)
        pipe.pttl(self.standby_key)
        value, ttl = pipe.execute()
        parts = value.decode().split(" ") if value else []
        return (
            len(parts) == 3
            and parts[1] != self.owner
            and parts[2] == store
            and int(ttl) > STANDBY_POSITION_MS - FRESH_MS
        )

    def report_checkpoint(self, report: dict[str, Any]) -> None:
        """A standby's outcome for a marker it was left (not fenced: only read by the
        leader, which checks the seq against its marker before it acts on it)."""
        self.node().set(self.standby_checkpoint_key, json.dumps(report), ex=STANDBY_REPORT_S)

    def standby_checkpoint(self) -> dict[str, Any] | None:
        value = self.node().get(self.standby_checkpoint_key)
        return json.loads(value) if value else None

    def publish_book(self, message: str, expiry_s: int) -> None:
        self._fenced(scripts.BOOK, [self.book_key], [self.book_channel, message, expiry_s])


def _marker_args(marker: Marker | None) -> list[Any]:
    """A marker's id and command as script arguments ('' when there is none)."""
    return [f"{marker.seq}-0", marker.command] if marker else ["", b""]
