"""Mean and standard deviation over seeds: the same recipe trained with several ``seed=`` values, each
evaluated by ``evaluate.py``; one row per run and a mean +- std row, for the gate and each strategy.

    python bench/seed_summary.py --name multitask RUN_SEED42/evaluations/X RUN_SEED1/evaluations/Y ...

Each argument is an evaluation folder (or its report.json); the run's ``metrics.json`` (the gate's test
accuracy and calibration error) is read from the run directory that holds the evaluation.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from snapsearch.utils.atomic import atomic_write_text

STRATEGIES = ("global", "top1", "fusion", "oracle")
METRICS = ("R@1", "R@5", "mAP@10")


def _report(path: Path) -> tuple[Path, dict[str, Any]]:
    report = path / "report.json" if path.is_dir() else path
    return report, json.loads(report.read_text())


def _gate(report: dict[str, Any]) -> dict[str, float]:
    run = Path(report["source"])
    metrics = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").is_file() else {}
    acc = next((v for k, v in metrics.items() if k.endswith("/test/acc")), report["classifier"]["top1"])
    ece = next((v for k, v in metrics.items() if k.endswith("/test/ece")), report["classifier"]["ece"])
    return {"gate_top1": float(acc), "gate_ece": float(ece)}


def summarise(paths: list[Path]) -> dict[str, Any]:
    rows = []
    for path in paths:
        report_path, report = _report(path)
        row: dict[str, Any] = {"report": str(report_path), "seed": _seed(report)} | _gate(report)
        for s in STRATEGIES:
            if s in report["strategies"]:
                entry = report["strategies"][s]
                row |= {f"{s}/{m}": entry["metrics"][m] for m in METRICS}
                row[f"{s}/avg_gain"] = entry["average_improvement"]
        rows.append(row)
    keys = [k for k in rows[0] if k not in ("report", "seed") and all(k in r for r in rows)]
    values = {k: np.array([r[k] for r in rows], dtype=float) for k in keys}
    return {
        "runs": rows,
        "mean": {k: float(v.mean()) for k, v in values.items()},
        "std": {k: float(v.std(ddof=1)) if len(v) > 1 else 0.0 for k, v in values.items()},
    }


def _seed(report: dict[str, Any]) -> int | None:
    from omegaconf import OmegaConf

    source = Path(report["source"])  # a run directory (config.yaml) or a bundle (source_config.yaml)
    config = next((c for c in (source / "config.yaml", source / "source_config.yaml") if c.is_file()), None)
    return None if config is None else int(OmegaConf.load(config).seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("evaluations", nargs="+", type=Path)
    parser.add_argument("--name", required=True, help="the recipe's name in the results file")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "seeds.json")
    args = parser.parse_args()
    summary = summarise(args.evaluations)
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results[args.name] = summary
    atomic_write_text(args.out, json.dumps(results, indent=1))
    cols = ["gate_top1", "gate_ece", *(f"{s}/R@1" for s in STRATEGIES if f"{s}/R@1" in summary["mean"])]
    print(f"{args.name}: " + ", ".join(f"{c} {summary['mean'][c]:.3f} +- {summary['std'][c]:.3f}" for c in cols))


if __name__ == "__main__":
    main()
