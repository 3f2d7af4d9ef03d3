"""Cells and tables of the markdown reports: percentages, values with their bootstrap intervals."""

from __future__ import annotations

from typing import Any

import numpy as np


def pct(x: float | None) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:+.1f}%"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def value_with_interval(entry: dict[str, Any], metric: str) -> str:
    """ "0.812 [0.790, 0.833]": a subset score with its bootstrap interval (the value alone without one)."""
    value = f"{entry['metrics'][metric]:.3f}"
    if "intervals" in entry:
        low, high = entry["intervals"]["metrics"][metric]
        value += f" [{low:.3f}, {high:.3f}]"
    return value


def with_interval(entry: dict[str, Any], metric: str) -> str:
    """The value with its interval and, in brackets, the average gain against the subset's baseline."""
    return f"{value_with_interval(entry, metric)} ({pct(entry['average_improvement'])})"


def relative_with_interval(entry: dict[str, Any], base: dict[str, Any], metric: str) -> str:
    """ "+4.1% [+1.0%, +7.5%]": ``entry``'s change in ``metric`` against ``base`` (the subset's baseline),
    with its paired interval when the subset has intervals."""
    b = base["metrics"][metric]
    text = pct((entry["metrics"][metric] - b) / b if b > 0 else None)
    if "intervals" in entry:
        low, high = entry["intervals"]["relative"][metric]
        text += f" [{pct(low)}, {pct(high)}]"
    return text
