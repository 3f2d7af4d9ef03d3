"""The category classifier's training system: loss, optimiser, schedule, metrics, freezing."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from snapsearch.models.backbone import create_backbone
from snapsearch.models.classifier import CategoryClassifier
from snapsearch.training.category_eval import CategoryEvaluation, set_trunk_frozen
from snapsearch.training.optim import START_EPOCH, configure_optimization


class ClassifierSystem(CategoryEvaluation):
    """Trains a :class:`CategoryClassifier`. Hyper-parameters are plain config (no pickled objects)."""

    def __init__(
        self,
        backbone: dict[str, Any],
        categories: list[str],
        classifier: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any],
        channels_last: bool,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.channels_last = channels_last
        net, self.preprocess = create_backbone(**backbone, num_classes=len(categories))
        self.model = CategoryClassifier(net, categories)
        n = len(categories)
        self.train_acc = MulticlassAccuracy(n, average="micro")
        self.init_category_metrics(n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    # --- training -------------------------------------------------------------------------------
    def _head_params(self) -> set[int]:
        return {id(p) for p in self.model.net.get_classifier().parameters()}

    def on_train_epoch_start(self) -> None:
        """Frozen trunk for the first epochs: the new head learns before it can damage pretrained features."""
        frozen = self.current_epoch < self.hparams.classifier["freeze_backbone_epochs"]
        head = self._head_params()
        trunk = [p for p in self.model.net.parameters() if id(p) not in head]
        set_trunk_frozen(trunk, self.model.net.modules(), frozen)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        self.log_skipped(batch)
        if batch["image"].shape[0] == 0:
            return None
        logits = self(batch["image"])
        loss = F.cross_entropy(logits, batch["label"], label_smoothing=self.hparams.classifier["label_smoothing"])
        self.train_acc(logits, batch["label"])
        n = len(logits)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=n)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, batch_size=n)
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.log_skipped(batch)
        if batch["image"].shape[0] == 0:
            return
        logits = self(batch["image"])
        loss = F.cross_entropy(logits, batch["label"])
        self.log("val/loss", loss, prog_bar=True, batch_size=len(logits), sync_dist=True)
        self.val_metrics.update(self.calibrated(logits), batch["label"])
        self.log_dict(self.val_metrics, prog_bar=False, batch_size=len(logits))

    def configure_optimizers(self) -> dict[str, Any]:
        head = self._head_params()
        base_lr = self.hparams.optimizer["lr"]
        groups = [
            {"params": [p for p in self.model.net.parameters() if id(p) in head], "lr": base_lr},
            {
                "params": [p for p in self.model.net.parameters() if id(p) not in head],
                "lr": base_lr * self.hparams.classifier["backbone_lr_scale"],
                START_EPOCH: self.hparams.classifier["freeze_backbone_epochs"],
            },
        ]
        return configure_optimization(self.trainer, self.hparams.optimizer, self.hparams.scheduler, groups)
