"""Catalog embedding on Lightning's predict loop: any accelerator and strategy (CPU, one GPU, DDP), with a
prediction writer that turns batches into shards on disk as soon as a shard is complete."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter
from torch import nn
from torch.utils.data import DataLoader, Dataset, default_collate

from snapsearch.data.dataset import ManifestDataset
from snapsearch.retrieval.shards import ShardPlan, write_shard


class PositionedImages(Dataset):
    """Pool images at the given positions; each sample keeps its position even when it is unreadable, so
    the writer knows when a shard has been seen in full."""

    def __init__(self, images: ManifestDataset, positions: np.ndarray) -> None:
        self.images = images
        self.positions = positions

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> tuple[int, dict[str, Any] | None]:
        position = int(self.positions[i])
        return position, self.images[position]


def collate_positioned(batch: list[tuple[int, dict[str, Any] | None]]) -> dict[str, torch.Tensor]:
    good = [sample["image"] for _, sample in batch if sample is not None]
    return {
        "position": torch.tensor([p for p, _ in batch], dtype=torch.int64),
        "readable": torch.tensor([s is not None for _, s in batch], dtype=torch.bool),
        "image": default_collate(good) if good else torch.empty(0),
    }


class PendingShards(pl.LightningDataModule):
    """This rank's unfinished shards. Shard s belongs to rank ``s % world_size``: a static deal, so ranks
    that start at different moments never disagree on who does what."""

    def __init__(
        self, images: ManifestDataset, plan: ShardPlan, pending: Sequence[int], batch_size: int, num_workers: int
    ) -> None:
        super().__init__()
        self.images = images
        self.plan = plan
        self.pending = list(pending)
        self.batch_size = batch_size
        self.num_workers = num_workers

    def mine(self, rank: int, world_size: int) -> list[int]:
        return [s for s in self.pending if s % world_size == rank]

    def predict_dataloader(self) -> DataLoader:
        shards = self.mine(self.trainer.global_rank, self.trainer.world_size)
        positions = [np.arange(*self.plan.bounds(s)) for s in shards]
        dataset = PositionedImages(self.images, np.concatenate(positions) if positions else np.zeros(0, np.int64))
        return DataLoader(
            dataset, batch_size=self.batch_size, num_workers=self.num_workers, collate_fn=collate_positioned
        )


class EmbedPredictor(pl.LightningModule):
    """Any embedder ``nn.Module`` (images -> L2-normalised embeddings) as a predict-only LightningModule."""

    def __init__(self, embedder: nn.Module) -> None:
        super().__init__()
        self.embedder = embedder.eval()

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, np.ndarray]:
        images = batch["image"]
        if images.shape[0]:
            embeddings = self.embedder(images).float().cpu().numpy()
        else:  # every image of the batch was unreadable
            embeddings = np.zeros((0, int(self.embedder.embedding_dim)), np.float32)
        return {
            "embedding": embeddings,
            "position": batch["position"].cpu().numpy(),
            "readable": batch["readable"].cpu().numpy(),
        }


@dataclass
class _Buffer:
    embeddings: list[np.ndarray] = field(default_factory=list)
    positions: list[np.ndarray] = field(default_factory=list)
    seen: int = 0
    skipped: int = 0


class ShardWriter(BasePredictionWriter):
    """Collects a shard's embeddings batch by batch and writes the shard (atomically) the moment its last
    image has been seen; memory holds at most the shards in flight, never the pool."""

    def __init__(self, folder: Path, plan: ShardPlan) -> None:
        super().__init__(write_interval="batch")
        self.folder = folder
        self.plan = plan
        self.buffers: dict[int, _Buffer] = {}
        self.written: list[int] = []

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: dict[str, np.ndarray],
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        positions, readable = prediction["position"], prediction["readable"]
        shard_of = positions // self.plan.shard_size
        good_shard = shard_of[readable]
        for shard in np.unique(shard_of):
            buf = self.buffers.setdefault(int(shard), _Buffer())
            here = shard_of == shard
            buf.embeddings.append(prediction["embedding"][good_shard == shard])
            buf.positions.append(positions[here & readable])
            buf.seen += int(here.sum())
            buf.skipped += int((here & ~readable).sum())
            start, end = self.plan.bounds(int(shard))
            if buf.seen == end - start:
                self._flush(int(shard))

    def _flush(self, shard: int) -> None:
        buf = self.buffers.pop(shard)
        dim = self.plan.embedding_dim
        embeddings = np.concatenate(buf.embeddings) if buf.embeddings else np.zeros((0, dim), np.float32)
        write_shard(self.folder, shard, embeddings, np.concatenate(buf.positions), buf.skipped)
        self.written.append(shard)
