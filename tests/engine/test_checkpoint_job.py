"""The checkpoint child is background work: a woken service preempts it at once."""

from __future__ import annotations

import os

import pytest

from engine import checkpoint_job


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="no SCHED_IDLE on this platform")
def test_a_checkpoint_child_runs_at_sched_idle_and_niceness_10() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # as `_child` does first
        try:
            checkpoint_job._background()
            os.write(write, b"%d %d" % (os.sched_getscheduler(0), os.nice(0)))
        finally:
            os._exit(0)
    os.close(write)
    try:
        policy, niceness = map(int, os.read(read, 64).split())
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert policy == os.SCHED_IDLE
    assert niceness == checkpoint_job.CHILD_NICENESS
