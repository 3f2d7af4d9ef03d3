"""What every system with a category head shares: its torchmetrics, the calibrated test pass, the raw-logit
predict pass that temperature fitting reads, and freezing the trunk while a new head learns."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassCalibrationError,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)

from snapsearch.models.classifier_metrics import ECE_BINS, TOP_K
from snapsearch.training.base import SnapSystem


def category_metrics(num_classes: int, prefix: str) -> MetricCollection:
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


def set_trunk_frozen(trunk_params: Iterable[nn.Parameter], trunk_modules: Iterable[nn.Module], frozen: bool) -> None:
    """Freeze (or release) a pretrained trunk; while frozen its BatchNorm statistics stay as pretrained."""
    for p in trunk_params:
        p.requires_grad_(not frozen)
    if frozen:
        for m in trunk_modules:
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


class CategoryEvaluation(SnapSystem):
    """Test and predict passes for a system whose ``forward`` returns category logits and whose ``model`` has
    ``categories`` and a calibration ``temperature``."""

    def init_category_metrics(self, num_classes: int) -> None:
        self.val_metrics = category_metrics(num_classes, "val/")
        self.test_metrics = category_metrics(num_classes, "test/")
        self.test_ece_uncalibrated = MulticlassCalibrationError(num_classes, n_bins=ECE_BINS, norm="l1")
        self.test_confusion = MulticlassConfusionMatrix(num_classes)

    def calibrated(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits / self.model.temperature, dim=-1)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.log_skipped(batch)
        if batch["image"].shape[0] == 0:
            return
        logits = self(batch["image"])
        self.test_metrics.update(self.calibrated(logits), batch["label"])
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
