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


def calibration_gaps(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each photo's confidence bin and (correct - confidence), binned as torchmetrics bins them: the ECE is
    ``sum over bins of |sum of the bin's gaps| / photos``, so a bootstrap can reweight photos without
    recomputing the metric per resample."""
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = torch.linspace(0, 1, ECE_BINS + 1, dtype=torch.float32)
    bins = (torch.bucketize(torch.from_numpy(confidence).float(), edges, right=True) - 1).numpy()
    return bins, correct - confidence.astype(np.float64)
