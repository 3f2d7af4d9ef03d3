"""Optimiser and per-step learning-rate schedule shared by every training system."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

# Key of an optimiser group's first training epoch (a trunk frozen before it); read and removed here.
START_EPOCH = "start_epoch"


def warmup_cosine(total_steps: int, warmup_steps: int, min_ratio: float, start_step: int = 0) -> Callable[[int], float]:
    """Zero before ``start_step``, then a linear warm-up to the base rate over ``warmup_steps``, then cosine
    decay to ``min_ratio`` of it at ``total_steps`` (per optimiser step).

    A group that starts late (a trunk unfrozen after the head has learnt) gets its own warm-up: Adam's
    first updates are about ``lr`` in size for every weight whatever its gradient, so unfreezing a
    pretrained trunk straight at the peak rate knocks its features about.
    """

    def factor(step: int) -> float:
        if step < start_step:
            return 0.0
        local = step - start_step
        if local < warmup_steps:
            return (local + 1) / warmup_steps
        progress = min(1.0, (local - warmup_steps) / max(1, total_steps - start_step - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def configure_optimization(
    trainer: pl.Trainer, optimizer_cfg: dict[str, Any], scheduler_cfg: dict[str, Any], groups: list[dict[str, Any]]
) -> dict[str, Any]:
    """The configured optimiser (a ``_partial_`` Hydra target) over ``groups`` with warm-up + cosine.

    A group may name its first training epoch under ``START_EPOCH``; its schedule starts there.
    """
    total = int(trainer.estimated_stepping_batches)
    per_epoch = max(1, total // max(1, trainer.max_epochs or 1))
    warmup = scheduler_cfg["warmup_epochs"] * per_epoch
    schedules = [
        warmup_cosine(total, warmup, scheduler_cfg["min_lr_ratio"], start_step=g.get(START_EPOCH, 0) * per_epoch)
        for g in groups
    ]
    optimizer = instantiate(optimizer_cfg)([{k: v for k, v in g.items() if k != START_EPOCH} for g in groups])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedules)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
