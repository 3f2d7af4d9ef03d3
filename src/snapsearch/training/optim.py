"""Optimiser and per-step learning-rate schedule shared by every training system."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate


def warmup_cosine(total_steps: int, warmup_steps: int, min_ratio: float) -> Callable[[int], float]:
    """Linear warm-up to the base rate, then cosine decay to ``min_ratio`` of it (per optimiser step)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def configure_optimization(
    trainer: pl.Trainer, optimizer_cfg: dict[str, Any], scheduler_cfg: dict[str, Any], groups: list[dict[str, Any]]
) -> dict[str, Any]:
    """The configured optimiser (a ``_partial_`` Hydra target) over ``groups`` with warm-up + cosine."""
    optimizer = instantiate(optimizer_cfg)(groups)
    total = int(trainer.estimated_stepping_batches)
    per_epoch = max(1, total // max(1, trainer.max_epochs or 1))
    schedule = warmup_cosine(total, scheduler_cfg["warmup_epochs"] * per_epoch, scheduler_cfg["min_lr_ratio"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
