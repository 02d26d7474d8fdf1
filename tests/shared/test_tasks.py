"""`shared.tasks.cancel_and_wait`: a stop ends a task that swallowed its cancellation, as
Python 3.11's `asyncio.wait_for` can make one do, and reports what the tasks failed with."""

from __future__ import annotations

import asyncio

from shared.tasks import cancel_and_wait


async def test_a_task_that_swallows_its_cancellation_is_cancelled_again_until_it_ends() -> None:
    swallowed = 0

    async def loop_on() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if swallowed < 3:  # as a wait_for whose call completed with the cancel
                    swallowed += 1
                    continue
                raise

    task = asyncio.create_task(loop_on())
    await asyncio.sleep(0.02)
    assert await asyncio.wait_for(cancel_and_wait([task]), 5) == []
    assert task.cancelled() and swallowed == 3


async def test_what_the_tasks_failed_with_is_returned_and_a_finished_one_is_left_alone() -> None:
    async def fails_on_cancel() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            raise ValueError("cleanup failed") from None

    async def returns() -> int:
        return 7

    failing = asyncio.create_task(fails_on_cancel())
    finished = asyncio.create_task(returns())
    await asyncio.sleep(0)
    errors = await cancel_and_wait([failing, finished])
    assert [str(e) for e in errors] == ["cleanup failed"]
    assert finished.result() == 7
