"""Fault injection for the reliability tests: a training process that really dies at a chosen step."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback


class SignalAtStep(Callback):
    """Send ``signal`` (a name: SIGKILL, SIGTERM) to this very process when training reaches ``step``."""

    def __init__(self, step: int, signal: str) -> None:
        self.step = step
        self.signal = signal

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), getattr(signal, self.signal))
