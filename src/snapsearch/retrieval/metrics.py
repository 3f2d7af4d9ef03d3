"""Product-level retrieval metrics from ranked product lists (each product once, at its best image).

Every query has exactly one relevant product (the one it shows). After de-duplication by product that
product appears at most once, so AP@k is 1/rank when it is within the first k, else 0: mAP@k is MRR
truncated at k. We still name it mAP@k because that is what the published results report.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np

DEFAULT_KS: tuple[int, ...] = (1, 5, 10)
DEFAULT_MAP_K = 10
# The published paper's "average improvement": the mean relative gain over these metrics.
IMPROVEMENT_KEYS: tuple[str, ...] = ("R@1", "R@5", "mAP@10")


def _rank(ranked: Sequence[Hashable], truth: Hashable) -> int | None:
    """1-based rank of the true product, or None when it was not retrieved."""
    for i, item in enumerate(ranked):
        if item == truth:
            return i + 1
    return None


def recall_at_k(ranked: Sequence[Hashable], truth: Hashable, k: int) -> float:
    """1.0 when the true product is among the first k results of one query, else 0.0."""
    rank = _rank(ranked, truth)
    return float(rank is not None and rank <= k)


def average_precision_at_k(ranked: Sequence[Hashable], truth: Hashable, k: int) -> float:
    """AP@k of one query with a single relevant product: 1/rank when rank <= k, else 0."""
    rank = _rank(ranked, truth)
    return 1.0 / rank if rank is not None and rank <= k else 0.0


def reciprocal_rank(ranked: Sequence[Hashable], truth: Hashable) -> float:
    """1/rank of the true product in one query's results, 0 when it was not retrieved at all."""
    rank = _rank(ranked, truth)
    return 1.0 / rank if rank is not None else 0.0


def retrieval_metrics(
    ranked: Sequence[Sequence[Hashable]],
    truth: Sequence[Hashable],
    ks: tuple[int, ...] = DEFAULT_KS,
    map_k: int = DEFAULT_MAP_K,
) -> dict[str, float]:
    """Recall@k for each k ("R@1", ...), "mAP@{map_k}" and "MRR", averaged over queries."""
    return {name: float(values.mean()) for name, values in per_query_metrics(ranked, truth, ks, map_k).items()}


def per_query_metrics(
    ranked: Sequence[Sequence[Hashable]],
    truth: Sequence[Hashable],
    ks: tuple[int, ...] = DEFAULT_KS,
    map_k: int = DEFAULT_MAP_K,
) -> dict[str, np.ndarray]:
    """Each query's value of every metric of :func:`retrieval_metrics` (what a bootstrap resamples)."""
    if len(ranked) != len(truth) or len(ranked) == 0:
        raise ValueError(f"need one ranked list per query, got {len(ranked)} lists for {len(truth)} queries")
    ranks = [_rank(r, t) for r, t in zip(ranked, truth, strict=True)]
    out = {f"R@{k}": np.array([r is not None and r <= k for r in ranks], dtype=np.float64) for k in ks}
    out[f"mAP@{map_k}"] = np.array([1.0 / r if r is not None and r <= map_k else 0.0 for r in ranks])
    out["MRR"] = np.array([1.0 / r if r is not None else 0.0 for r in ranks])
    return out


def _relative(value: float, base: float) -> float:
    """(value - base) / base; with a zero baseline: 0 when both are zero, else +-inf (a gain from nothing)."""
    if base == 0:
        return 0.0 if value == 0 else math.copysign(math.inf, value)
    return (value - base) / base


def relative_change(strategy_metrics: Mapping[str, float], baseline_metrics: Mapping[str, float]) -> dict[str, float]:
    """Relative change of every metric both dicts have (0.25 = 25% better than the baseline)."""
    return {
        key: _relative(float(value), float(baseline_metrics[key]))
        for key, value in strategy_metrics.items()
        if key in baseline_metrics
    }


def average_improvement(
    strategy_metrics: Mapping[str, float],
    baseline_metrics: Mapping[str, float],
    keys: tuple[str, ...] = IMPROVEMENT_KEYS,
) -> float:
    """Mean relative gain over ``keys``; the default keys give the published paper's average improvement."""
    missing = [k for k in keys if k not in strategy_metrics or k not in baseline_metrics]
    if missing:
        raise KeyError(f"average_improvement needs {missing} in both metric dicts (have {sorted(strategy_metrics)})")
    changes = relative_change(strategy_metrics, baseline_metrics)
    return float(np.mean([changes[k] for k in keys]))


def dedupe_by_product(
    item_ids: np.ndarray, scores: np.ndarray, item_product: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Products in rank order, each once at its best (first) item; negative ids (faiss padding) are skipped.

    ``item_ids`` must already be sorted best first: a product's first occurrence is its best image.
    """
    keep = best_item_per_product(item_ids, scores, item_product)
    return np.asarray(item_product)[np.asarray(item_ids)[keep]], np.asarray(scores)[keep]


def best_item_per_product(item_ids: np.ndarray, scores: np.ndarray, item_product: np.ndarray) -> np.ndarray:
    """Positions (into ``item_ids``) of each product's first valid item, in rank order."""
    item_ids = np.asarray(item_ids)
    scores = np.asarray(scores)
    if item_ids.shape != scores.shape or item_ids.ndim != 1:
        raise ValueError(f"item_ids {item_ids.shape} and scores {scores.shape} must be 1-D of the same length")
    valid = np.flatnonzero(item_ids >= 0)
    products = np.asarray(item_product)[item_ids[valid]]
    seen: set[Hashable] = set()
    keep: list[int] = []
    for pos, product in zip(valid.tolist(), products.tolist(), strict=True):
        if product not in seen:
            seen.add(product)
            keep.append(pos)
    return np.asarray(keep, dtype=np.int64)
