"""The unseen-products protocol: a fixed, seeded share of the products that no model trains, selects or
calibrates on, while their catalog images stay in the search pool. Categories are stable, products churn:
this is what a live catalog does every day, and what a product classifier cannot follow.

Held out per top group (stratified), and only products whose partition keeps a seen product at the
evaluated depth: a gate cannot route to a category it never saw.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from snapsearch.data.manifest import category_at

log = logging.getLogger(__name__)


def choose_unseen_products(manifest: pd.DataFrame, partition_depth: int, fraction: float, seed: int) -> list[str]:
    """About ``fraction`` of the products of each top group (rounded), drawn with ``seed``, each leaving at
    least one seen product in its partition; sorted. ``fraction=0`` holds out nothing."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"data.unseen_products.fraction={fraction} must be in [0, 1)")
    if fraction == 0.0:
        return []
    products = manifest.drop_duplicates("product_id").set_index("product_id")["category"]
    group = category_at(products, 1)
    partition = category_at(products, partition_depth)
    seen_left = partition.value_counts().to_dict()
    rng = np.random.default_rng(seed)
    unseen: list[str] = []
    for g in sorted(group.unique()):
        members = sorted(products.index[group == g])
        target = round(fraction * len(members))
        for product in rng.permutation(members).tolist():
            if target == 0:
                break
            if seen_left[partition[product]] > 1:
                seen_left[partition[product]] -= 1
                unseen.append(product)
                target -= 1
    log.info("unseen-products protocol: %d of %d products held out of training", len(unseen), len(products))
    return sorted(unseen)


UNSEEN_MODES = ("all", "photos")


def held_out_rows(manifest: pd.DataFrame, unseen: list[str], mode: str) -> pd.Series:
    """The rows no model may train, select or calibrate on: every row of the held-out products
    (``mode="all"``), or only their shopper photos (``mode="photos"``: their catalog images stay trainable)."""
    if mode not in UNSEEN_MODES:
        raise ValueError(f"data.unseen_products.mode={mode!r}; use one of {UNSEEN_MODES}")
    held = manifest["product_id"].isin(unseen)
    return held & (manifest["domain"] != "catalog") if mode == "photos" else held
