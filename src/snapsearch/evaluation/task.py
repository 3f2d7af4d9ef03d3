"""The evaluate task: run the evaluation, then log its tables and figures to the configured loggers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from snapsearch.evaluation.pipeline import evaluate
from snapsearch.evaluation.report import STRATEGY_COLUMNS
from snapsearch.evaluation.uncertainty import check_unit
from snapsearch.utils.atomic import ensure_writable_dir


def _log_wandb(cfg: DictConfig, results: dict[str, Any], out_dir: Path) -> None:
    """Metrics, the strategy table and the figures to a wandb run (offline unless WANDB_MODE says otherwise)."""
    if not cfg.get("logger") or "wandb" not in cfg.logger:
        return
    import wandb

    w = cfg.logger.wandb
    run = wandb.init(
        project=w.project,
        dir=str(out_dir),
        mode=w.mode,
        job_type="evaluate",
        tags=list(cfg.tags),
        config=OmegaConf.to_container(cfg, resolve=True),
    )
    columns = ["strategy", *STRATEGY_COLUMNS, "average_improvement", "routed_right", "found_within"]
    table = wandb.Table(columns=columns)
    for name, s in results["strategies"].items():
        table.add_data(
            name,
            *(s["metrics"][c] for c in STRATEGY_COLUMNS),
            s["average_improvement"],
            s["routed_right"],
            s["found_within"],
        )
        run.summary.update({f"{name}/{k}": v for k, v in s["metrics"].items()})
    run.log(
        {
            "strategies": table,
            "classifier": results["classifier"],
            "latency_overhead_pct": results["latency"]["overhead_pct"],
            "confusion_matrix": wandb.Image(str(out_dir / "confusion_matrix.png")),
            "examples": wandb.Image(str(out_dir / "examples.png")),
        }
    )
    run.finish()


def run_evaluation(cfg: DictConfig) -> dict[str, Any]:
    ensure_writable_dir(Path(cfg.paths.output_dir), "evaluation output folder")
    check_unit(cfg.bootstrap.unit)  # refused before anything is embedded
    results = evaluate(cfg)
    _log_wandb(cfg, results, Path(cfg.paths.output_dir))
    return results
