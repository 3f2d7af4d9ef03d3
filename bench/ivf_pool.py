"""The search side of bench/cascade_overhead.py: a synthetic catalog-sized pool, its IVF indexes (one global,
one per partition), queries drawn like real traffic, nprobe chosen per index for a recall target, and
recall@10 against exact search.

Queries are noisy copies of pool items (``search_scale.QUERY_NOISE``), so that each one has meaningful
neighbours and an IVF index's recall against exact search can be measured on the very queries that are timed.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np
from search_scale import QUERY_NOISE, make_catalog

from snapsearch.retrieval.faiss_factory import apply_search_params, train_index
from snapsearch.retrieval.strategies import Fusion

K = 10
NPROBE_GRID = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


@dataclass
class Pool:
    x: np.ndarray  # (n, dim) unit vectors
    part: np.ndarray  # (n,) partition of each item
    members: list[np.ndarray]  # global ids of each partition's items
    glob: faiss.Index
    parts: list[faiss.Index]
    nprobe: dict[str, int]  # "global" and each partition's number -> the nprobe it searches with

    @property
    def sizes(self) -> np.ndarray:
        return np.array([len(m) for m in self.members])


def _ivf(x: np.ndarray, factory: str, train_sample: int, rng: np.random.Generator) -> faiss.Index:
    """An index of ``x`` trained on at most ``train_sample`` of its vectors (k-means on all of a 1M pool would
    take longer than the whole bench: the latency of a search does not depend on it)."""
    sample = x[rng.choice(len(x), min(len(x), train_sample), replace=False)]
    index = train_index(sample, factory, "ip", n_total=len(x)).index
    index.add(x)
    return index


def build_pool(dim: int, n: int, n_parts: int, factory: str, train_sample: int, seed: int) -> Pool:
    rng = np.random.default_rng(seed)
    x, part = make_catalog(n, n_parts, dim, rng)
    members = [np.flatnonzero(part == p) for p in range(n_parts)]
    glob = _ivf(x, factory, train_sample, rng)
    parts = [_ivf(np.ascontiguousarray(x[m]), factory, train_sample, rng) for m in members]
    return Pool(x, part, members, glob, parts, {})


def make_query(pool: Pool, p: int, rng: np.random.Generator) -> np.ndarray:
    """A (1, dim) query: a noisy copy of a random item of partition ``p``."""
    item = pool.x[pool.members[p][rng.integers(len(pool.members[p]))]]
    q = (item + rng.standard_normal(item.shape).astype(np.float32) * QUERY_NOISE / np.sqrt(len(item)))[None]
    q = np.ascontiguousarray(q, dtype=np.float32)
    faiss.normalize_L2(q)
    return q


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each query's exact top-k found (-1 = nothing found; a partition smaller than k has fewer)."""
    shares = [
        len(set(f[f >= 0]) & set(t[t >= 0])) / max(1, int((t >= 0).sum())) for f, t in zip(found, truth, strict=True)
    ]
    return float(np.mean(shares))


def exact(xb: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Exact inner-product top-k ids (brute force, no copy of the pool)."""
    return faiss.knn(np.ascontiguousarray(queries), xb, K, metric=faiss.METRIC_INNER_PRODUCT)[1]


def _pick_nprobe(index: faiss.Index, queries: np.ndarray, truth: np.ndarray, target: float) -> tuple[int, float]:
    """The smallest nprobe of ``NPROBE_GRID`` (up to the index's list count) reaching ``target`` recall@10."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None:
        return 0, 1.0
    grid = [n for n in NPROBE_GRID if n < ivf.nlist] + [ivf.nlist]
    for nprobe in grid:
        apply_search_params(index, nprobe, None)
        got = recall(index.search(queries, K)[1], truth)
        if got >= target:
            return nprobe, got
    return grid[-1], got


def calibrate(pool: Pool, target: float | None, fixed: int, n_queries: int, seed: int) -> dict[str, dict]:
    """Set each index's nprobe: the smallest reaching ``target`` recall@10 against exact search over the
    index's own items, on calibration queries drawn like traffic (global: any item; a partition: its items),
    none of them timed later. ``target`` None: every index searches with ``fixed``."""
    rng = np.random.default_rng(seed + 1)
    out = {}
    jobs = [("global", pool.glob, None)] + [(str(p), idx, p) for p, idx in enumerate(pool.parts)]
    for name, index, p in jobs:
        if p is None:
            ps = rng.choice(len(pool.parts), n_queries, p=pool.sizes / pool.sizes.sum())
            xb = pool.x
        else:
            ps = np.full(n_queries, p)
            xb = pool.x[pool.members[p]]
        queries = np.concatenate([make_query(pool, int(q), rng) for q in ps])
        truth = exact(xb, queries)  # ids into xb: the index's own (local) ids
        if target is None:
            apply_search_params(index, fixed, None)
            nprobe, got = fixed, recall(index.search(queries, K)[1], truth)
        else:
            nprobe, got = _pick_nprobe(index, queries, truth, target)
        pool.nprobe[name] = nprobe
        ivf = faiss.try_extract_index_ivf(index)
        out[name] = {"nprobe": nprobe, "calibration_recall@10": got, "nlist": None if ivf is None else ivf.nlist}
    return out


def search_global(pool: Pool, q: np.ndarray) -> np.ndarray:
    return pool.glob.search(q, K)[1][0]


def search_partition(pool: Pool, q: np.ndarray, p: int) -> np.ndarray:
    local = pool.parts[p].search(q, K)[1][0]
    return np.where(local >= 0, pool.members[p][np.maximum(local, 0)], -1)


def search_fusion(pool: Pool, q: np.ndarray, probs: np.ndarray, fusion: Fusion) -> tuple[np.ndarray, np.ndarray]:
    """``fusion``'s search (strategies.Fusion): ``candidates`` from the global index re-ranked by similarity +
    lam * log P(the item's partition); partition j takes the model's category j (modulo their number). The
    fused top-k, and the candidates' own top-k by similarity (what the index found, for its recall)."""
    scores, ids = pool.glob.search(q, max(fusion.candidates, K))
    scores, ids = scores[0], ids[0]
    p = np.clip(probs.reshape(-1), fusion.eps, 1.0)
    fused = scores + fusion.lam * np.log(p[pool.part[np.maximum(ids, 0)] % len(p)])
    fused[ids < 0] = -np.inf
    return ids[np.lexsort((ids, -fused))][:K], ids[:K]


def timed_recall(pool: Pool, queries: np.ndarray, parts: np.ndarray, found: dict[str, np.ndarray]) -> dict:
    """Recall@10 of the timed searches: global against exact global search; routed against exact search in its
    partition (what the IVF index could find) and against exact global search (what routing costs besides);
    fusion's candidates (the global index searched for ``candidates``, their top-k by similarity) against exact
    global search (its re-ranking by the gate is the strategy's choice, not the index's miss)."""
    truth_global = exact(pool.x, queries)
    truth_part = np.empty_like(truth_global)
    for p in np.unique(parts):
        rows = np.flatnonzero(parts == p)
        local = exact(pool.x[pool.members[p]], queries[rows])
        truth_part[rows] = np.where(local >= 0, pool.members[p][np.maximum(local, 0)], -1)
    return {
        "global_vs_exact": recall(found["global"], truth_global),
        "top1_vs_exact_partition": recall(found["top1"], truth_part),
        "top1_vs_exact_global": recall(found["top1"], truth_global),
        "fusion_candidates_vs_exact_global": recall(found["fusion_candidates"], truth_global),
    }
