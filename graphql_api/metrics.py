"""Prometheus metrics of an API replica, served at /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MUTATIONS = Counter(
    "exchange_api_mutations_total",
    "Mutations sent to an engine, by command and outcome",
    ["command", "outcome"],
)
ROUND_TRIP = Histogram(
    "exchange_api_engine_round_trip_seconds",
    "From queueing a command for the command stream to the engine's answer",
    ["command"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
BACKLOG = Gauge(
    "exchange_engine_backlog_commands",
    "Commands journaled but not yet answered by the engine (counted up to MAX_BACKLOG + 1)",
    ["symbol"],
)
# Bound once: `labels()` on every request costs a lock and a dict lookup on the hot path.
KINDS = ("place", "modify", "cancel")
ROUND_TRIP_BY_KIND = {kind: ROUND_TRIP.labels(kind) for kind in KINDS}
ANSWERED_BY_KIND = {
    (kind, rejected): MUTATIONS.labels(kind, "rejected" if rejected else "accepted")
    for kind in KINDS
    for rejected in (False, True)
}
