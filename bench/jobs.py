"""Baseline RQ jobs: top-level functions a worker imports by dotted path."""

from __future__ import annotations


def noop() -> None:
    """The raw RQ job of the throughput baseline: does nothing."""
    return None
