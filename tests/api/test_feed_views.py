"""The feeds' hand-written JSON (trades and level changes, the most frequent messages) is
exactly what the views render through `to_json`, for every tick size and price."""

from __future__ import annotations

import json
import random

import pytest

from graphql_api.feed_views import level_change_text, level_change_view, to_message, trade_text
from graphql_api.live import LevelChange
from graphql_api.views import to_json, trade_view
from shared.config import ID_SPACE, Settings
from shared.events import Trade
from store.port import TradeRecord

SETTINGS = Settings(instruments_spec="DEFAULT,ABC:0.05,XYZ:1,TINY:0.0001")


def dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@pytest.mark.parametrize("seed", range(3))
def test_trade_text_is_the_trade_view(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(2_000):
        instrument = rng.choice(SETTINGS.instruments)
        seq = instrument.base + rng.randint(1, ID_SPACE - 1)
        price = rng.choice((1, 10, 100, rng.randint(1, 10**9)))
        ts = rng.choice((0, 1_700_000_000_000_000_000, rng.randint(0, 4 * 10**18)))
        args = (price, rng.randint(1, 10**9), seq - 1, seq - 2, rng.choice((1, -1)))
        event = Trade(seq, *args, 0, 3, ts)
        record = TradeRecord(seq, *args, ts)
        for trade in (event, record):
            assert trade_text(SETTINGS, trade) == dumps(to_json(trade_view(SETTINGS, trade)))


def test_level_change_text_is_the_level_change_view() -> None:
    rng = random.Random(7)
    for _ in range(2_000):
        instrument = rng.choice(SETTINGS.instruments)
        change = LevelChange(
            instrument.base + rng.randint(1, 10**6),
            rng.choice((1, -1)),
            rng.choice((1, 100, rng.randint(1, 10**9))),
            rng.choice((0, rng.randint(1, 10**9))),
        )
        assert level_change_text(instrument, change) == dumps(
            to_message(level_change_view(instrument, change))
        )
