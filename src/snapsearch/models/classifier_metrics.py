"""The gate's quality on the test photos, with the same torchmetrics definitions training uses."""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_calibration_error,
    multiclass_f1_score,
)

TOP_K = 5
ECE_BINS = 15


def classifier_metrics(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Top-1 / top-5 accuracy, macro-F1 and expected calibration error of calibrated probabilities."""
    p, y = torch.from_numpy(probs).float(), torch.from_numpy(labels).long()
    n = p.shape[1]
    return {
        "top1": float(multiclass_accuracy(p, y, n, top_k=1, average="micro")),
        "top5": float(multiclass_accuracy(p, y, n, top_k=min(TOP_K, n), average="micro")),
        "macro_f1": float(multiclass_f1_score(p, y, n, average="macro")),
        "ece": float(multiclass_calibration_error(p, y, n, n_bins=ECE_BINS, norm="l1")),
    }
