"""Shared output of the benchmarks: figures as they come, then one final JSON line."""

from __future__ import annotations

import json
import sys
from typing import Any


def report(figures: dict[str, Any]) -> None:
    """Print the final JSON line every benchmark ends with."""
    sys.stdout.write(json.dumps(figures, sort_keys=True) + "\n")
    sys.stdout.flush()


def percentile(values: list[float], fraction: float) -> float:
    """The value at C{fraction} (0.99: p99) of C{values}, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]
