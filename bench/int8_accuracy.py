"""What int8 costs in accuracy: a bundle evaluated with its float and its int8 ONNX models on the same test
photos, every strategy's R@1 for all, seen and held-out products, and the int8 - float change with a paired
bootstrap interval over products (each resample draws products with all their photos, the same draw for
both runtimes).

    python bench/int8_accuracy.py --bundle B [--runtimes onnx onnx_int8] [--evals DIR_A DIR_B]
                                  [--resamples 1000] [--out bench/results/int8_accuracy.json]

Runs ``evaluate.py bundle=B runtime=R`` once per runtime (or reads the evaluation folders given with
``--evals``, in the order of ``--runtimes``) and compares their rankings.json query by query; the true
product of each query comes from the bundle's own data config. Writes JSON and prints a table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf
from record import save_results

from snapsearch.data.sources import load_manifest
from snapsearch.evaluation.uncertainty import paired_bootstrap
from snapsearch.utils.resolvers import register_resolvers

ROOT = Path(__file__).resolve().parents[1]
# rejection and its held-out index do not bear on the runtime; intervals are computed here
LEAN = ["logger=none", "rejection.enabled=false", "bootstrap.resamples=0"]


def evaluate(bundle: Path, runtime: str, out: Path) -> Path:
    cmd = [sys.executable, "evaluate.py", f"bundle={bundle}", f"runtime={runtime}", *LEAN, f"hydra.run.dir={out}"]
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)
    return out


def hits(rankings: dict[str, list[str]], truth: dict[str, str], ids: list[str]) -> np.ndarray:
    """1 where a query's first product is its own, in the order of ``ids``."""
    return np.array([float(bool(rankings[q]) and rankings[q][0] == truth[q]) for q in ids])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True, type=Path)
    ap.add_argument("--runtimes", nargs=2, default=["onnx", "onnx_int8"], help="float, then quantised")
    ap.add_argument("--evals", nargs=2, type=Path, default=None, help="existing evaluation folders instead")
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "int8_accuracy.json"))
    args = ap.parse_args()
    register_resolvers()
    folders = args.evals or [
        evaluate(args.bundle, rt, Path(f"{args.bundle}-evaluations") / f"int8_accuracy_{rt}") for rt in args.runtimes
    ]
    runs = [json.loads((f / "rankings.json").read_text()) for f in folders]
    manifest = load_manifest(OmegaConf.load(args.bundle / "source_config.yaml").data).set_index("image_id")
    unseen = set(json.loads((args.bundle / "labels.json").read_text()).get("unseen_products", []))
    ids = sorted(runs[0]["global"])
    if any(sorted(r["global"]) != ids for r in runs):
        raise SystemExit("the two evaluations ranked different queries: evaluate the same bundle and data")
    truth = manifest.loc[ids, "product_id"].to_dict()
    products = np.array([truth[q] for q in ids])
    groups = {"all": np.ones(len(ids), bool), "seen": ~np.isin(products, list(unseen))}
    if unseen:
        groups["held-out"] = np.isin(products, list(unseen))
    results: dict[str, Any] = {}
    for strategy in runs[0]:
        if strategy not in runs[1]:
            continue
        a, b = (hits(r[strategy], truth, ids) for r in runs)
        for group, mask in groups.items():
            per_query = {"float": {"R@1": a[mask]}, "change": {"R@1": b[mask] - a[mask]}}
            ci = paired_bootstrap(
                per_query,
                "float",
                ["R@1"],
                products=products[mask],
                unit="product",
                resamples=args.resamples,
                seed=args.seed,
            )
            row = {
                "n_queries": int(mask.sum()),
                "n_products": len(set(products[mask])),
                args.runtimes[0]: float(a[mask].mean()),
                args.runtimes[1]: float(b[mask].mean()),
                "change": float((b[mask] - a[mask]).mean()),
                "change_95ci": ci["change"]["metrics"]["R@1"],
                "queries_changed": int((a[mask] != b[mask]).sum()),
            }
            results[f"{strategy}/{group}"] = row
            print(
                f"{strategy:<10}{group:<9} n={row['n_queries']:>5}  {row[args.runtimes[0]]:.3f} -> "
                f"{row[args.runtimes[1]]:.3f}  change {row['change']:+.3f} "
                f"[{row['change_95ci'][0]:+.3f}, {row['change_95ci'][1]:+.3f}]  ({row['queries_changed']} changed)",
                flush=True,
            )
    save_results(
        args.out,
        {
            "bundle": str(args.bundle),
            "evaluations": [str(f) for f in folders],
            "runtimes": args.runtimes,
            "bootstrap": {"unit": "product", "resamples": args.resamples, "seed": args.seed},
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
