"""What shared.logs makes of each kind of record a process can produce, in a real process:
a Strawberry resolver bug, a client's bad query, a warning, an uncaught exception in a thread
and in the main thread, a lost asyncio task, and uvicorn's access line."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent

PROGRAM = textwrap.dedent(
    """
    import asyncio, gc, logging, threading, warnings
    import strawberry
    from shared.logs import configure

    log = configure("probe", "info")

    @strawberry.type
    class Query:
        @strawberry.field
        def boom(self) -> int:
            raise RuntimeError("resolver bug")

    schema = strawberry.Schema(query=Query)
    schema.execute_sync("{ boom }")
    schema.execute_sync("{ nope }")
    log.info("own_event", field=1)
    warnings.warn("old api", DeprecationWarning, stacklevel=1)
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", "/x", "1.1", 200
    )
    thread = threading.Thread(target=lambda: 1 / 0, name="worker")
    thread.start()
    thread.join()

    async def lost() -> None:
        raise ValueError("nobody awaited me")

    async def main() -> None:
        asyncio.get_running_loop().create_task(lost())
        await asyncio.sleep(0.01)

    asyncio.run(main())
    gc.collect()
    raise KeyError("the end")
    """
)


def run() -> tuple[int, str, list[dict[str, Any]]]:
    result = subprocess.run(
        [sys.executable, "-W", "always", "-c", PROGRAM],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout == ""
    entries = [json.loads(line) for line in result.stderr.splitlines()]
    assert all(isinstance(entry, dict) for entry in entries)
    return result.returncode, result.stderr, entries


def one(entries: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    (found,) = (e for e in entries if match.items() <= e.items())
    return found


def test_every_kind_of_record_is_one_json_line() -> None:
    status, stderr, entries = run()
    assert status == 1
    assert len(entries) == len(stderr.splitlines()) == 8, stderr

    bug = one(entries, event="graphql_error")
    assert bug["level"] == "error" and bug["error"] == "resolver bug"
    assert "Traceback" in bug["exception"] and "RuntimeError: resolver bug" in bug["exception"]

    client = one(entries, event="client_error")
    assert client["level"] == "info" and "Cannot query field 'nope'" in client["error"]
    assert "exception" not in client

    assert one(entries, event="own_event")["field"] == 1
    assert "DeprecationWarning: old api" in one(entries, logger="py.warnings")["event"]
    access = one(entries, logger="uvicorn.access")
    assert access["event"] == '127.0.0.1:5 - "GET /x HTTP/1.1" 200'

    thread = one(entries, event="uncaught_exception", thread="worker")
    assert "ZeroDivisionError" in thread["exception"]
    lost = one(entries, logger="asyncio")
    assert "ValueError: nobody awaited me" in lost["exception"]
    final = entries[-1]
    assert final["event"] == "uncaught_exception" and final["level"] == "critical"
    assert "thread" not in final and "KeyError: 'the end'" in final["exception"]
    assert all(e["service"] == "probe" and "timestamp" in e for e in entries)
