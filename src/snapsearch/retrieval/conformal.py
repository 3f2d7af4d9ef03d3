"""Split-conformal category sets (LAC: least ambiguous set-valued classifier, Sadinle et al. 2019).

A set holds every category whose probability is at least ``1 - qhat``, with ``qhat`` the finite-sample
corrected quantile of the calibration scores ``1 - p(true category)``. If calibration photos and queries
are exchangeable, the true category is in the set with probability >= coverage.

Why LAC rather than APS: for a given coverage LAC gives the smallest sets on average, i.e. the fewest
partitions to search, and its empty sets (no category is plausible enough) are a clear signal to fall
back to global search. APS adapts set size to difficulty but pays with larger sets.
"""

from __future__ import annotations

import math

import numpy as np


def lac_scores(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Non-conformity of each calibration example: 1 - probability of its true category."""
    return 1.0 - probs[np.arange(len(labels)), labels]


def lac_threshold(probs: np.ndarray, labels: np.ndarray, coverage: float) -> float:
    """qhat: the ceil((n+1) * coverage) / n empirical quantile of the calibration scores.

    With too few calibration examples for the coverage (that level above 1) no finite threshold is
    valid, so every category is admitted (threshold 1.0).
    """
    if not 0.0 < coverage < 1.0:
        raise ValueError(f"coverage={coverage} must be in (0, 1)")
    probs = np.asarray(probs)
    labels = np.asarray(labels).astype(np.int64)
    if probs.ndim != 2 or len(labels) != len(probs) or len(labels) == 0:
        raise ValueError(f"need (n, n_classes) probs with one label each, got {probs.shape} and {labels.shape}")
    if labels.min() < 0 or labels.max() >= probs.shape[1]:
        raise ValueError(f"labels must be in 0..{probs.shape[1] - 1}")
    n = len(labels)
    level = math.ceil((n + 1) * coverage) / n
    if level > 1.0:
        return 1.0
    return float(np.quantile(lac_scores(probs, labels), level, method="higher"))


def lac_sets(probs: np.ndarray, threshold: float) -> list[list[int]]:
    """Each row's categories with score 1 - p <= threshold, most probable first (may be empty)."""
    probs = np.asarray(probs)
    admitted = (1.0 - probs) <= threshold  # the same arithmetic as the calibration scores
    order = np.argsort(-probs, axis=1, kind="stable")
    return [[int(c) for c in row_order if row_ok[c]] for row_order, row_ok in zip(order, admitted, strict=True)]
