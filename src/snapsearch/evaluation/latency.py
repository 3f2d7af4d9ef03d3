"""Per-query latency at batch 1, stage by stage, as a serving system sees it: each timed query is one
``Cascade.search`` call (decode -> classify -> embed -> search -> products), the path the service runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from snapsearch.search.cascade import Cascade
from snapsearch.search.result import STAGES

PERCENTILES = (50, 95, 99)


class StageTimer:
    """Collects wall-clock seconds per named stage; ``summary`` gives p50/p95/p99 in milliseconds."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}

    def add(self, stage: str, seconds: float) -> None:
        self.samples.setdefault(stage, []).append(seconds)

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            stage: {f"p{p}_ms": float(np.percentile(v, p) * 1e3) for p in PERCENTILES}
            | {"mean_ms": float(np.mean(v) * 1e3)}
            for stage, v in self.samples.items()
        }


def serving_latency(
    cascade: Cascade, paths: Sequence[str], *, k: int, n_queries: int, warmup: int, baseline: str, cascade_name: str
) -> dict[str, Any]:
    """Time ``cascade.search`` on up to ``n_queries`` photos for every searchable strategy (after ``warmup``
    untimed searches each); the overhead compares the end-to-end p50 of ``cascade_name`` with ``baseline``."""
    timer = StageTimer()
    n = min(n_queries, len(paths))
    strategies = cascade.searchable()
    for i in range(-warmup, n):
        path = paths[max(i, 0)]
        for name in strategies:
            result = cascade.search(path, k=k, strategy=name)
            if i < 0:
                continue
            for stage in (*STAGES, "total"):
                timer.add(f"{name}/{stage}", result.timings_ms[stage] / 1e3)
    stages = timer.summary()
    global_ms = stages[f"{baseline}/total"]["p50_ms"]
    cascade_ms = stages[f"{cascade_name}/total"]["p50_ms"]
    return {
        "n_queries": n,
        "stages": stages,
        "global_total_p50_ms": global_ms,
        "cascade_total_p50_ms": cascade_ms,
        "cascade_strategy": cascade_name,
        "overhead_pct": 100.0 * (cascade_ms - global_ms) / global_ms,
    }
