"""Score every strategy on the same model outputs: retrieval metrics, the routing split ("right category
routed" x "found within it"), gains over the baseline, and R@1 per category."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from snapsearch.evaluation.uncertainty import paired_bootstrap
from snapsearch.models.classifier_metrics import classifier_metrics
from snapsearch.retrieval import (
    average_improvement,
    per_query_metrics,
    relative_change,
    routing_decomposition,
)
from snapsearch.search.cascade import Cascade

PerQuery = dict[str, dict[str, np.ndarray]]  # run name -> metric -> one value per query


def score_strategies(
    cascade: Cascade,
    runs: Mapping[str, tuple[str, np.ndarray]],
    emb: np.ndarray,
    true_partition: np.ndarray,
    true_product: np.ndarray,
    *,
    k: int,
    ks: Sequence[int],
    mrr_depth: int,
    baseline: str,
    improvement_metrics: Sequence[str],
    bootstrap_resamples: int,
    bootstrap_unit: str,
    seed: int,
) -> tuple[dict[str, Any], dict[str, list[list[int]]], PerQuery]:
    """Per run name (a strategy, or a strategy on corrected probabilities): its scores, with paired
    bootstrap 95% intervals (``intervals``, resampling ``bootstrap_unit``: products or photos); its
    top-``k`` rankings; and every query's metric values (what the breakdowns over subsets of the queries
    read).

    ``runs[name] = (strategy name in the cascade, the gate's probabilities to route with)``. Each query is
    ranked ``mrr_depth`` products deep (at least ``k``) so that MRR is not cut at ``k`` (where, with one
    relevant product, it would be mAP@k again); a product the strategy never reaches (outside the routed
    partitions) counts 0.
    """
    per_query: PerQuery = {}
    scores: dict[str, Any] = {}
    ranked_by: dict[str, list[list[int]]] = {}
    for name, (strategy, probs) in runs.items():
        t0 = time.perf_counter()
        rankings, routed = cascade.rank(emb, probs, max(k, mrr_depth), strategy, true_partition=true_partition)
        search_ms = 1e3 * (time.perf_counter() - t0) / len(true_product)
        deep = [[int(p) for p in r.products] for r in rankings]
        ranked = [r[:k] for r in deep]
        ranked_by[name] = ranked
        per_query[name] = per_query_metrics(deep, true_product.tolist(), ks=tuple(ks), map_k=k)
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
        intervals = paired_bootstrap(
            per_query,
            baseline,
            improvement_metrics,
            products=true_product,
            unit=bootstrap_unit,
            resamples=bootstrap_resamples,
            seed=seed,
        )
        for name, s in scores.items():
            s["intervals"] = intervals[name]
    return scores, ranked_by, per_query


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


SIZE_BANDS = ((1, 1), (2, 5), (6, None))  # products per partition: (low, high), None = no upper bound


def _band(low: int, high: int | None) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    name = f"{low}" if low == high else f"{low}-{high}" if high is not None else f"{low}+"
    return name, lambda n: (n >= low) & (n <= (np.inf if high is None else high))


def subset_scores(
    per_query: PerQuery,
    rows: np.ndarray,
    *,
    products: np.ndarray,
    baseline: str,
    improvement_metrics: Sequence[str],
    bootstrap_resamples: int,
    bootstrap_unit: str,
    seed: int,
) -> dict[str, Any]:
    """Every strategy's metrics and average gain over the baseline within the queries ``rows``, with paired
    bootstrap intervals over those queries (``products``: every query's true product, the clusters of
    ``bootstrap_unit="product"``; the same queries and order as ``per_query``)."""
    within = {s: {m: v[rows] for m, v in metrics.items()} for s, metrics in per_query.items()}
    means = {s: {m: float(v.mean()) for m, v in metrics.items()} for s, metrics in within.items()}
    keys = tuple(improvement_metrics)
    strategies = {
        s: {"metrics": m, "average_improvement": average_improvement(m, means[baseline], keys=keys)}
        for s, m in means.items()
    }
    if bootstrap_resamples > 0:
        intervals = paired_bootstrap(
            within,
            baseline,
            improvement_metrics,
            products=np.asarray(products)[rows],
            unit=bootstrap_unit,
            resamples=bootstrap_resamples,
            seed=seed,
        )
        for s, entry in strategies.items():
            entry["intervals"] = intervals[s]
    return {"n_queries": len(rows), "strategies": strategies}


def partition_size_breakdown(
    item_partition: np.ndarray,
    item_product: np.ndarray,
    true_partition: np.ndarray,
    true_product: np.ndarray,
    per_query: PerQuery,
    **scoring: Any,
) -> dict[str, dict[str, Any]]:
    """:func:`subset_scores` within the queries whose true partition holds 1, 2 to 5, or 6 or more products:
    where routing can only be right or wrong (one product) the cascade measures the gate, not the search."""
    n_products = np.zeros(int(item_partition.max()) + 1, dtype=np.int64)
    for p in np.unique(item_partition):
        n_products[p] = len(np.unique(item_product[item_partition == p]))
    size = n_products[true_partition]
    out: dict[str, dict[str, Any]] = {}
    for low, high in SIZE_BANDS:
        name, within = _band(low, high)
        rows = np.flatnonzero(within(size))
        if len(rows):
            out[name] = {"n_partitions": int(within(n_products).sum())} | subset_scores(
                per_query, rows, products=true_product, **scoring
            )
    return out


def novelty_breakdown(
    true_product: np.ndarray,
    unseen: Sequence[int],
    per_query: PerQuery,
    *,
    probs: np.ndarray,
    true_partition: np.ndarray,
    **scoring: Any,
) -> dict[str, dict[str, Any]]:
    """:func:`subset_scores` of the queries of products the models trained on (``seen``) and of those the
    unseen-products protocol held out (``unseen``: fully, or their photos only), each with the gate's
    accuracy and calibration on its photos: does the gate recognise a new product's category?"""
    is_unseen = np.isin(true_product, np.asarray(list(unseen), dtype=np.int64))
    return {
        name: {"n_products": int(np.unique(true_product[rows]).size)}
        | {"gate": classifier_metrics(probs[rows], true_partition[rows])}
        | subset_scores(per_query, rows, products=true_product, **scoring)
        for name, rows in (("seen", np.flatnonzero(~is_unseen)), ("unseen", np.flatnonzero(is_unseen)))
        if len(rows)
    }
