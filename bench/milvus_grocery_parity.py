"""Grocery parity: every strategy's metrics with ``index=milvus`` (an exact FLAT index on a real local server)
against ``index=flat`` (FAISS in-process), on the same source, through ``evaluate.py``.

    python bench/milvus_grocery_parity.py --source bundle=/work/bundles/photos_composite [--runtime onnx]
                                          [--extra rejection.enabled=false ...] [--tol 1e-9]

Starts one Milvus standalone server (tests/milvus_server.py: 127.0.0.1, a free port, data in a temporary
folder), runs ``evaluate.py`` once per store into its own folder, then compares every strategy's metrics
(absolute difference <= ``--tol``) and every query's ranked product ids (rankings.json). Studies that do not
bear on the index are off by default (``--extra`` adds overrides to both runs). Writes JSON; exits non-zero
when a metric differs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from record import save_results

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.milvus_server import MilvusProcess  # noqa: E402

# Off in both runs to save CPU: the rejection study (its held-out-products index is not compared), bootstrap
# intervals (they resample the same per-query results), and all but 5 latency queries.
LEAN = ["logger=none", "rejection.enabled=false", "bootstrap.resamples=0", "latency.n_queries=5", "latency.warmup=1"]


def evaluate(source: str, runtime: str, index: list[str], extra: list[str], out: Path) -> tuple[dict, float]:
    """One evaluate.py run into ``out``: (report.json, wall seconds)."""
    cmd = [sys.executable, "evaluate.py", source, f"runtime={runtime}", "save_index=false", *LEAN, *index, *extra]
    cmd.append(f"hydra.run.dir={out}")
    print(" ".join(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True)
    return json.loads((out / "report.json").read_text()), time.perf_counter() - t0


def diff_metrics(a: dict[str, Any], b: dict[str, Any], tol: float) -> dict[str, Any]:
    """Per strategy: the largest absolute metric difference and the metrics beyond ``tol``."""
    if set(a) != set(b):
        raise SystemExit(f"the two runs scored different strategies: {sorted(a)} vs {sorted(b)}")
    out = {}
    for name in a:
        ma, mb = a[name]["metrics"], b[name]["metrics"]
        diffs = {m: abs(float(ma[m]) - float(mb[m])) for m in ma if isinstance(ma[m], int | float)}
        out[name] = {
            "metrics_flat": ma,
            "max_abs_diff": max(diffs.values(), default=0.0),
            "beyond_tol": {m: [ma[m], mb[m]] for m, d in diffs.items() if d > tol},
        }
    return out


def diff_rankings(a: dict[str, dict[str, list[str]]], b: dict[str, dict[str, list[str]]]) -> dict[str, int]:
    """Per strategy: how many queries got a different ranked product list."""
    return {name: sum(a[name][q] != b[name].get(q) for q in a[name]) for name in a}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", required=True, help="bundle=DIR or run_dir=DIR")
    ap.add_argument("--runtime", default="onnx", help="evaluate.py runtime= (a bundle: onnx, onnx_int8, ...)")
    ap.add_argument("--consistency", default="Strong", help="the Milvus collection's consistency level")
    ap.add_argument("--extra", nargs="*", default=[], help="more evaluate.py overrides, for both runs")
    ap.add_argument("--tol", type=float, default=1e-9, help="largest metric difference accepted as equal")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "milvus_grocery_parity.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        flat, flat_s = evaluate(args.source, args.runtime, ["index=flat"], args.extra, work / "flat")
        server = MilvusProcess(work / "milvus").start()
        try:
            milvus_index = [
                "index=milvus",
                f"index.uri={server.uri}",
                "index.collection=grocery_parity",
                "index.index_type=FLAT",
                "index.index_params={}",
                "index.search_params={}",
                f"index.consistency={args.consistency}",
                "index.shared_catalog=false",
            ]
            milvus, milvus_s = evaluate(args.source, args.runtime, milvus_index, args.extra, work / "milvus")
        finally:
            server.stop()
        rankings = [json.loads((work / run / "rankings.json").read_text()) for run in ("flat", "milvus")]
    strategies = diff_metrics(flat["strategies"], milvus["strategies"], args.tol)
    differing = diff_rankings(*rankings)
    equal = not any(s["beyond_tol"] for s in strategies.values())
    for name, s in strategies.items():
        print(f"{name:>24}: max |diff| {s['max_abs_diff']:.2e}, rankings differing {differing[name]}")
    payload = {
        "source": args.source,
        "runtime": args.runtime,
        "consistency": args.consistency,
        "overrides": LEAN + args.extra,
        "tol": args.tol,
        "n_queries": [flat["n_queries"], milvus["n_queries"]],
        "n_pool": [flat["n_pool"], milvus["n_pool"]],
        "wall_s": {"flat": flat_s, "milvus": milvus_s},
        "metrics_equal": equal,
        "queries_ranked_differently": differing,
        "strategies": strategies,
        "load_after": os.getloadavg(),
    }
    save_results(args.out, payload)
    if not equal:
        raise SystemExit("metrics differ between index=flat and index=milvus: a bug")


if __name__ == "__main__":
    main()
