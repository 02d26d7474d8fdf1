"""The engine service: the single sequential owner of each book it leads.

For every instrument it serves (ENGINE_SYMBOLS, default all) it runs a `BookService`
(`engine.book_service`), which either leads (holds the instrument's lease and publishes)
or follows as a hot standby. One thread applies every book's commands in turn; reads come
from one reader thread per instrument (`engine.reader`).

After any Redis error the service drops its in-memory state and recovers again (newest
checkpoint + replay), which is simpler than reasoning about which of its writes landed.

Checkpoints are taken by a forked child (`engine.checkpoint_job`): the engine thread only
pays for the fork, and pays nothing while a live standby shares its checkpoint directory:
the standby then forks at the boundary the leader marks (`engine.leader_checkpoints`).
"""

from __future__ import annotations

import gc
import signal
import time
from typing import Any

import redis
import structlog

from shared.config import Settings
from shared.logs import configure
from shared.redis_client import TRANSIENT_ERRORS, Client, connect

from .book_service import READ_BATCH, BookService
from .checkpoint_job import CheckpointFailed
from .core_import import status
from .lease import POLL_S, RENEW_S, LeaseLost, new_owner_id
from .reader import StreamReader
from .standby import Diverged

EXIT_DIVERGED = 2


def raw_client(url: str) -> Client:
    """A client whose stream reads return Redis's reply as is (lists of ids and flat field
    lists) on a single server: the default parsing into tuples and dicts costs microseconds
    per entry. (A cluster client parses on each node's client; `field` reads either form.)"""
    client = connect(url)
    if isinstance(client, redis.Redis):
        for command in ("XREAD", "XRANGE", "XREVRANGE"):
            client.set_response_callback(command, lambda response, **options: response)
    return client


class EngineService:
    def __init__(self, settings: Settings, client: Client) -> None:
        self.settings = settings
        self.redis = client
        self.owner = new_owner_id()
        self.log: Any = structlog.get_logger(service="engine", owner=self.owner)
        self.books = {
            i.symbol: BookService(settings, i, client, self.owner)
            for i in settings.owned_instruments()
        }
        self.stopping = False

    def recover(self) -> None:
        for book in self.books.values():
            book.recover()
        # The restored books are long-lived: keep the cyclic GC from rescanning them forever.
        gc.collect()
        gc.freeze()

    def reader(self) -> tuple[StreamReader, dict[str, tuple[bool, int]]]:
        """A reader of each book's streams as its role stands: its command stream when it
        leads, the leader's events and markers when it follows. Also what it was built for
        (role, recoveries), so that the serve loop rebuilds it when either changes."""
        groups: dict[str, dict[str, str]] = {}
        for symbol, book in self.books.items():
            if book.leading:
                groups[symbol] = {book.command_stream: book.last_command_id}
            else:
                groups[symbol] = book.standby.positions()
        built = {s: (b.leading, b.recoveries) for s, b in self.books.items()}
        return StreamReader(self.redis, groups, READ_BATCH), built

    def serve(self) -> None:
        reader, built = self.reader()
        try:
            while not self.stopping:
                now = time.monotonic()
                for book in self.books.values():
                    book.maintain(now)
                if any((b.leading, b.recoveries) != built[s] for s, b in self.books.items()):
                    reader.close()  # a takeover or a resync: read from the book's position
                    reader, built = self.reader()
                wait = min(POLL_S, RENEW_S)
                for book in self.books.values():
                    if book.leading:
                        wait = min(wait, book.next_book - now)
                # Behind (a full batch held): only look for more, and send the held publish
                # after that read, so that Redis appends it while the engine matches on.
                # Caught up (small batches, live load): send it with the blocking read for
                # the next (in the same write, when the reader `carries`), one read per
                # batch instead of an empty look and a blocking read.
                behind = any(book.behind for book in self.books.values())
                if not behind:
                    for book in self.books.values():
                        book.flush(reader)
                batches = reader.read(0 if behind else max(1, int(wait * 1000)))
                for book in self.books.values():
                    book.flush()
                now = time.monotonic()
                for symbol, read in batches:
                    book = self.books[symbol]
                    if (book.leading, book.recoveries) != built[symbol]:
                        continue  # read for the role it had: the next reader rereads
                    if book.leading:
                        book.process(read[book.command_stream], now)
                    else:
                        book.standby.follow(
                            read.get(book.event_stream, []),
                            read.get(book.standby.markers_key, []),
                        )
        finally:
            reader.close()

    def run(self) -> int:
        """Recover, serve; on a Redis failure, recover again from durable state. Returns
        the process exit code."""
        backoff = 0.1
        consistent = False  # books match what Redis holds (false after a failed publish)
        while not self.stopping:
            try:
                consistent = False
                self.recover()
                consistent = True
                backoff = 0.1
                self.serve()
            except TRANSIENT_ERRORS as exc:
                consistent = False  # a batch may be applied in memory but not published
                self.log.warning("redis_unavailable", error=str(exc), retry_in=backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            except LeaseLost as exc:
                # Paused (or starved) past the lease while another engine took over: what
                # this process applied since is not published and never will be by it.
                # Drop it, recover, and follow the new leader.
                consistent = False
                self.log.error("lease_lost", error=str(exc))
            except Diverged as exc:
                self.log.error("standby_diverged", error=str(exc))
                self.abandon()
                return EXIT_DIVERGED
        if not consistent:
            # A checkpoint now would record commands as applied that were never published:
            # the next start recovers from the last good checkpoint instead.
            self.log.warning("stop_without_checkpoint", reason="state not known to be published")
            self.abandon()
            return 0
        for book in self.books.values():
            try:
                book.stop()
            except (redis.RedisError, LeaseLost, CheckpointFailed) as exc:
                # Redis stopped first, or a standby took over, or the child failed: what is
                # missing (a trim, the published hash) is redone or recomputed by the next
                # start, which replays from the last checkpoint on disk.
                self.log.warning("stop_incomplete", symbol=book.symbol, error=str(exc))
        return 0

    def abandon(self) -> None:
        for book in self.books.values():
            book.job.abandon()


def main() -> None:
    settings = Settings.from_env()
    configure("engine", settings.log_level)
    if not settings.redis_url:
        raise SystemExit("REDIS_URL is not set (make run and the tests set it)")
    service = EngineService(settings, raw_client(settings.redis_url))
    service.log.info("matching_core", **status())

    def stop(signum: int, frame: object) -> None:
        service.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = service.run()
    seqs = {b.symbol: b.engine.seq for b in service.books.values()}
    service.log.info("stopped", seqs=seqs, code=code)
    if code:
        raise SystemExit(code)
