"""Score every strategy on the same model outputs: retrieval metrics, the routing split ("right category
routed" x "found within it"), gains over the baseline, and R@1 per category."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from snapsearch.evaluation.uncertainty import paired_bootstrap
from snapsearch.retrieval import average_improvement, per_query_metrics, relative_change, routing_decomposition
from snapsearch.search.cascade import Cascade


def score_strategies(
    cascade: Cascade,
    runs: Mapping[str, tuple[str, np.ndarray]],
    emb: np.ndarray,
    true_partition: np.ndarray,
    true_product: np.ndarray,
    *,
    k: int,
    ks: Sequence[int],
    baseline: str,
    improvement_metrics: Sequence[str],
    bootstrap_resamples: int,
    seed: int,
) -> tuple[dict[str, Any], dict[str, list[list[int]]]]:
    """Per run name (a strategy, or a strategy on corrected probabilities): its scores, with paired
    bootstrap 95% intervals (``intervals``); and its rankings.

    ``runs[name] = (strategy name in the cascade, the gate's probabilities to route with)``.
    """
    per_query: dict[str, dict[str, np.ndarray]] = {}
    scores: dict[str, Any] = {}
    ranked_by: dict[str, list[list[int]]] = {}
    for name, (strategy, probs) in runs.items():
        t0 = time.perf_counter()
        rankings, routed = cascade.rank(emb, probs, k, strategy, true_partition=true_partition)
        search_ms = 1e3 * (time.perf_counter() - t0) / len(true_product)
        ranked = [[int(p) for p in r.products] for r in rankings]
        ranked_by[name] = ranked
        per_query[name] = per_query_metrics(ranked, true_product.tolist(), ks=tuple(ks), map_k=k)
        metrics = {m: float(v.mean()) for m, v in per_query[name].items()}
        found = np.array([q in r[: ks[0]] for q, r in zip(true_product, ranked, strict=True)])
        routed_right, found_within = routing_decomposition(routed, true_partition, found)
        n_parts = [cascade.index.n_partitions if r is None else len(r) for r in routed]
        scores[name] = {
            "metrics": metrics,
            "routed_right": routed_right,
            "found_within": found_within,
            "mean_partitions": float(np.mean(n_parts)),
            "search_ms_p50": search_ms,
        }
    base = scores[baseline]["metrics"]
    for s in scores.values():
        s["relative"] = relative_change(s["metrics"], base)
        s["average_improvement"] = average_improvement(s["metrics"], base, keys=tuple(improvement_metrics))
    if bootstrap_resamples > 0:
        intervals = paired_bootstrap(per_query, baseline, improvement_metrics, resamples=bootstrap_resamples, seed=seed)
        for name, s in scores.items():
            s["intervals"] = intervals[name]
    return scores, ranked_by


def recall1_per_category(
    categories: Sequence[str],
    true_partition: np.ndarray,
    true_product: np.ndarray,
    ranked_by: Mapping[str, list[list[int]]],
) -> dict[str, dict[str, float]]:
    """R@1 of every run within each category's queries (and the query count)."""
    out: dict[str, dict[str, float]] = {}
    for c, cat in enumerate(categories):
        rows = np.flatnonzero(true_partition == c)
        if len(rows):
            out[cat] = {"n": len(rows)} | {
                name: float(np.mean([true_product[i] in ranked[i][:1] for i in rows]))
                for name, ranked in ranked_by.items()
            }
    return out
