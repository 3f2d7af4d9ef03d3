"""What the novelty bonus's ramp costs per query, by the size of its reference (the training photos).

    python bench/novelty_cost.py [--photos 1697 50000 500000] [--dim 256] [--k 5] [--queries 200]

The ramp is the mean cosine of a query to its ``k`` nearest reference photos (``NoveltyReference.ramp``,
exact, numpy). Grocery's reference holds 1,697 photos (50 per trained product at most); a shop that trained
on 10,000 products holds 500,000. Per size: the reference's memory (float32 in RAM, float16 in the bundle),
the time per query at batch 1 (p50/p95 over ``--queries`` queries) and per query in batches of 256.
Synthetic unit vectors (the cost does not depend on the values). Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from record import save_results

from snapsearch.retrieval.novelty import NoveltyReference

ROOT = Path(__file__).resolve().parents[1]
BATCH = 256


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, nargs="+", default=[1697, 50_000, 500_000])
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "novelty_cost.json")
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    queries = unit(rng, max(args.queries, BATCH), args.dim)
    rows = []
    for n in args.photos:
        photos = unit(rng, n, args.dim)
        ref = NoveltyReference.calibrate(photos, ["p"] * n, queries[:64], args.k, (0.1, 0.5))
        ref.ramp(queries[:1])  # warm-up
        single = []
        for q in queries[: args.queries]:
            t0 = time.perf_counter()
            ref.ramp(q[None])
            single.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ref.ramp(queries[:BATCH])
        batched = (time.perf_counter() - t0) / BATCH
        row = {
            "photos": n,
            "ram_mb": photos.nbytes / 2**20,
            "bundle_mb": photos.nbytes / 2 / 2**20,
            "batch1_p50_ms": 1e3 * float(np.percentile(single, 50)),
            "batch1_p95_ms": 1e3 * float(np.percentile(single, 95)),
            f"batch{BATCH}_ms_per_query": 1e3 * batched,
        }
        rows.append(row)
        print(
            f"{n:>9,} photos  {row['ram_mb']:8.1f} MB  batch 1: p50 {row['batch1_p50_ms']:7.2f} ms  "
            f"p95 {row['batch1_p95_ms']:7.2f} ms  batch {BATCH}: {row[f'batch{BATCH}_ms_per_query']:6.2f} ms/query"
        )
    save_results(args.out, {"dim": args.dim, "k": args.k, "rows": rows})


if __name__ == "__main__":
    main()
