""" "Not in our catalog": a per-strategy threshold on the best product's score, chosen on validation photos,
measured on test photos of products that are not in the pool.

The out-of-catalog products are, when the run has them, its **fully unseen** products
(``data.unseen_products.mode=all``): no model trained, selected or calibrated on them, as with a product a
shopper photographs that the shop never listed. Otherwise a seeded share of the products is taken out of the
pool, and the report says that the models trained on them. Either way they are split into two disjoint
halves: the validation half's photos choose the threshold (Youden's J: accept rate of in-catalog photos
minus accept rate of out-of-catalog ones), the test half's photos measure it, beside the in-catalog
products' test photos. Both halves leave the pool (tombstoned in a view of the index, nothing re-embedded).
A query whose true partition has no item left would be rejected by any routed strategy for free: such
queries are counted and reported apart, never in the measures (the unseen-products split keeps a seen
product in every partition, so it empties none).

A shop's catalog also holds products no model trained on (added after training): ``untrained_in_pool`` keeps a
seeded share of the fully unseen products in the pool. Their test photos count as in-catalog, and are also
measured apart against the out-of-catalog ones: both look new to the network, and a lever that lifts new-looking
photos onto untrained items (the novelty bonus) may lift a photo of a product the shop does not sell as well.

Measures: out-of-catalog photos rejected, in-catalog photos wrongly rejected, and the AUROC of the score,
each with a bootstrap interval over products (or photos: ``bootstrap.unit``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torchmetrics.functional.classification import binary_roc

from snapsearch.evaluation.uncertainty import LEVEL, clusters_of, resample_counts
from snapsearch.retrieval.store import VectorStore, excluding
from snapsearch.search.cascade import Cascade


@dataclass(frozen=True)
class Photos:
    """Model outputs of photos: embeddings, gate probabilities, and true product positions."""

    embeddings: np.ndarray
    probs: np.ndarray
    products: np.ndarray

    def subset(self, keep: np.ndarray) -> Photos:
        return Photos(self.embeddings[keep], self.probs[keep], self.products[keep])


def held_out_products(n_products: int, fraction: float, seed: int) -> np.ndarray:
    """A seeded ``fraction`` of the product positions (at least two, never all)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"rejection.holdout_fraction={fraction}: need 0 < fraction < 1")
    n = min(max(2, round(fraction * n_products)), n_products - 1)
    return np.sort(np.random.default_rng(seed).choice(n_products, size=n, replace=False))


