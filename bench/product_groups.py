"""Seen, photo-less and fully unseen products side by side: one table from several evaluations.

    python bench/product_groups.py photos=RUN_A/evaluations/X all=RUN_B/evaluations/Y [ablation=...] \
        [--out bench/results/product_groups.json]

Each argument is ``label=evaluation folder`` (or its report.json) of a run trained with
``data.unseen_products`` (any mode). Per run and product group: queries, products, the gate's top-1 on the
group's photos, and every strategy's R@1 with its 95% interval (the report's bootstrap unit: products by
default) and its average gain against global search with its interval; then the camera-faults retention when
the evaluation ran that study. Writes the same as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from snapsearch.utils.atomic import atomic_write_text

GROUP_NAMES = {("seen", "photos"): "seen", ("unseen", "photos"): "photo-less", ("unseen", "all"): "fully unseen"}


def _report(path: Path) -> dict[str, Any]:
    return json.loads((path / "report.json" if path.is_dir() else path).read_text())


def groups(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per product group: n, the gate's top-1, and each strategy's R@1 / avg. gain with intervals."""
    mode = report.get("unseen_mode", "all")
    out: dict[str, dict[str, Any]] = {}
    for name, g in (report.get("by_novelty") or {}).items():
        label = GROUP_NAMES.get((name, mode), name)
        strategies = {}
        for s, entry in g["strategies"].items():
            if "+" in s:  # prior-corrected variants: not part of this table
                continue
            ci = entry.get("intervals", {})
            strategies[s] = {
                "R@1": entry["metrics"]["R@1"],
                "R@1_ci": ci.get("metrics", {}).get("R@1"),
                "R@5": entry["metrics"]["R@5"],
                "avg_gain": entry["average_improvement"],
                "avg_gain_ci": ci.get("average_improvement"),
            }
        out[label] = {
            "n_queries": g["n_queries"],
            "n_products": g["n_products"],
            "gate_top1": g.get("gate", {}).get("top1"),
            "strategies": strategies,
        }
    return out


def faults(report: dict[str, Any]) -> dict[str, Any] | None:
    study = report.get("camera_faults")
    if not study:
        return None
    return {
        name: {"kept": c["R@1_kept"], "gate_top1": c["gate_top1"], "gate_ece": c["gate_ece"]}
        for name, c in study["corruptions"].items()
    }


def _fmt(value: float | None, ci: list[float] | None, pct: bool = False) -> str:
    if value is None:
        return "-"
    if pct:
        return f"{100 * value:+.1f}%" + (f" [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]" if ci else "")
    return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="label=evaluation folder")
    parser.add_argument("--out", type=Path, default=Path("bench/results/product_groups.json"))
    args = parser.parse_args()
    results: dict[str, Any] = {}
    for item in args.runs:
        label, _, path = item.partition("=")
        report = _report(Path(path))
        results[label] = {
            "report": path,
            "unseen_mode": report.get("unseen_mode"),
            "bootstrap": report.get("bootstrap"),
            "groups": groups(report),
            "camera_faults": faults(report),
        }
        for group, g in results[label]["groups"].items():
            head = f"{g['n_products']} products, {g['n_queries']} photos, gate top-1 {g['gate_top1']:.3f}"
            print(f"\n{label} / {group}: {head}")
            for s, e in g["strategies"].items():
                gain = _fmt(e["avg_gain"], e["avg_gain_ci"], pct=True)
                print(f"  {s:10s} R@1 {_fmt(e['R@1'], e['R@1_ci'])}  R@5 {e['R@5']:.3f}  gain {gain}")
        if results[label]["camera_faults"]:
            print(f"\n{label} / camera faults (R@1 kept; gate ECE):")
            for name, c in results[label]["camera_faults"].items():
                kept = "  ".join(f"{s} {100 * v:.0f}%" for s, v in c["kept"].items())
                print(f"  {name:14s} {kept}  ECE {c['gate_ece']:.3f}")
    atomic_write_text(args.out, json.dumps(results, indent=2))
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
