"""The category classifier's training system: loss, optimiser, schedule, metrics, freezing."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassCalibrationError,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)

from snapsearch.models.backbone import create_backbone
from snapsearch.models.classifier import CategoryClassifier
from snapsearch.models.classifier_metrics import ECE_BINS, TOP_K
from snapsearch.training.base import SnapSystem
from snapsearch.training.optim import START_EPOCH, configure_optimization


def _stage_metrics(num_classes: int, prefix: str) -> MetricCollection:
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, top_k=1, average="micro"),
            "acc_top5": MulticlassAccuracy(num_classes, top_k=min(TOP_K, num_classes), average="micro"),
            "f1_macro": MulticlassF1Score(num_classes, average="macro"),
            "ece": MulticlassCalibrationError(num_classes, n_bins=ECE_BINS, norm="l1"),
        },
        prefix=prefix,
        # Compute groups would merge metrics whose states happen to match on the first batch (top-1 F1
        # and top-5 accuracy do), silently reporting one for the other.
        compute_groups=False,
    )


class ClassifierSystem(SnapSystem):
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
        self.val_metrics = _stage_metrics(n, "val/")
        self.test_metrics = _stage_metrics(n, "test/")
        self.test_ece_uncalibrated = MulticlassCalibrationError(n, n_bins=ECE_BINS, norm="l1")
        self.test_confusion = MulticlassConfusionMatrix(n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    # --- training -------------------------------------------------------------------------------
    def _head_params(self) -> set[int]:
        return {id(p) for p in self.model.net.get_classifier().parameters()}

    def on_train_epoch_start(self) -> None:
        """Frozen trunk for the first epochs: the new head learns before it can damage pretrained features."""
        frozen = self.current_epoch < self.hparams.classifier["freeze_backbone_epochs"]
        head = self._head_params()
        for p in self.model.net.parameters():
            if id(p) not in head:
                p.requires_grad_(not frozen)
        if frozen:  # keep BatchNorm statistics of the trunk as pretrained while it is frozen
            for m in self.model.net.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()

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
        self.val_metrics.update(torch.softmax(logits / self.model.temperature, -1), batch["label"])
        self.log_dict(self.val_metrics, prog_bar=False, batch_size=len(logits))

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.log_skipped(batch)
        if batch["image"].shape[0] == 0:
            return
        logits = self(batch["image"])
        self.test_metrics.update(torch.softmax(logits / self.model.temperature, -1), batch["label"])
        self.test_ece_uncalibrated.update(torch.softmax(logits, -1), batch["label"])
        self.test_confusion.update(logits, batch["label"])
        self.log_dict(self.test_metrics, batch_size=len(logits))
        self.log("test/ece_uncalibrated", self.test_ece_uncalibrated, batch_size=len(logits))

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        """Raw logits, labels and manifest rows: what temperature fitting and evaluation need."""
        if batch["image"].shape[0] == 0:
            empty = torch.empty(0, dtype=torch.long)
            return {"logits": torch.empty(0, len(self.model.categories)), "label": empty, "row": empty}
        return {"logits": self(batch["image"]), "label": batch["label"], "row": batch["row"]}

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
