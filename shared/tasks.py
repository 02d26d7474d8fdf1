"""Stopping asyncio tasks for good.

Python 3.11's `asyncio.wait_for`, which redis-py uses to send a command when the URL sets a
socket timeout, can swallow a cancellation that lands as the call it waits on completes:
the task goes on as if it had not been cancelled (3.12 rebuilt `wait_for` on
`asyncio.timeout`, which does not). A stop that cancels a looping task once and awaits it
then hangs; one such task kept a replica's shutdown waiting in 2 of 7 trials. One that
cancels once and moves on leaves it running for the life of the process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

RECANCEL_S = 0.1  # how long a cancelled task may run on before it is cancelled again


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any]]) -> list[BaseException]:
    """Cancel every task (`cancel_soon`: again every RECANCEL_S while it runs on) and wait
    until each has ended. Returns what the tasks ended with other than their cancellation
    (an error raised before or while stopping), for the caller to report. If the caller is
    cancelled meanwhile, the cancellation propagates and the tasks go on being cancelled."""
    tasks = list(tasks)
    for task in tasks:
        cancel_soon(task)
    if tasks:
        await asyncio.wait(tasks)
    return [
        error for task in tasks if not task.cancelled() and (error := task.exception()) is not None
    ]


def cancel_soon(task: asyncio.Future[Any]) -> None:
    """Cancel `task` now and again every RECANCEL_S while it runs on, without waiting for
    it: for a caller that cannot await its end."""
    task.cancel()
    loop = asyncio.get_running_loop()

    def again() -> None:
        if not task.done():
            task.cancel()
            loop.call_later(RECANCEL_S, again)

    loop.call_later(RECANCEL_S, again)
