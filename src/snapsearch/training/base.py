"""What every training system shares: memory format, and counting the images the loader had to skip."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch


class SnapSystem(pl.LightningModule):
    """Base LightningModule. ``channels_last`` speeds convolutions up on CPUs and tensor cores alike."""

    channels_last: bool = False

    def setup(self, stage: str) -> None:
        if self.channels_last:
            self.to(memory_format=torch.channels_last)

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        if self.channels_last and batch["image"].ndim == 4:
            batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
        return batch

    def log_skipped(self, batch: dict[str, Any]) -> None:
        """Unreadable images were dropped by the collate; their count reaches the run summary."""
        self.log(
            "data/skipped_images",
            float(batch["n_skipped"]),
            reduce_fx="sum",
            on_step=False,
            on_epoch=True,
            batch_size=1,
        )
