"""Run a routing strategy end to end: routes -> raw item hits -> ranked products; and explain its recall.

Several images of one product can fill the first results, so we fetch ``k * overfetch`` items, keep
each product once, and fetch more for the queries still short of k products while the pool has more.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import NamedTuple

import numpy as np

from snapsearch.retrieval.hubness import DENSITY, HubCorrection, HubnessError
from snapsearch.retrieval.index import PartitionedIndex
from snapsearch.retrieval.metrics import best_item_per_product
from snapsearch.retrieval.novelty import NoveltyBonus
from snapsearch.retrieval.strategies import Route, Strategy, check_probs

DEFAULT_OVERFETCH = 4
# Each retry for queries still short of k products doubles the raw fetch.
FETCH_GROWTH = 2


class RoutingDecomposition(NamedTuple):
    """Cascade recall = routed_right x found_within: which stage loses the product."""

    routed_right: float
    found_within: float


class Ranking(NamedTuple):
    """One query's ranked products (best first), each with its best item's score and id."""

    products: list[Hashable]
    scores: list[float]
    items: list[int]


def rank(
    strategy: Strategy,
    index: PartitionedIndex,
    query_emb: np.ndarray,
    probs: np.ndarray,
    k: int,
    true_partition: np.ndarray | None = None,
    overfetch: int = DEFAULT_OVERFETCH,
    hubness: HubCorrection | None = None,
    novelty: NoveltyBonus | None = None,
) -> tuple[list[Ranking], list[Route]]:
    """(each query's top-k products with scores and best items; the partitions each query searched, None =
    global). The one ranking path: the evaluator, the CLI and the service all rank through it.

    Args:
        strategy: a routing strategy (Top1(), TopK(3), ...).
        index: the partitioned index of the search pool.
        query_emb: (n_queries, dim) query embeddings.
        probs: (n_queries, n_partitions) calibrated category probabilities.
        k: products per query.
        true_partition: the queries' true partitions; only Oracle reads them.
        overfetch: raw items fetched per wanted product before de-duplication.
        hubness: re-score the fetched items by their density (the index's :data:`DENSITY` column); None:
            the store's scores as they are.
        novelty: add the novelty bonus to the fetched items of untrained products (after the hubness
            correction); None: no bonus.
    """
    if hubness is not None and DENSITY not in index.metadata:
        raise HubnessError(f"the index has no {DENSITY!r} column: build it with a hubness reference")
    if k < 1 or overfetch < 1:
        raise ValueError(f"k={k} and overfetch={overfetch} must be >= 1")
    queries = np.asarray(query_emb, dtype=np.float32)
    queries = queries[None] if queries.ndim == 1 else queries
    probs = check_probs(probs, len(queries), index.n_partitions)
    routed = strategy.route(probs, true_partition)
    if len(routed) != len(queries):
        raise ValueError(f"{type(strategy).__name__} routed {len(routed)} of {len(queries)} queries")

    ranked: list[Ranking] = [Ranking([], [], []) for _ in range(len(queries))]
    pending = np.arange(len(queries))
    fetch = k * overfetch
    for rescoring in (hubness, novelty):
        fetch = fetch if rescoring is None else rescoring.fetch(fetch)
    fetch = min(fetch, index.n_items)
    ramps = None if novelty is None else novelty.ramp(queries)
    while len(pending):
        hits = strategy.search(index, queries[pending], probs[pending], [routed[i] for i in pending], fetch)
        if hubness is not None:
            hits = [hubness.rescore(h, index.metadata[DENSITY]) for h in hits]
        if novelty is not None and ramps is not None:
            hits = [novelty.rescore(h, ramps[qi], index.item_product) for qi, h in zip(pending, hits, strict=True)]
        short = []
        for qi, h in zip(pending, hits, strict=True):
            keep = best_item_per_product(h.item_ids, h.scores, index.item_product)[:k]
            if len(keep) < k and len(h.item_ids) >= fetch and fetch < index.n_items:
                short.append(qi)  # the pool may hold more products: fetch deeper
            else:
                items = h.item_ids[keep]
                ranked[qi] = Ranking(index.item_product[items].tolist(), h.scores[keep].tolist(), items.tolist())
        pending = np.asarray(short, dtype=np.int64)
        fetch = min(fetch * FETCH_GROWTH, index.n_items)
    return ranked, routed


def run_strategy(
    strategy: Strategy,
    index: PartitionedIndex,
    query_emb: np.ndarray,
    probs: np.ndarray,
    k: int,
    true_partition: np.ndarray | None = None,
    overfetch: int = DEFAULT_OVERFETCH,
) -> tuple[list[list[Hashable]], list[Route]]:
    """(top-k product ids per query, best first; the routes): :func:`rank` without scores."""
    ranked, routed = rank(strategy, index, query_emb, probs, k, true_partition, overfetch)
    return [r.products for r in ranked], routed


def routing_decomposition(
    routed_partitions: Sequence[Route], true_partition: Sequence[int] | np.ndarray, found_at_k: Sequence[bool]
) -> RoutingDecomposition:
    """Fraction of queries whose true partition was searched (global search counts as routed right), and
    recall among those. As a product lives in one partition, recall = routed_right x found_within."""
    true = np.asarray(true_partition).reshape(-1)
    found = np.asarray(found_at_k, dtype=bool).reshape(-1)
    if not len(routed_partitions) == len(true) == len(found) or len(true) == 0:
        raise ValueError(
            f"need one route, true partition and found flag per query: {len(routed_partitions)}, "
            f"{len(true)}, {len(found)}"
        )
    right = np.array([r is None or int(t) in r for r, t in zip(routed_partitions, true, strict=True)])
    return RoutingDecomposition(float(right.mean()), float(found[right].mean()) if right.any() else 0.0)
