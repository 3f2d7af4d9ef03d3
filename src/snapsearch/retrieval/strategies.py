"""Cascade routing strategies: which partitions each query searches (None = global search), and the ranking.

Every strategy reads the classifier's calibrated category probabilities ``probs`` (n_queries x
n_partitions, rows summing to 1). :func:`snapsearch.retrieval.cascade.run_strategy` turns a strategy's
routes into ranked products. Strategies are small dataclasses so a config can build them by name.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from snapsearch.retrieval.conformal import lac_sets, lac_threshold
from snapsearch.retrieval.index import PartitionedIndex, SearchHits

log = logging.getLogger(__name__)

Route = list[int] | None


def check_probs(probs: np.ndarray, n_queries: int | None = None, n_partitions: int | None = None) -> np.ndarray:
    """Probabilities as a (n_queries, n_partitions) non-negative float array with positive row sums."""
    p = np.asarray(probs, dtype=np.float64)
    wrong_n = n_queries is not None and p.shape[:1] != (n_queries,)
    wrong_c = n_partitions is not None and p.shape[1:] != (n_partitions,)
    if p.ndim != 2 or wrong_n or wrong_c:
        raise ValueError(f"probs must be (n_queries={n_queries}, n_partitions={n_partitions}), got {p.shape}")
    if not np.isfinite(p).all() or (p < 0).any() or (p.sum(axis=1) <= 0).any():
        raise ValueError("probs must be finite, non-negative, with a positive sum in every row")
    return p


def _by_probability(probs: np.ndarray) -> np.ndarray:
    """Partition indices per row, most probable first (ties: lower index first)."""
    return np.argsort(-probs, axis=1, kind="stable")


class Strategy(ABC):
    """Decides, per query, the partitions to search; the default ranking is the index's merged similarity."""

    # Whether the strategy reads the gate's probabilities: a serving path skips the classifier when not.
    uses_gate: ClassVar[bool] = True

    @abstractmethod
    def route(self, probs: np.ndarray, true_partition: np.ndarray | None = None) -> list[Route]:
        """Partitions to search per query, most probable first; None means global search."""

    def search(
        self, index: PartitionedIndex, query_emb: np.ndarray, probs: np.ndarray, routed: list[Route], fetch: int
    ) -> list[SearchHits]:
        """Up to ``fetch`` items per query, best first, from the routed partitions (or the whole pool)."""
        return index.search_routed(query_emb, routed, fetch)


@dataclass(frozen=True)
class GlobalSearch(Strategy):
    """The baseline: one search over the whole pool, the classifier ignored."""

    uses_gate: ClassVar[bool] = False

    def route(self, probs: np.ndarray, true_partition: np.ndarray | None = None) -> list[Route]:
        return [None] * len(check_probs(probs))


@dataclass(frozen=True)
class Top1(Strategy):
    """The published method: search only the partition of the classifier's top prediction."""

    def route(self, probs: np.ndarray, true_partition: np.ndarray | None = None) -> list[Route]:
        return [[int(c)] for c in np.argmax(check_probs(probs), axis=1)]


@dataclass(frozen=True)
class TopK(Strategy):
    """The k most probable partitions, results merged by similarity (shop categories overlap)."""

    k: int = 3

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"TopK(k={self.k}): k must be >= 1")

    def route(self, probs: np.ndarray, true_partition: np.ndarray | None = None) -> list[Route]:
        order = _by_probability(check_probs(probs))[:, : self.k]
        return [[int(c) for c in row] for row in order]


@dataclass(frozen=True)
class Adaptive(Strategy):
    """The fewest partitions whose probability mass reaches p; global search when the top one is below
    ``min_confidence``. p=1 searches every partition with a non-zero probability."""

    p: float = 0.9
    min_confidence: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < self.p <= 1.0 or not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(
                f"Adaptive(p={self.p}, min_confidence={self.min_confidence}): need 0 < p <= 1, 0 <= c <= 1"
            )

    def route(self, probs: np.ndarray, true_partition: np.ndarray | None = None) -> list[Route]:
        probs = check_probs(probs)
        routes: list[Route] = []
        for row, order in zip(probs, _by_probability(probs), strict=True):
            if row[order[0]] < self.min_confidence:
                routes.append(None)
                continue
            n_positive = int((row > 0).sum())
            if self.p >= 1.0:  # exact: rounding in a cumulative sum must not drop tiny non-zero partitions
                count = n_positive
            else:
                mass = np.cumsum(row[order]) / row.sum()
                count = min(int(np.searchsorted(mass, self.p)) + 1, n_positive)
            routes.append([int(c) for c in order[:count]])
        return routes


