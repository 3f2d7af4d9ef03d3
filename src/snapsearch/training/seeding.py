"""Model-side randomness (dropout, stochastic depth) as a pure function of (seed, epoch, batch, rank)."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from snapsearch.data.draws import derive_seed


class StepSeeding(Callback):
    """Re-seed torch (CPU and every GPU) before each training batch from ``(seed, epoch, batch, rank)``.

    Together with :class:`~snapsearch.data.draws.SeededDraws` (data order and augmentations), this makes
    a run that resumes from a checkpoint draw exactly the random numbers the uninterrupted run drew, with
    no RNG state to save: the epoch is restored from the checkpoint. The batch index, not the optimiser
    step, so micro-batches of an accumulated step get their own masks; ranks get distinct streams so DDP
    replicas do not share them either.
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        torch.manual_seed(derive_seed(self.seed, trainer.current_epoch, batch_idx, trainer.global_rank))
