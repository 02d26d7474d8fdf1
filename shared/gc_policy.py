"""The garbage-collector policy of the long-lived services.

Start-up allocates most of what a service will ever hold (modules, the app, schemas,
restored books), and the cyclic collector would rescan all of it on every full collection:
in an API replica under load that was a pause of every request in flight at once. So once
a service is up, what exists is frozen (moved to a generation the collector never scans),
and the youngest generation's threshold is raised, so collections come ten times less
often and each one scans only what the requests allocated since. Reference counting still
frees everything that is not in a cycle at once; the hot paths create no cycles per
request.
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 7_000  # Python's default is 700 allocations


def settle() -> None:
    """Call once the service is up: collect, freeze the survivors, set the thresholds."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
