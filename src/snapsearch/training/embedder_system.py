"""The embedder's training system: metric-learning loss (pytorch-metric-learning, chosen by config),
separate learning rates for trunk and head/loss, photo -> catalog retrieval metrics every epoch."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from hydra.utils import get_class, instantiate

from snapsearch.models.embedder import ProductEmbedder
from snapsearch.retrieval.metrics import DEFAULT_KS
from snapsearch.training.base import SnapSystem
from snapsearch.training.optim import configure_optimization
from snapsearch.training.retrieval_validation import RetrievalValidation


def build_loss(loss_cfg: dict[str, Any], num_classes: int, embedding_size: int) -> torch.nn.Module:
    """Instantiate any pytorch-metric-learning loss; classification-style losses (ArcFace, ProxyAnchor)
    get the number of products and the embedding size from the data and the model, never from the config."""
    params = inspect.signature(get_class(loss_cfg["_target_"]).__init__).parameters
    extra = {
        k: v
        for k, v in {"num_classes": num_classes, "embedding_size": embedding_size}.items()
        if k in params and k not in loss_cfg
    }
    return instantiate(loss_cfg, **extra)


class EmbedderSystem(SnapSystem):
    """Trains a :class:`ProductEmbedder` on cross-domain pairs (a product's photos and catalog images)."""

    def __init__(
        self,
        backbone: dict[str, Any],
        products: list[str],
        embedder: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any],
        channels_last: bool,
        retrieval_ks: tuple[int, ...] = DEFAULT_KS,
        selection_fold: tuple[int, ...] = (),
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.channels_last = channels_last
        self.model, self.preprocess = ProductEmbedder.build(backbone, embedder["embedding_dim"], embedder["gem_p"])
        self.loss = build_loss(embedder["loss"], len(products), self.model.embedding_dim)
        self.miner = instantiate(embedder["miner"]) if embedder.get("miner") else None
        self.retrieval = RetrievalValidation(self.model.embedding_dim, tuple(retrieval_ks), selection_fold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        self.log_skipped(batch)
        if batch["image"].shape[0] == 0:
            return None
        emb = self(batch["image"])
        labels = batch["product"]
        tuples = self.miner(emb, labels) if self.miner is not None else None
        loss = self.loss(emb, labels, tuples)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(emb))
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        if batch["image"].shape[0] == 0:
            return
        self.retrieval.add(dataloader_idx, self(batch["image"]), batch["product"], batch["row"])

    def on_validation_epoch_end(self) -> None:
        metrics = self.retrieval.compute()
        for name, value in (metrics or {}).items():  # identical on every rank: computed on the gathered sets
            self.log(f"val/{name}", value, prog_bar=name == "R@1", batch_size=1)

    def configure_optimizers(self) -> dict[str, Any]:
        base_lr = self.hparams.optimizer["lr"]
        trunk = list(self.model.trunk.parameters())
        head = [p for n, p in self.model.named_parameters() if not n.startswith("trunk.")]
        groups = [
            {"params": head, "lr": base_lr},
            {"params": trunk, "lr": base_lr * self.hparams.embedder["backbone_lr_scale"]},
        ]
        loss_params = [p for p in self.loss.parameters() if p.requires_grad]
        if loss_params:  # proxies / class weights learn fastest
            groups.append({"params": loss_params, "lr": base_lr * self.hparams.embedder["loss_lr_scale"]})
        return configure_optimization(self.trainer, self.hparams.optimizer, self.hparams.scheduler, groups)
