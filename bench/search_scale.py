"""Search stage at catalog scale: global vs partitioned (cascade) search on synthetic clustered embeddings.

    python bench/search_scale.py [--sizes 100000 1000000] [--partitions 32] [--dim 128]
                                 [--factories Flat "IVF{nlist},Flat" "IVF{nlist},PQ32np" HNSW32]

Items: ``partitions`` categories of Zipf-distributed sizes (the largest ~10x the median), each a mixture of
product clusters around a category centre, L2-normalised. Queries: noisy copies of random items, routed to
their true category (the classifier's accuracy is measured separately by evaluate.py; this isolates the
search stage). Per factory and size: build time, index memory (serialised bytes, global and all
partitions), latency per query at batch 1 (p50/p95) and per query in batches of 256, and Recall@10 of each
search against exact global search. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import faiss
import numpy as np
from record import save_results

from snapsearch.retrieval.faiss_factory import apply_search_params, build_index

ROOT = Path(__file__).resolve().parents[1]
K = 10
BATCH = 256
ZIPF_EXPONENT = 1.1
PRODUCTS_PER_CATEGORY = 200
CATEGORY_SPREAD, PRODUCT_SPREAD, IMAGE_NOISE, QUERY_NOISE = 1.0, 0.6, 0.35, 0.45


def make_catalog(n: int, n_parts: int, dim: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Clustered unit vectors and their category."""
    weights = 1.0 / np.arange(1, n_parts + 1) ** ZIPF_EXPONENT
    sizes = np.maximum(1, np.round(n * weights / weights.sum())).astype(int)
    sizes[0] += n - sizes.sum()
    cats = rng.standard_normal((n_parts, dim)) * CATEGORY_SPREAD
    x = np.empty((n, dim), np.float32)
    part = np.repeat(np.arange(n_parts), sizes)
    start = 0
    for p, size in enumerate(sizes):
        prods = cats[p] + rng.standard_normal((PRODUCTS_PER_CATEGORY, dim)) * PRODUCT_SPREAD
        x[start : start + size] = (
            prods[rng.integers(0, PRODUCTS_PER_CATEGORY, size)] + rng.standard_normal((size, dim)) * IMAGE_NOISE
        )
        start += size
    faiss.normalize_L2(x)
    return x, part


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[f >= 0]) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


def _memory(index: faiss.Index) -> int:
    return int(faiss.serialize_index(index).nbytes)


def bench_factory(x, part, queries, q_part, truth, factory, n_parts, nprobe, ef_search, n_single):
    t0 = time.perf_counter()
    glob = build_index(x, factory, "ip").index
    apply_search_params(glob, nprobe, ef_search)
    t_global = time.perf_counter() - t0
    t0 = time.perf_counter()
    members = [np.flatnonzero(part == p) for p in range(n_parts)]
    parts = []
    for m in members:
        idx = build_index(np.ascontiguousarray(x[m]), factory, "ip").index
        apply_search_params(idx, nprobe, ef_search)
        parts.append(idx)
    t_parts = time.perf_counter() - t0

    def search_part(qs: np.ndarray, ps: np.ndarray) -> np.ndarray:
        out = np.full((len(qs), K), -1, np.int64)
        for p in np.unique(ps):
            rows = np.flatnonzero(ps == p)
            _, local = parts[p].search(qs[rows], K)
            out[rows] = np.where(local >= 0, members[p][np.maximum(local, 0)], -1)
        return out

    single_g, single_p = [], []
    for i in range(n_single):
        q = queries[i : i + 1]
        t = time.perf_counter()
        glob.search(q, K)
        single_g.append(time.perf_counter() - t)
        t = time.perf_counter()
        search_part(q, q_part[i : i + 1])
        single_p.append(time.perf_counter() - t)
    t = time.perf_counter()
    _, found_g = glob.search(queries, K)
    batched_g = (time.perf_counter() - t) / len(queries)
    t = time.perf_counter()
    found_p = search_part(queries, q_part)
    batched_p = (time.perf_counter() - t) / len(queries)
    ms = lambda v, q: float(np.percentile(v, q) * 1e3)  # noqa: E731
    return {
        "factory": factory,
        "build_s": {"global": t_global, "partitioned": t_parts},
        "memory_mb": {"global": _memory(glob) / 2**20, "partitioned": sum(map(_memory, parts)) / 2**20},
        "batch1_ms": {
            "global": {"p50": ms(single_g, 50), "p95": ms(single_g, 95)},
            "partitioned": {"p50": ms(single_p, 50), "p95": ms(single_p, 95)},
        },
        "batched_ms_per_query": {"global": batched_g * 1e3, "partitioned": batched_p * 1e3},
        "recall@10_vs_exact_global": {"global": _recall(found_g, truth), "partitioned": _recall(found_p, truth)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--partitions", type=int, default=32)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--single", type=int, default=200, help="queries timed one by one")
    ap.add_argument("--factories", nargs="+", default=["Flat", "IVF{nlist},Flat", "IVF{nlist},PQ32np", "HNSW32"])
    ap.add_argument("--nprobe", type=int, default=16)
    ap.add_argument("--ef-search", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "search_scale.json"))
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    results = []
    for n in args.sizes:
        x, part = make_catalog(n, args.partitions, args.dim, rng)
        pick = rng.integers(0, n, args.queries)
        queries = x[pick] + rng.standard_normal((args.queries, args.dim)).astype(np.float32) * QUERY_NOISE / np.sqrt(
            args.dim
        )
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        faiss.normalize_L2(queries)
        exact = faiss.IndexFlatIP(args.dim)
        exact.add(x)
        _, truth = exact.search(queries, K)
        for factory in args.factories:
            row = bench_factory(
                x, part, queries, part[pick], truth, factory, args.partitions, args.nprobe, args.ef_search, args.single
            )
            row["n_items"] = n
            results.append(row)
            g, p = row["batch1_ms"]["global"]["p50"], row["batch1_ms"]["partitioned"]["p50"]
            print(
                f"{n:>9} {factory:<18} build {row['build_s']['global']:6.1f}s/{row['build_s']['partitioned']:6.1f}s "
                f"mem {row['memory_mb']['global']:7.1f}/{row['memory_mb']['partitioned']:7.1f} MB  "
                f"b1 p50 {g:6.3f}/{p:6.3f} ms ({g / p:4.1f}x)  batched {row['batched_ms_per_query']['global']:.4f}/"
                f"{row['batched_ms_per_query']['partitioned']:.4f} ms/q  R@10 "
                f"{row['recall@10_vs_exact_global']['global']:.3f}/{row['recall@10_vs_exact_global']['partitioned']:.3f}",
                flush=True,
            )
    save_results(
        args.out,
        {"params": vars(args), "results": results},
        faiss=faiss.__version__,
        omp_threads=faiss.omp_get_max_threads(),
    )


if __name__ == "__main__":
    main()
