"""Stacks started with non-default hardening settings (one per module)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from shared.redis_server import free_port
from shared.stack import Stack


def start_stack(tmp: Path, **env: str) -> Iterator[Stack]:
    stack = Stack(tmp, [free_port()], env={"LOG_LEVEL": "info", **env}, log_dir=tmp / "logs")
    try:
        stack.start_all()
        stack.wait_ready()
        yield stack
    finally:
        stack.stop()
