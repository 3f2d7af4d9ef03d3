"""The training loader's position inside an epoch, saved in every checkpoint and restored on resume."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

from snapsearch.data.draws import ResumableLoader


class LoaderPosition(Callback):
    """Records ``(epoch, batches the training loop finished)`` after each batch; a checkpoint carries it (the
    callback's state) and a resumed fit starts its :class:`ResumableLoader` there.

    What the loader has produced is no measure of progress: workers and Lightning prefetch batches that were
    never trained on. Lightning runs checkpoint callbacks after every other callback, so a mid-epoch
    checkpoint of a batch (``every_n_train_steps``) already holds that batch's position.
    """

    def __init__(self) -> None:
        self.epoch, self.batches_done = 0, 0
        self._restored: tuple[int, int] | None = None

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.epoch, self.batches_done = trainer.current_epoch, batch_idx + 1
        if self.batches_done >= trainer.num_training_batches:  # a finished epoch is the next one's start
            self.epoch, self.batches_done = self.epoch + 1, 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batches_done": self.batches_done}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._restored = (int(state_dict["epoch"]), int(state_dict["batches_done"]))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Before the first batch is drawn (and after Lightning restored this callback's state)."""
        loader = trainer.train_dataloader
        if self._restored is not None and isinstance(loader, ResumableLoader):
            loader.resume(*self._restored)
        self._restored = None
