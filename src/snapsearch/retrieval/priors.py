"""EM re-estimation of category priors on an unlabelled query stream (Saerens, Latinne & Decaestecker 2002).

A classifier's calibrated posteriors carry its training category mix. When the query stream's mix differs
(a shop whose users photograph mostly fruit), re-weighting the posteriors by new/old priors and iterating
to a fixed point estimates the new mix and corrects the posteriors, without any labels.
"""

from __future__ import annotations

import numpy as np

DEFAULT_MAX_ITER = 100
DEFAULT_TOL = 1e-6
# Floor for priors: a category absent from training must not divide by zero.
DEFAULT_EPS = 1e-12


def _reweight(probs: np.ndarray, ratio: np.ndarray) -> np.ndarray:
    """Posteriors under new priors: p(c|x) * new(c)/old(c), renormalised per row."""
    weighted = probs * ratio
    total = weighted.sum(axis=1, keepdims=True)
    return np.divide(weighted, total, out=np.zeros_like(weighted), where=total > 0)


def em_prior_correction(
    probs: np.ndarray,
    train_priors: np.ndarray,
    max_iter: int = DEFAULT_MAX_ITER,
    tol: float = DEFAULT_TOL,
    eps: float = DEFAULT_EPS,
) -> tuple[np.ndarray, np.ndarray]:
    """(posteriors adjusted to the estimated priors, estimated priors of the query stream).

    Args:
        probs: (n_queries, n_classes) calibrated posteriors under the training priors.
        train_priors: (n_classes,) category frequencies the classifier was trained with (any scale).
        max_iter: EM iterations at most.
        tol: stop when no prior moves by more than this.
        eps: floor for priors, so absent categories stay finite.
    """
    probs = np.asarray(probs, dtype=np.float64)
    old = np.asarray(train_priors, dtype=np.float64)
    if probs.ndim != 2 or old.shape != (probs.shape[1],):
        raise ValueError(f"probs {probs.shape} need (n, C) and train_priors {old.shape} need (C,)")
    if len(probs) == 0 or (old < 0).any() or old.sum() <= 0:
        raise ValueError("need at least one query and non-negative train priors with a positive sum")
    old = np.maximum(old / old.sum(), eps)
    old /= old.sum()
    priors = old.copy()
    for _ in range(max_iter):
        new = np.maximum(_reweight(probs, priors / old).mean(axis=0), eps)
        new /= new.sum()
        converged = np.abs(new - priors).max() < tol
        priors = new
        if converged:
            break
    return _reweight(probs, priors / old), priors
