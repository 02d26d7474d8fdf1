"""Samples of an API replica's /metrics, read with prometheus_client's own parser: the tests
and the load tool look a figure up by name and labels instead of splitting the text."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample named `name` (a counter's `_total`, a histogram's `_bucket`): its labels
    and its value."""
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample `name` with these labels; None when there is none (yet)."""
    for found, value in samples(text, name):
        if found == labels:
            return value
    return None
