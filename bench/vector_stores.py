"""FAISS (in-process, exact Flat) vs Qdrant's embedded mode on the same routed queries.

    python bench/vector_stores.py [--sizes 10000 100000] [--queries 100] [--dim 256] [--partitions 30]

Synthetic clustered vectors whose partition sizes follow a Zipf-like skew (as a real catalog's categories
do); each query's gate probabilities favour its true partition. For each pool size and store: build time,
batch-1 search latency p50/p95 for global search and for top-1 routed search, and the overlap of Qdrant's
top-10 with FAISS's (both are exact: 1.0 expected). Embedded Qdrant is exact search in this process (numpy
over the points, filters evaluated in Python, payload indexes ignored); a Qdrant server searches HNSW graphs
with indexed tenant payloads, which this does not measure. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from record import save_results

from snapsearch.retrieval import GlobalSearch, PartitionedIndex, Top1, rank
from snapsearch.retrieval.qdrant_index import QdrantIndex, QdrantSpec

ROOT = Path(__file__).resolve().parents[1]
K = 10
SKEW = 1.1  # Zipf exponent of the partition sizes


def make_pool(n: int, dim: int, n_parts: int, n_queries: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, n_parts + 1) ** SKEW
    partition = rng.choice(n_parts, size=n, p=weights / weights.sum())
    centres = rng.standard_normal((n_parts, dim)).astype(np.float32)
    vectors = centres[partition] + 1.5 * rng.standard_normal((n, dim)).astype(np.float32)
    truth = rng.choice(n, size=n_queries)
    queries = vectors[truth] + 0.5 * rng.standard_normal((n_queries, dim)).astype(np.float32)
    logits = rng.standard_normal((n_queries, n_parts)) + 4 * np.eye(n_parts)[partition[truth]]
    return {
        "vectors": vectors,
        "partition": partition,
        "product": np.arange(n),
        "queries": queries,
        "probs": np.exp(logits) / np.exp(logits).sum(1, keepdims=True),
    }


def time_queries(index, pool: dict[str, np.ndarray], strategy) -> tuple[list[list[int]], dict[str, float]]:
    """Batch-1 searches (one warm-up); returns the rankings and the latency percentiles."""
    rank(strategy, index, pool["queries"][:1], pool["probs"][:1], K)
    times, ranked = [], []
    for q, p in zip(pool["queries"], pool["probs"], strict=True):
        t0 = time.perf_counter()
        (r,), _ = rank(strategy, index, q[None], p[None], K)
        times.append(time.perf_counter() - t0)
        ranked.append(r.products)
    ms = np.array(times) * 1e3
    return ranked, {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--partitions", type=int, default=30)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "vector_stores.json"))
    args = ap.parse_args()
    categories = [f"cat{p}" for p in range(args.partitions)]
    rows = []
    for n in args.sizes:
        pool = make_pool(n, args.dim, args.partitions, args.queries)
        t0 = time.perf_counter()
        faiss_index = PartitionedIndex.build(pool["vectors"], pool["partition"], pool["product"], args.partitions)
        faiss_build = time.perf_counter() - t0
        t0 = time.perf_counter()
        qdrant_index = QdrantIndex.build_streaming(
            QdrantSpec(collection=f"bench{n}"),
            lambda pool=pool: np.array_split(pool["vectors"], max(1, len(pool["vectors"]) // 10_000)),
            pool["partition"],
            pool["product"],
            categories,
        )
        qdrant_build = time.perf_counter() - t0
        for name, strategy in (("global", GlobalSearch()), ("top1", Top1())):
            f_ranked, f_lat = time_queries(faiss_index, pool, strategy)
            q_ranked, q_lat = time_queries(qdrant_index, pool, strategy)
            overlap = np.mean([len(set(a) & set(b)) / K for a, b in zip(f_ranked, q_ranked, strict=True)])
            for store, lat, build in (("faiss-flat", f_lat, faiss_build), ("qdrant-embedded", q_lat, qdrant_build)):
                row = {"n_items": n, "store": store, "strategy": name, "build_s": build, **lat}
                row["top10_overlap_with_faiss"] = float(overlap) if store != "faiss-flat" else 1.0
                rows.append(row)
                print(
                    f"{n:>8} {store:<16} {name:<7} build {build:7.1f} s  p50 {lat['p50_ms']:8.2f} ms  "
                    f"p95 {lat['p95_ms']:8.2f} ms  top-10 overlap {row['top10_overlap_with_faiss']:.3f}",
                    flush=True,
                )
        qdrant_index.client.close()
    save_results(args.out, {"dim": args.dim, "partitions": args.partitions, "k": K, "results": rows})


if __name__ == "__main__":
    main()
