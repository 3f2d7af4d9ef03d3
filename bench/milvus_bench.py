"""Milvus (a real standalone server on 127.0.0.1, HNSW, category as partition key) vs FAISS IVF in-process.

    python bench/milvus_bench.py [--n 200000] [--dim 256] [--partitions 30] [--queries 200] [--ef 64 128]

Synthetic clustered vectors of the embedding's width in partitions of Zipf-skewed sizes (bench/vector_stores.py's
pool). Measures the bulk load (points/s through the client, then the server's index build), and per search mode
(global; routed to the top-1 and top-3 partitions by the gate's probabilities): batch-1 latency p50/p95 and
recall@10 against exact search over the same candidates (numpy, the same routing). FAISS IVF is swept over
nprobe and reported at the first nprobe that reaches Milvus's recall. One server process on this machine:
network round trips through loopback, no shards, no replicas, no query nodes to scale. Writes JSON (the
Milvus rows as soon as they are measured, before FAISS starts: a run stopped there keeps them).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from record import save_results
from vector_stores import make_pool

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from snapsearch.retrieval import PartitionedIndex  # noqa: E402
from snapsearch.retrieval.backends import IndexSpec, Items  # noqa: E402
from snapsearch.retrieval.faiss_factory import apply_search_params, l2_normalize  # noqa: E402
from tests.milvus_server import MilvusProcess  # noqa: E402

K = 10
MODES = {"global": 0, "top1": 1, "top3": 3}  # partitions searched (0: all, no filter)
NPROBES = (1, 2, 4, 8, 16, 32, 64, 128)
INDEX_POLL_S = 2.0


def routes(probs: np.ndarray, n_parts: int) -> list[list[int] | None]:
    return [None if n_parts == 0 else np.argsort(-p)[:n_parts].tolist() for p in probs]


def exact(x: np.ndarray, partition: np.ndarray, q: np.ndarray, route: list[int] | None) -> set[int]:
    cand = np.arange(len(x)) if route is None else np.flatnonzero(np.isin(partition, route))
    scores = x[cand] @ q
    return set(cand[np.argsort(-scores)[:K]].tolist())


def timed(store, queries: np.ndarray, routed: list[list[int] | None]) -> tuple[list[set[int]], dict[str, float]]:
    """Batch-1 searches (one warm-up): the hits and the latency percentiles."""
    store.search_routed(queries[:1], routed[:1], K)
    times, hits = [], []
    for q, r in zip(queries, routed, strict=True):
        t0 = time.perf_counter()
        (h,) = store.search_routed(q[None], [r], K)
        times.append(time.perf_counter() - t0)
        hits.append(set(h.item_ids.tolist()))
    ms = np.array(times) * 1e3
    return hits, {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95))}


def recall(hits: list[set[int]], truth: list[set[int]]) -> float:
    return float(np.mean([len(h & t) / K for h, t in zip(hits, truth, strict=True)]))


def wait_indexed(store, n: int, timeout_s: float) -> float:
    """Flush, then wait until the server's index covers every point; returns the seconds waited."""
    t0 = time.perf_counter()
    client = store.db.client()
    client.flush(store.spec.collection)
    while time.perf_counter() - t0 < timeout_s:
        info = client.describe_index(store.spec.collection, "vector")
        if int(info.get("indexed_rows", 0)) >= n and int(info.get("pending_index_rows", 0)) == 0:
            break
        time.sleep(INDEX_POLL_S)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--partitions", type=int, default=30)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--ef", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--consistency", default="Strong", help="the collection's consistency level (Strong, Bounded)")
    ap.add_argument("--index-timeout", type=float, default=1800)
    ap.add_argument("--note", default="", help="how the machine was shared while measuring (recorded)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "milvus.json"))
    args = ap.parse_args()
    pool = make_pool(args.n, args.dim, args.partitions, args.queries)
    x, part, probs = l2_normalize(pool["vectors"]), pool["partition"], pool["probs"]
    q = l2_normalize(pool["queries"])
    categories = [f"cat{p}" for p in range(args.partitions)]
    routed = {m: routes(probs, n) for m, n in MODES.items()}
    truth = {m: [exact(x, part, qq, r) for qq, r in zip(q, routed[m], strict=True)] for m in MODES}
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        server = MilvusProcess(Path(tmp)).start()
        try:
            cfg = {"backend": "milvus", "uri": server.uri, "collection": "bench", "timeout_s": 60.0}
            cfg["consistency"] = args.consistency
            spec = IndexSpec.from_config(cfg)
            chunk = lambda: np.array_split(pool["vectors"], max(1, args.n // 50_000))  # noqa: E731
            t0 = time.perf_counter()
            store = spec.build(Items(chunk, part, pool["product"], categories, None, {}))
            upload_s = time.perf_counter() - t0
            index_s = wait_indexed(store, args.n, args.index_timeout)
            load = {"n": args.n, "upload_s": upload_s, "points_per_s": args.n / upload_s, "index_wait_s": index_s}
            print(f"load: {args.n} points in {upload_s:.1f} s ({load['points_per_s']:.0f}/s), index +{index_s:.1f} s")
            for ef in args.ef:
                store.spec = store.db.spec = replace(spec.options, search_params={"ef": ef})
                for mode in MODES:
                    hits, lat = timed(store, q, routed[mode])
                    row = {"store": "milvus-hnsw", "ef": ef, "mode": mode, "recall@10": recall(hits, truth[mode])}
                    row["consistency"] = args.consistency
                    rows.append(row | lat)
                    print(row | lat, flush=True)
        finally:
            server.stop()
    payload = {"n": args.n, "dim": args.dim, "partitions": args.partitions, "queries": args.queries, "k": K}
    payload |= {"consistency": args.consistency, "load": load, "load_avg_after_milvus": os.getloadavg()}
    # written now too: a run stopped during the FAISS part below keeps the Milvus rows
    save_results(args.out, payload | {"results": rows, "faiss": "not run yet"}, note=args.note)
    t0 = time.perf_counter()
    ivf = PartitionedIndex.build(pool["vectors"], part, pool["product"], args.partitions, factory="IVF{nlist},Flat")
    ivf_build = time.perf_counter() - t0
    target = {m: max(r["recall@10"] for r in rows if r["mode"] == m) for m in MODES}
    for mode in MODES:
        for nprobe in NPROBES:
            for sub in [ivf._global, *ivf._partitions.values()]:
                apply_search_params(sub, nprobe, None)
            hits, lat = timed(ivf, q, routed[mode])
            r = recall(hits, truth[mode])
            if r >= target[mode] or nprobe == NPROBES[-1]:
                row = {"store": "faiss-ivf", "nprobe": nprobe, "mode": mode, "recall@10": r, "build_s": ivf_build}
                rows.append(row | lat)
                print(row | lat, flush=True)
                break
    save_results(args.out, payload | {"results": rows, "load_avg_end": os.getloadavg()}, note=args.note)


if __name__ == "__main__":
    main()
