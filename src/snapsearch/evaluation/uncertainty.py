"""Paired bootstrap 95% intervals over the test queries: for every strategy's metrics, for its relative
change against the baseline, and for its average gain.

Paired: every resample draws the same queries for all strategies, so the interval of a difference reflects
the per-query correlation of the two rankings. The unit resampled is a **product** (a cluster bootstrap:
each resample draws products with replacement and takes all their photos, since photos of one product are
not independent evidence) or a **photo** (each query on its own)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

LEVEL = 0.95
UNITS = ("product", "photo")


def check_unit(unit: str) -> str:
    if unit not in UNITS:
        raise ValueError(f"bootstrap.unit={unit!r}: one of {', '.join(UNITS)}")
    return unit


def clusters_of(products: np.ndarray, unit: str) -> np.ndarray:
    """Each query's cluster (0..C-1): its product's (``product``) or its own position (``photo``)."""
    products = np.asarray(products)
    if check_unit(unit) == "photo":
        return np.arange(len(products))
    return np.unique(products, return_inverse=True)[1].reshape(-1)


def describe(unit: str, resamples: int, products: np.ndarray) -> dict[str, Any]:
    """What the intervals of a report resample (stored in report.json as ``bootstrap``)."""
    return {
        "unit": check_unit(unit),
        "resamples": int(resamples),
        "level": LEVEL,
        "clusters": int(clusters_of(products, unit).max(initial=-1) + 1),
        "n_queries": len(products),
    }


def resample_counts(n_clusters: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n_clusters): how often each cluster is drawn when ``n_clusters`` are drawn with
    replacement. The draws are those of ``rng.integers(0, n, (resamples, n))``, so a photo bootstrap
    resamples exactly the queries it always did for a seed."""
    draws = np.random.default_rng(seed).integers(0, n_clusters, size=(resamples, n_clusters))
    flat = (draws + n_clusters * np.arange(resamples)[:, None]).ravel()
    return np.bincount(flat, minlength=resamples * n_clusters).reshape(resamples, n_clusters)


def paired_bootstrap(
    per_query: Mapping[str, Mapping[str, np.ndarray]],
    baseline: str,
    improvement_metrics: Sequence[str],
    *,
    products: np.ndarray,
    unit: str,
    resamples: int,
    seed: int,
) -> dict[str, dict[str, Any]]:
    """``per_query[strategy][metric]``: one value per query (same queries, same order, for all strategies);
    ``products``: each query's true product (the clusters of ``unit="product"``).

    Each resample draws clusters with replacement (the same draw for every strategy) and scores every
    photo of every drawn cluster, once per draw: a resample's mean is (sum of the drawn clusters' value
    sums) / (their photo count). Returns, per strategy: ``metrics`` and ``relative`` intervals per metric
    ([low, high]) and the ``average_improvement`` interval. A relative change against a zero baseline mean
    is left out of that resample (it is undefined)."""
    cluster = clusters_of(products, unit)
    n = len(next(iter(next(iter(per_query.values())).values())))
    if len(cluster) != n:
        raise ValueError(f"{len(cluster)} true products for {n} queries: pass one product per query")
    n_clusters = int(cluster.max(initial=-1) + 1)
    counts = resample_counts(n_clusters, resamples, seed).astype(np.float64)
    keys = [(s, m) for s, metrics in per_query.items() for m in metrics]
    column = {key: j for j, key in enumerate(keys)}
    values = np.stack([np.asarray(per_query[s][m], dtype=np.float64) for s, m in keys], axis=1)  # (n, runs)
    sums = np.zeros((n_clusters, len(keys)))  # every cluster's sum of every run's values
    np.add.at(sums, cluster, values)
    base_sums = sums[:, [column[baseline, m] for _, m in keys]]  # the baseline's, column for column
    photos = counts @ np.bincount(cluster, minlength=n_clusters).astype(np.float64)  # photos per resample
    means = counts @ sums / photos[:, None]  # (resamples, runs): every resample's mean of every run
    base_total = counts @ base_sums
    with np.errstate(divide="ignore", invalid="ignore"):  # summed differences: exactly 0 where runs agree
        relative = np.where(base_total > 0, (counts @ (sums - base_sums)) / base_total, np.nan)
    tail = 100 * (1 - LEVEL) / 2
    out: dict[str, dict[str, Any]] = {}
    for strategy, metrics in per_query.items():
        change = {m: relative[:, column[strategy, m]] for m in metrics}
        with warnings.catch_warnings():  # a resample whose baseline is zero everywhere has no gain: NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            average = np.nanmean(np.stack([change[m] for m in improvement_metrics]), axis=0)
        out[strategy] = {
            "metrics": {m: _interval(means[:, column[strategy, m]], tail) for m in metrics},
            "relative": {m: _interval(v, tail) for m, v in change.items()},
            "average_improvement": _interval(average, tail),
        }
    return out


def _interval(values: np.ndarray, tail: float) -> list[float]:
    finite = values[np.isfinite(values)]
    if not len(finite):
        return [float("nan"), float("nan")]
    return [float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail))]
