"""The crash harness with a hot standby (`--standby`): the chaos loop kills whichever engine
process leads, and the standby must take over.

A takeover is timed from the SIGKILL to the moment the instrument's lease names another
owner (the standby holds it: it is matching again, and the API reports ready).
"""

from __future__ import annotations

import json
import signal
import statistics
import time
from dataclasses import dataclass, field

from engine.lease import owner_pid
from shared.config import Settings
from shared.redis_client import TRANSIENT_ERRORS, connect
from shared.stack import Stack

TAKEOVER_TIMEOUT_S = 30.0


@dataclass
class Takeovers:
    seconds: list[float] = field(default_factory=list)
    writers: dict[str, int] = field(default_factory=dict)  # checkpoints published, by writer

    def summary(self) -> str:
        written = ", ".join(f"{n} by the {w}" for w, n in sorted(self.writers.items()))
        written = f"; checkpoints published: {written or 'none'}"
        if not self.seconds:
            return "takeovers: none" + written
        times = sorted(self.seconds)
        return (
            f"takeovers: {len(times)}, p50 {statistics.median(times) * 1000:.0f} ms, "
            f"max {times[-1] * 1000:.0f} ms" + written
        )


def divergences(stack: Stack) -> list[str]:
    """Every `standby_diverged` an engine logged: with deterministic engines there is none,
    so one is a fault (of the engine, or of the standby's checks)."""
    found: list[str] = []
    for path in sorted((stack.data_dir / "logs").glob("engine*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if '"standby_diverged"' in line:
                found.append(f"{path.stem}: {line[:300]}")
    return found


def checkpoint_writers(stack: Stack) -> dict[str, int]:
    """How many checkpoints the leaders published (their `checkpoint_written` lines, which
    carry the trim), by who wrote them: the leader's own child or the standby."""
    counts: dict[str, int] = {}
    for path in (stack.data_dir / "logs").glob("engine*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if '"checkpoint_written"' in line and '"commands_trimmed"' in line:
                writer = json.loads(line).get("writer", "leader")
                counts[writer] = counts.get(writer, 0) + 1
    return counts


def lease_owner(stack: Stack, symbol: str) -> str:
    client = connect(stack.redis_url)
    try:
        owner = client.get(Settings(stream_prefix=_prefix(stack)).engine_lease_of(symbol))
    except TRANSIENT_ERRORS:
        return ""
    finally:
        client.close()
    return owner.decode() if isinstance(owner, bytes) else ""


def leader_name(stack: Stack, symbol: str = "DEFAULT") -> str:
    """The stack's name of the engine process leading `symbol` ("" while none does)."""
    pid = owner_pid(lease_owner(stack, symbol))
    return next((n for n, p in stack.processes.items() if p.pid == pid and p.poll() is None), "")


def kill_leader(stack: Stack, takeovers: Takeovers, symbol: str = "DEFAULT") -> str:
    """SIGKILL the leading engine, wait until another owner holds the lease; returns the
    killed process's name (to restart: it comes back as the standby)."""
    deadline = time.monotonic() + TAKEOVER_TIMEOUT_S
    name = leader_name(stack, symbol)
    while not name:  # between a kill and the takeover nobody leads: wait for a leader
        if time.monotonic() > deadline:
            raise TimeoutError(f"no engine leads {symbol}")
        time.sleep(0.01)
        name = leader_name(stack, symbol)
    owner = lease_owner(stack, symbol)
    killed_at = time.monotonic()
    stack.kill(name, signal.SIGKILL)
    while lease_owner(stack, symbol) in ("", owner):
        if time.monotonic() > killed_at + TAKEOVER_TIMEOUT_S:
            raise TimeoutError(f"no takeover of {symbol} within {TAKEOVER_TIMEOUT_S} s")
        time.sleep(0.002)
    takeovers.seconds.append(time.monotonic() - killed_at)
    return name


def engines_in_stop_order(stack: Stack) -> list[str]:
    """Engine processes, standbys first: the leader stops last, so that the state hash it
    stores at its clean stop is the final one."""
    leader = leader_name(stack)
    engines = [n for n in stack.processes if n.startswith("engine")]
    return sorted(engines, key=lambda n: n == leader)


def _prefix(stack: Stack) -> str:
    return stack.env().get("STREAM_PREFIX", "exchange")
