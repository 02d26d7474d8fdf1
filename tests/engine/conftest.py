"""Hypothesis profiles of the engine property tests.

`ci` is the default; `make fuzz` runs with HYPOTHESIS_PROFILE=fuzz, `make test-fast` with
HYPOTHESIS_PROFILE=fast (the inner loop: a tenth of CI's examples). The profiles are only
registered here: `test_stateful.py` applies the selected one to its own test case, so the
large example counts do not leak into other suites' `@given` tests.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

STEP_COUNT = 30

settings.register_profile(
    "ci",
    max_examples=2000,
    deadline=None,
    stateful_step_count=STEP_COUNT,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "fuzz",
    parent=settings.get_profile("ci"),
    max_examples=20_000,
)
settings.register_profile(
    "fast",
    parent=settings.get_profile("ci"),
    max_examples=200,
)
