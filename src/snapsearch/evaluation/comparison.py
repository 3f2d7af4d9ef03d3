"""Other cascades beside this one in one report: earlier evaluations of the same queries (another run, its
shared trunk, a multi-task network), read from their report.json and refused when they scored other queries."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

# What must agree for two reports to sit in one table: the same protocol over the same queries and pool.
SAME = ("protocol", "n_queries", "n_products", "n_partitions", "baseline")
STRATEGIES = ("global", "top1", "fusion")


def _row(report: dict[str, Any]) -> dict[str, Any]:
    return {
        "source": report["source"],
        "embedder": report["embedder"],
        "runtime": report["runtime"],
        "gate_top1": report["classifier"]["top1"],
        "gate_ece": report["classifier"]["ece"],
        "overhead_pct": report["latency"]["overhead_pct"],
        "bootstrap_unit": report.get("bootstrap", {}).get("unit", "photo"),  # earlier reports: photos
        "strategies": {
            s: {
                k: report["strategies"][s][k]
                for k in ("metrics", "average_improvement", "intervals")
                if k in report["strategies"][s]
            }
            for s in STRATEGIES
            if s in report["strategies"]
        },
    }


def compare(results: dict[str, Any], others: Sequence[str | Path]) -> list[dict[str, Any]]:
    """This evaluation's row, then one per earlier report.json, in the order given."""
    rows = [_row(results)]
    for path in others:
        path = Path(path)
        if path.is_dir():
            path = path / "report.json"
        if not path.is_file():
            raise FileNotFoundError(f"compare_with: {path} is not an evaluation report (report.json)")
        other = json.loads(path.read_text())
        differ = [k for k in SAME if other.get(k) != results.get(k)]
        if differ:
            raise ValueError(
                f"compare_with: {path} scored other queries ({', '.join(f'{k}={other.get(k)!r}' for k in differ)} "
                f"vs {', '.join(f'{k}={results.get(k)!r}' for k in differ)}); compare evaluations of one protocol"
            )
        rows.append(_row(other))
    return rows


def selection_rules(train_cfg: DictConfig, stages: Sequence[str]) -> dict[str, str]:
    """How each trained model (``stages``) of the evaluated source was chosen, from its training config:
    all on validation photos (the test photos only ever score)."""
    rules = {
        stage: f"the epoch with the best {train_cfg.monitor[stage].metric} ({train_cfg.monitor[stage].mode}) "
        "on the validation photos"
        for stage in stages
    }
    if train_cfg.get("calibrate"):
        rules["temperature"] = "fitted on the validation photos (NLL)"
    rules["rejection, conformal"] = "thresholds calibrated on the validation photos of seen products"
    return rules