def kept_in_pool(products: Sequence[int], share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, out): a seeded ``share`` of the fully unseen ``products`` stays in the pool as catalog products no
    model trained on (a shop's products added after training), at least one when ``share`` > 0 and at least
    two left out of the catalog; the rest leave it."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"rejection.untrained_in_pool={share}: need 0 <= share < 1")
    shuffled = np.random.default_rng(seed + 1).permutation(np.asarray(products, dtype=np.int64))  # not the halves' draw
    n = 0 if share == 0 else min(max(1, round(share * len(shuffled))), len(shuffled) - 2)
    if share > 0 and n < 1:
        raise ValueError(
            f"rejection.untrained_in_pool={share}: {len(shuffled)} fully unseen products leave none to keep in "
            "the pool beside the two the study needs out of it"
        )
    return np.sort(shuffled[:n]), np.sort(shuffled[n:])


def split_halves(products: Sequence[int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint (validation, test) halves of the out-of-catalog products, seeded."""
    if len(products) < 2:
        raise ValueError(f"the rejection study needs at least two out-of-catalog products, got {len(products)}")
    shuffled = np.random.default_rng(seed).permutation(np.asarray(products, dtype=np.int64))
    half = len(shuffled) // 2
    return np.sort(shuffled[:half]), np.sort(shuffled[half:])


def _best_scores(cascade: Cascade, view: VectorStore, strategy: str, photos: Photos) -> np.ndarray:
    rankings, _ = cascade.rank(photos.embeddings, photos.probs, 1, strategy, index=view)
    return np.array([r.scores[0] if r.scores else -np.inf for r in rankings])


def youden_threshold(scores: np.ndarray, in_catalog: np.ndarray) -> float:
    """The score threshold (accept when score >= it) that maximises TPR - FPR of accepting."""
    fpr, tpr, thresholds = binary_roc(torch.from_numpy(scores).double(), torch.from_numpy(in_catalog).long())
    best = int(torch.argmax(tpr - fpr))
    return float(min(thresholds[best], scores.max()))


def weighted_auroc(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUROC of ``scores`` for ``positive`` under each row of ``weights`` (resamples x queries), ties counted
    half: the probability that a drawn positive outscores a drawn negative."""
    order = np.argsort(scores, kind="stable")
    s, pos, w = scores[order], positive[order], weights[:, order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # groups of tied scores
    group = np.cumsum(np.r_[True, s[1:] != s[:-1]]) - 1
    w_pos, w_neg = w * pos, w * ~pos
    neg_in_group = np.add.reduceat(w_neg, starts, axis=1)
    neg_below = np.cumsum(neg_in_group, axis=1) - neg_in_group  # negatives with a strictly lower score
    credit = neg_below[:, group] + 0.5 * neg_in_group[:, group]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w_pos * credit).sum(axis=1) / (w_pos.sum(axis=1) * w_neg.sum(axis=1))


def _measure(
    scores: np.ndarray, in_catalog: np.ndarray, threshold: float, products: np.ndarray, bootstrap: dict[str, Any]
) -> dict[str, Any]:
    """The three measures with their intervals (``bootstrap``: unit, resamples, seed; 0 resamples: none)."""
    rejected = (scores < threshold).astype(np.float64)
    cluster = clusters_of(products, bootstrap["unit"])
    weights = np.ones((1, len(scores)))
    if bootstrap["resamples"] > 0:
        counts = resample_counts(int(cluster.max(initial=-1) + 1), bootstrap["resamples"], bootstrap["seed"])
        weights = np.vstack([weights, counts[:, cluster].astype(np.float64)])
    with np.errstate(invalid="ignore", divide="ignore"):
        out_rate = (weights * rejected * ~in_catalog).sum(axis=1) / (weights * ~in_catalog).sum(axis=1)
        in_rate = (weights * rejected * in_catalog).sum(axis=1) / (weights * in_catalog).sum(axis=1)
    finite = np.where(np.isfinite(scores), scores, np.finfo(np.float64).min)
    auroc = weighted_auroc(finite, in_catalog, weights)
    tail = 100 * (1 - LEVEL) / 2
    result: dict[str, Any] = {
        "n_in_catalog": int(in_catalog.sum()),
        "n_out_of_catalog": int((~in_catalog).sum()),
        "out_of_catalog_rejected": float(out_rate[0]),
        "in_catalog_wrongly_rejected": float(in_rate[0]),
        "auroc": float(auroc[0]),
    }
    if len(weights) > 1:
        result["intervals"] = {
            name: [float(np.nanpercentile(v[1:], tail)), float(np.nanpercentile(v[1:], 100 - tail))]
            for name, v in (
                ("out_of_catalog_rejected", out_rate),
                ("in_catalog_wrongly_rejected", in_rate),
                ("auroc", auroc),
            )
        }
    return result


def rejection_study(
    cascade: Cascade,
    strategies: Sequence[str],
    val: Photos,
    test: Photos,
    *,
    unseen: Sequence[int],
    holdout_fraction: float,
    untrained_in_pool: float,
    seed: int,
    bootstrap: dict[str, Any],
) -> dict[str, Any]:
    """Per strategy: the threshold chosen on ``val`` and its measures on ``test``.

    ``unseen``: the run's fully unseen products (positions); empty = take ``holdout_fraction`` of the
    products out of the pool instead. ``untrained_in_pool``: the share of ``unseen`` kept in the pool, as a
    shop's catalog holds products no model trained on: their test photos are in-catalog queries (also measured
    apart against the out-of-catalog ones: what the score tells two kinds of new product by), their validation
    photos choose nothing (a shop has no photo of them). ``val`` must hold the validation photos of the
    out-of-catalog products as well as the in-catalog ones."""
    trained_on = len(unseen) == 0
    if trained_on and untrained_in_pool > 0:
        raise ValueError(
            f"rejection.untrained_in_pool={untrained_in_pool} needs fully unseen products: train the run with "
            "data.unseen_products.mode=all, or set rejection.untrained_in_pool=0"
        )
    kept, out_products = kept_in_pool(unseen, untrained_in_pool, seed)
    if trained_on:
        out_products = held_out_products(len(cascade.products), holdout_fraction, seed)
    val_half, test_half = split_halves(out_products, seed)
    held = np.union1d(val_half, test_half)
    index = cascade.index
    view = excluding(index, np.flatnonzero(np.isin(index.item_product, held)))
    partition_of = np.zeros(len(cascade.products), dtype=np.int64)
    partition_of[index.item_product] = index.item_partition
    left = np.isin(
        np.arange(int(index.item_partition.max()) + 1), index.item_partition[~np.isin(index.item_product, held)]
    )

    def usable(photos: Photos, out_half: np.ndarray, skip: np.ndarray) -> tuple[Photos, np.ndarray, int]:
        """In-catalog photos (but ``skip``'s) and this half's out-of-catalog ones, without emptied-partition
        queries."""
        is_out = np.isin(photos.products, out_half)
        emptied = ~left[partition_of[photos.products]]
        keep = (~np.isin(photos.products, held) | is_out) & ~emptied & ~np.isin(photos.products, skip)
        return photos.subset(keep), ~is_out[keep], int(emptied.sum())

    val_photos, val_in, val_emptied = usable(val, val_half, kept)
    test_photos, test_in, test_emptied = usable(test, test_half, np.empty(0, dtype=np.int64))
    untrained = np.isin(test_photos.products, kept)
    names = cascade.products
    out: dict[str, Any] = {
        "out_of_catalog": "products the models trained on" if trained_on else "fully unseen products",
        "holdout_fraction": holdout_fraction if trained_on else None,
        "seed": seed,
        "held_out_products": {
            "val": [names[int(p)].product_id for p in val_half],
            "test": [names[int(p)].product_id for p in test_half],
        },
        "untrained_in_pool": [names[int(p)].product_id for p in kept],
        "emptied_partition_queries": {"val": val_emptied, "test": test_emptied},
        "bootstrap_unit": bootstrap["unit"],
        "strategies": {},
    }
    no_intervals = {**bootstrap, "resamples": 0}
    for name in strategies:
        v_scores = _best_scores(cascade, view, name, val_photos)
        threshold = youden_threshold(v_scores, val_in)
        t_scores = _best_scores(cascade, view, name, test_photos)
        out["strategies"][name] = {
            "threshold": threshold,
            "val": _measure(v_scores, val_in, threshold, val_photos.products, no_intervals),
            "test": _measure(t_scores, test_in, threshold, test_photos.products, bootstrap),
        }
        if untrained.any():  # the catalog's untrained products' photos against the out-of-catalog ones
            apart = untrained | ~test_in
            out["strategies"][name]["test_untrained"] = _measure(
                t_scores[apart], test_in[apart], threshold, test_photos.products[apart], bootstrap
            )
    return out
