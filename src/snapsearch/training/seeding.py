"""Model-side randomness (dropout, stochastic depth) as a pure function of (seed, step, rank)."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from snapsearch.data.draws import derive_seed


class StepSeeding(Callback):
    """Re-seed torch (CPU and every GPU) before each training step from ``(seed, global_step, rank)``.

    Together with :class:`~snapsearch.data.draws.SeededDraws` (data order and augmentations), this makes
    a run that resumes from a checkpoint draw exactly the random numbers the uninterrupted run drew, with
    no RNG state to save: ``global_step`` is restored from the checkpoint. Ranks get distinct streams so
    DDP replicas do not share dropout masks.
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        torch.manual_seed(derive_seed(self.seed, trainer.global_step, trainer.global_rank))