@dataclass(frozen=True)
class Fusion(Strategy):
    """Global candidates re-ranked by similarity + lam * log P(partition of the item).

    A soft gate: a wrong top prediction demotes the right product instead of hiding it. The returned
    scores are the fused ones. ``eps`` floors probabilities so log(0) cannot erase a candidate.
    """

    lam: float = 0.1
    candidates: int = 100
    eps: float = 1e-6

    def __post_init__(self) -> None:
        if self.lam < 0 or self.candidates < 1 or not 0.0 < self.eps < 1.0:
            raise ValueError(f"Fusion(lam={self.lam}, candidates={self.candidates}, eps={self.eps}): invalid")

    def route(self, probs: np.ndarray, true_partition: np.ndarray | None = None) -> list[Route]:
        return [None] * len(check_probs(probs))

    def search(
        self, index: PartitionedIndex, query_emb: np.ndarray, probs: np.ndarray, routed: list[Route], fetch: int
    ) -> list[SearchHits]:
        log_p = np.log(np.clip(check_probs(probs), self.eps, 1.0))
        fused_hits = []
        for q, hits in enumerate(index.search_global(query_emb, max(self.candidates, fetch))):
            fused = hits.scores + self.lam * log_p[q, index.item_partition[hits.item_ids]]
            order = np.lexsort((hits.item_ids, -fused))
            fused_hits.append(SearchHits(hits.item_ids[order], fused[order].astype(np.float32)))
        return fused_hits


@dataclass
class Conformal(Strategy):
    """Search the union of a split-conformal category set (LAC, see :mod:`.conformal`).

    Call :meth:`fit` on held-out labelled photos first (or pass ``threshold``). Global search when the
    set is empty (nothing plausible) or larger than ``max_set_size`` (too uncertain to gain speed).
    """

    coverage: float = 0.9
    max_set_size: int = 5
    threshold: float | None = None
    n_calibration: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if not 0.0 < self.coverage < 1.0 or self.max_set_size < 1:
            raise ValueError(f"Conformal(coverage={self.coverage}, max_set_size={self.max_set_size}): invalid")

    def fit(self, val_probs: np.ndarray, val_labels: np.ndarray) -> Conformal:
        """Calibrate the threshold for ``coverage`` on validation photos (not the training ones)."""
        self.threshold = lac_threshold(check_probs(val_probs), np.asarray(val_labels), self.coverage)
        self.n_calibration = len(val_labels)
        log.info(
            "conformal threshold %.4f for coverage %.3f from %d photos", self.threshold, self.coverage, len(val_labels)
        )
        return self

    def prediction_sets(self, probs: np.ndarray) -> list[list[int]]:
        """Each query's conformal category set, most probable first (may be empty)."""
        if self.threshold is None:
            raise RuntimeError("Conformal is not calibrated: call fit(val_probs, val_labels) first")
        return lac_sets(check_probs(probs), self.threshold)

    def route(self, probs: np.ndarray, true_partition: np.ndarray | None = None) -> list[Route]:
        return [s if 0 < len(s) <= self.max_set_size else None for s in self.prediction_sets(probs)]


@dataclass(frozen=True)
class Oracle(Strategy):
    """The true partition: the upper bound of any routing with this embedder. Evaluation only."""

    def route(self, probs: np.ndarray, true_partition: np.ndarray | None = None) -> list[Route]:
        if true_partition is None:
            raise ValueError("Oracle routes by the true partition: pass true_partition (evaluation only)")
        true = np.asarray(true_partition).reshape(-1)
        n = len(check_probs(probs))
        if len(true) != n:
            raise ValueError(f"true_partition has {len(true)} entries for {n} queries")
        return [[int(t)] for t in true]
