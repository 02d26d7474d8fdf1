"""Feed benchmark: `python -m tests.feed_bench [--trades 100000] [--runs 3] [--graphql]`.

How fast a client that was away catches up: it starts its own stack (as `make run` does),
makes `--trades` trades while no client listens (1-lot buys against one large resting
sell, appended straight to the engine's command stream, so the set-up is quick), then
resumes `/ws/trades?after=<the last trade id before them>` (or the GraphQL `trades(after:)`
subscription) and times the catch-up to the last of them. Prints trades/s per run and the
API process's CPU per trade sent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import redis
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from shared.commands import BUY, SELL, Place, encode_command
from shared.redis_server import free_port
from shared.stack import Stack
from tests.load import cpu_seconds

PRICE = 10_000  # ticks
CHUNK = 2_000


def make_trades(stack: Stack, count: int) -> None:
    """One large resting sell, then `count` crossing 1-lot buys, pipelined."""
    client = redis.Redis.from_url(stack.redis_url)
    stream = "exchange:{DEFAULT}:commands"
    commands = [Place(SELL, PRICE, count + 1)] + [Place(BUY, PRICE, 1)] * count
    for start in range(0, len(commands), CHUNK):
        pipe = client.pipeline(transaction=False)
        for command in commands[start : start + CHUNK]:
            pipe.xadd(stream, {"c": encode_command(command)})
        pipe.execute()
    client.close()


def newest_trade(api: str) -> int:
    """The newest stored trade id (0: none), after the API's read barrier."""
    after = 0
    with httpx.Client(base_url=api, timeout=30) as http:
        while page := http.get("/trades", params={"after": after, "limit": 1000}).json():
            after = int(page[-1]["trade_id"])
    return after


def wait_stored(api: str, target_seq: int) -> None:
    deadline = time.monotonic() + 600
    with httpx.Client(base_url=api, timeout=30) as http:
        while True:
            response = http.get("/orderbook")
            if response.status_code == 200 and response.json()["seq"] >= target_seq:
                return
            if time.monotonic() > deadline:
                raise SystemExit("the stack did not store the trades in time")
            time.sleep(0.5)


async def catch_up_ws(api: str, after: int, count: int) -> float:
    url = api.replace("http://", "ws://") + f"/ws/trades?after={after}"
    started = time.perf_counter()
    async with connect(url, max_size=None, open_timeout=30) as ws:
        last = after
        for _ in range(count):
            trade_id = int(json.loads(await ws.recv())["trade_id"])
            assert trade_id > last, (trade_id, last)
            last = trade_id
    return time.perf_counter() - started


async def catch_up_graphql(api: str, after: int, count: int) -> float:
    url = api.replace("http://", "ws://") + "/graphql"
    query = "subscription($after: ID) { trades(after: $after) { tradeId } }"
    started = time.perf_counter()
    async with connect(
        url, subprotocols=[Subprotocol("graphql-transport-ws")], max_size=None
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        payload = {"query": query, "variables": {"after": str(after)}}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        last = after
        for _ in range(count):
            message = json.loads(await ws.recv())
            trade_id = int(message["payload"]["data"]["trades"]["tradeId"])
            assert trade_id > last, (trade_id, last)
            last = trade_id
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trades", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--graphql", action="store_true", help="the GraphQL subscription too")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="feed-bench-") as tmp:
        port = free_port()
        stack = Stack(Path(tmp), [port], env={"RATE_LIMIT_PER_S": "0"}, log_dir=Path(tmp) / "logs")
        try:
            stack.start_all()
            stack.wait_ready()
            api = stack.api_url(port)
            before = newest_trade(api)
            started = time.monotonic()
            make_trades(stack, args.trades)
            wait_stored(api, 2 * args.trades + 1)
            print(f"made and stored {args.trades:,} trades in {time.monotonic() - started:.1f} s")
            api_pid = stack.processes[f"api-{port}"].pid
            kinds = [("/ws/trades", catch_up_ws)]
            if args.graphql:
                kinds.append(("GraphQL trades(after:)", catch_up_graphql))
            for name, catch_up in kinds:
                rates = []
                for run in range(args.runs):
                    cpu_before = cpu_seconds(api_pid)
                    seconds = asyncio.run(catch_up(api, before, args.trades))
                    cpu = cpu_seconds(api_pid) - cpu_before
                    rates.append(args.trades / seconds)
                    print(
                        f"{name} run {run + 1}: {args.trades:,} trades in {seconds:.2f} s = "
                        f"{rates[-1]:,.0f} trades/s; API CPU {cpu / args.trades * 1e6:.1f} µs/trade"
                    )
                print(f"{name}: median {statistics.median(rates):,.0f} trades/s")
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
