"""Turning a price band on at a restart, as docs/api.md says to: after a clean stop."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx

from tests.conftest import running_stack


def test_a_band_turned_on_after_a_clean_stop_applies_to_new_orders(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack, httpx.Client(base_url=stack.api_url()) as http:
        far = {"side": 1, "price": 1_000_000, "quantity": 1}
        assert http.post("/orders", json=far).status_code == 201  # no band yet
        stack.kill("engine", signal.SIGTERM)  # a clean stop: its checkpoint covers all
        stack.extra_env["PRICE_BANDS"] = "DEFAULT:10:100"
        stack.start("engine")
        stack.wait_ready()
        deadline = time.monotonic() + 30
        while (refused := http.post("/orders", json=far)).status_code == 503:
            assert time.monotonic() < deadline, refused.text  # the engine is recovering
        assert refused.status_code == 409, refused.text
        assert refused.json()["reason"] == "price_out_of_band"
        assert http.post("/orders", json={**far, "price": 105}).status_code == 201
        log = (tmp_path / "logs" / "engine.log").read_text()
        assert log.count('"price_band_changed"') == 1, log[-2000:]
