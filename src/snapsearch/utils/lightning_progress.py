"""Lightning's progress where a person or a log can read it: Rich's bar on a terminal, a log line every few
percent of an epoch (or of a predict loop) in a file or batch job, where the bar prints nothing."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ProgressBar, RichProgressBar

log = logging.getLogger("snapsearch.progress")


class LogProgressBar(ProgressBar):
    """Lightning progress as log lines (a batch job's log, a redirected terminal): every ``every_pct`` of an
    epoch's training batches, or of a predict loop's batches, the count, the rate and the time left."""

    def __init__(self, every_pct: float = 5.0) -> None:
        super().__init__()
        self.every_pct = every_pct
        self._enabled = True
        self._start = 0.0
        self._next = 0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _begin(self) -> None:
        self._start, self._next = time.perf_counter(), 0

    def _report(self, what: str, done: int, total: float) -> None:
        if not self._enabled or not total or total == float("inf") or done < self._next:
            return
        elapsed = time.perf_counter() - self._start
        rate = done / elapsed if elapsed > 0 else float("inf")
        left = (total - done) / rate if rate > 0 else float("inf")
        log.info(
            "%s: batch %d/%d (%.0f%%), %.2f batches/s, %.0f s left", what, done, total, 100 * done / total, rate, left
        )
        self._next = done + max(1, int(total * self.every_pct / 100))

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._begin()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        done = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        self._report(f"epoch {trainer.current_epoch}", done, self.total_train_batches)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = {k: f"{float(v):.4f}" for k, v in self.get_metrics(trainer, pl_module).items() if k != "v_num"}
        log.info("epoch %d done: %s", trainer.current_epoch, metrics)

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._begin()

    def on_predict_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        done = trainer.predict_loop.batch_progress.current.completed
        self._report("predict", done, sum(trainer.num_predict_batches))


def lightning_progress_bar(every_pct: float = 5.0, tty: bool | None = None) -> ProgressBar:
    """Rich's bar on a terminal; log lines (:class:`LogProgressBar`) where a bar would print nothing."""
    if tty is None:
        tty = sys.stderr.isatty()
    return RichProgressBar() if tty else LogProgressBar(every_pct)
