"""A real Redis server for a test that needs one of its own (not the session's stack)."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shared.redis_server import start_redis


@contextmanager
def running_redis(directory: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A Redis server on a free port with its files in `directory`: its process (a test
    may pause or kill it) and its URL. Resumed and stopped on the way out, killed if it
    lingers."""
    process, url = start_redis(directory)
    try:
        yield process, url
    finally:
        process.send_signal(signal.SIGCONT)  # a test may have paused it
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
