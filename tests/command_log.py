"""What the API journaled on the engine's command streams since a mark, counted by entry id."""

from __future__ import annotations

from shared.redis_client import Client
from tests.redis_replies import entries

COMMAND_STREAMS = "exchange:*commands"


class CommandLog:
    """What the API journaled on the engine's command stream(s) since a mark.

    The stream length is not a counter: the engine trims the stream (XTRIM) at every
    checkpoint, so a length compared across a checkpoint can drop. Entry ids only grow, so
    a mark is each stream's last-generated-id, and `since(mark)` counts the entries after it.
    Every stream named like a command stream counts (`exchange:commands`, or one per
    instrument, `exchange:{SYMBOL}:commands`).
    """

    def __init__(self, client: Client) -> None:
        self.client = client

    def _streams(self) -> list[bytes]:
        return sorted(self.client.scan_iter(match=COMMAND_STREAMS, _type="stream"))

    def mark(self) -> dict[bytes, bytes]:
        mark = {}
        for stream in self._streams():
            last = self.client.xinfo_stream(stream)["last-generated-id"]
            assert isinstance(last, bytes), last
            mark[stream] = last
        return mark

    def since(self, mark: dict[bytes, bytes]) -> int:
        count = 0
        for stream in self._streams():
            after = b"(" + mark.get(stream, b"0-0")
            count += len(entries(self.client.xrange(stream, min=after, max="+")))
        return count
