""" "Not in our catalog": a per-strategy threshold on the best product's score, chosen on validation photos,
measured on test photos of products held out of the pool.

A seeded share of the products is removed from the pool (tombstoned in a view of the index, so nothing is
re-embedded); the photos of the others are *in the catalog*, the held-out ones' photos are *not*. On the
validation photos the threshold maximises Youden's J (accept rate of in-catalog photos minus accept rate of
out-of-catalog ones); on the test photos we report the share of out-of-catalog photos rejected, the share of
in-catalog photos wrongly rejected, and the AUROC of the score. Caveat: the gate was trained on every
product, so held-out products are unseen by the *pool*, not by the classifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchmetrics.functional.classification import binary_auroc, binary_roc

from snapsearch.retrieval.store import VectorStore, excluding
from snapsearch.search.cascade import Cascade


def held_out_products(n_products: int, fraction: float, seed: int) -> np.ndarray:
    """A seeded ``fraction`` of the product positions (at least one, never all)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"rejection.holdout_fraction={fraction}: need 0 < fraction < 1")
    n = min(max(1, round(fraction * n_products)), n_products - 1)
    return np.sort(np.random.default_rng(seed).choice(n_products, size=n, replace=False))


def _best_scores(cascade: Cascade, view: VectorStore, strategy: str, emb: np.ndarray, probs: np.ndarray) -> np.ndarray:
    rankings, _ = cascade.rank(emb, probs, 1, strategy, index=view)
    return np.array([r.scores[0] if r.scores else -np.inf for r in rankings])


def youden_threshold(scores: np.ndarray, in_catalog: np.ndarray) -> float:
    """The score threshold (accept when score >= it) that maximises TPR - FPR of accepting."""
    fpr, tpr, thresholds = binary_roc(torch.from_numpy(scores).double(), torch.from_numpy(in_catalog).long())
    best = int(torch.argmax(tpr - fpr))
    return float(min(thresholds[best], scores.max()))


def _measure(scores: np.ndarray, in_catalog: np.ndarray, threshold: float) -> dict[str, float]:
    rejected = scores < threshold
    both = in_catalog.any() and (~in_catalog).any()
    auroc = binary_auroc(torch.from_numpy(scores).double(), torch.from_numpy(in_catalog).long()) if both else np.nan
    return {
        "n_in_catalog": int(in_catalog.sum()),
        "n_out_of_catalog": int((~in_catalog).sum()),
        "out_of_catalog_rejected": float(rejected[~in_catalog].mean()) if (~in_catalog).any() else np.nan,
        "in_catalog_wrongly_rejected": float(rejected[in_catalog].mean()) if in_catalog.any() else np.nan,
        "auroc": float(auroc),
    }


def rejection_study(
    cascade: Cascade,
    strategies: Sequence[str],
    val: tuple[np.ndarray, np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    holdout_fraction: float,
    seed: int,
) -> dict[str, Any]:
    """Per strategy: the threshold chosen on ``val`` and its measures on ``test``.

    ``val`` and ``test`` are (embeddings, probabilities, true product positions) of photos.
    """
    held = held_out_products(len(cascade.products), holdout_fraction, seed)
    view = excluding(cascade.index, np.flatnonzero(np.isin(cascade.index.item_product, held)))
    out: dict[str, Any] = {
        "holdout_fraction": holdout_fraction,
        "seed": seed,
        "held_out_products": [cascade.products[int(p)].product_id for p in held],
        "strategies": {},
    }
    for name in strategies:
        v_scores = _best_scores(cascade, view, name, val[0], val[1])
        v_in = ~np.isin(val[2], held)
        threshold = youden_threshold(v_scores, v_in)
        t_scores = _best_scores(cascade, view, name, test[0], test[1])
        out["strategies"][name] = {
            "threshold": threshold,
            "val": _measure(v_scores, v_in, threshold),
            "test": _measure(t_scores, ~np.isin(test[2], held), threshold),
        }
    return out
