"""Paired bootstrap 95% intervals over the test queries: for every strategy's metrics, for its relative
change against the baseline, and for its average gain. Paired: every resample draws the same queries for
all strategies, so the interval of a difference reflects the per-query correlation of the two rankings."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

LEVEL = 0.95


def paired_bootstrap(
    per_query: Mapping[str, Mapping[str, np.ndarray]],
    baseline: str,
    improvement_metrics: Sequence[str],
    *,
    resamples: int,
    seed: int,
) -> dict[str, dict[str, Any]]:
    """``per_query[strategy][metric]``: one value per query (same queries, same order, for all strategies).

    Returns, per strategy: ``metrics`` and ``relative`` intervals per metric ([low, high]) and the
    ``average_improvement`` interval. A relative change against a zero baseline mean is left out of that
    resample (it is undefined)."""
    n = len(next(iter(next(iter(per_query.values())).values())))
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    means = {s: {m: v[idx].mean(axis=1) for m, v in metrics.items()} for s, metrics in per_query.items()}
    base = means[baseline]
    tail = 100 * (1 - LEVEL) / 2
    out: dict[str, dict[str, Any]] = {}
    for strategy, metrics in means.items():
        relative = {}
        for m, values in metrics.items():
            with np.errstate(divide="ignore", invalid="ignore"):
                relative[m] = np.where(base[m] > 0, (values - base[m]) / base[m], np.nan)
        with warnings.catch_warnings():  # a resample whose baseline is zero everywhere has no gain: NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            average = np.nanmean(np.stack([relative[m] for m in improvement_metrics]), axis=0)
        out[strategy] = {
            "metrics": {m: _interval(v, tail) for m, v in metrics.items()},
            "relative": {m: _interval(v, tail) for m, v in relative.items()},
            "average_improvement": _interval(average, tail),
        }
    return out


def _interval(values: np.ndarray, tail: float) -> list[float]:
    finite = values[np.isfinite(values)]
    if not len(finite):
        return [float("nan"), float("nan")]
    return [float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail))]
