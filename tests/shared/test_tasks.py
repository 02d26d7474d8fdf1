"""`shared.tasks.cancel_and_wait`: a stop ends a task that swallowed its cancellation, as
Python 3.11's `asyncio.wait_for` can make one do, and reports what the tasks failed with."""

from __future__ import annotations

import asyncio
import contextlib

from shared.tasks import cancel_and_wait, cancel_soon


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


def swallowing(times: int) -> tuple[list[int], asyncio.Task[None]]:
    """A looping task that goes on after its first `times` cancellations, as one whose
    wait_for completed with the cancel does; and the count of those it swallowed."""
    swallowed = [0]

    async def loop_on() -> None:
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if swallowed[0] < times:
                    swallowed[0] += 1
                    continue
                raise

    return swallowed, asyncio.create_task(loop_on())


async def test_a_cancelled_stop_leaves_the_tasks_being_cancelled_until_they_end() -> None:
    swallowed, task = swallowing(3)
    await asyncio.sleep(0.02)
    stop = asyncio.create_task(cancel_and_wait([task]))
    await asyncio.sleep(0.01)  # the first cancel is swallowed; the stop waits
    stop.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await stop
    assert stop.cancelled()
    await asyncio.wait_for(asyncio.wait([task]), 5)
    assert task.cancelled() and swallowed == [3]


async def test_cancel_soon_cancels_again_until_the_task_ends() -> None:
    swallowed, task = swallowing(2)
    await asyncio.sleep(0.02)
    cancel_soon(task)
    await asyncio.wait_for(asyncio.wait([task]), 5)
    assert task.cancelled() and swallowed == [2]
