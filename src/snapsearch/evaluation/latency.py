"""Per-query latency at batch 1, stage by stage, as a serving system sees it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

PERCENTILES = (50, 95)


class StageTimer:
    """Collects wall-clock seconds per named stage; ``summary`` gives p50/p95 in milliseconds."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}

    def time(self, stage: str, fn: Callable[..., Any], *args: Any) -> Any:
        start = time.perf_counter()
        out = fn(*args)
        self.samples.setdefault(stage, []).append(time.perf_counter() - start)
        return out

    def add(self, stage: str, seconds: float) -> None:
        self.samples.setdefault(stage, []).append(seconds)

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            stage: {f"p{p}_ms": float(np.percentile(v, p) * 1e3) for p in PERCENTILES}
            | {"mean_ms": float(np.mean(v) * 1e3)}
            for stage, v in self.samples.items()
        }
