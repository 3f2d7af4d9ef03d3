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
    unseen = _draw_products(manifest, partition_depth, fraction, np.random.default_rng(seed), exclude=[])
    if unseen:
        log.info("unseen-products protocol: %d of %d products held out of training", len(unseen), _n(manifest))
    return unseen


# the selection fold's draw is a stream of its own, so adding a fold never changes the held-out products
SELECTION_FOLD_STREAM = 1


def choose_selection_fold(
    manifest: pd.DataFrame,
    partition_depth: int,
    fraction: float,
    seed: int,
    unseen: list[str],
    keep_photographed: bool = True,
) -> list[str]:
    """A fold of the *seen* products (about ``fraction`` of each top group, drawn with ``seed``; sorted) whose
    training photos are withheld while their validation photos stay: a model is selected for photo-less
    behaviour on them, never on the held-out products' photos. Only products with validation photos are
    drawn (the others could not be scored). ``keep_photographed``: each partition keeps a product with
    photos; False lets the fold take a partition's last one (its category is then known from catalog images
    only: a harder case than the held-out products', and on Grocery the only way loose produce, one or two
    products a partition, reaches the fold)."""
    scored = manifest.loc[(manifest["domain"] == "query") & (manifest["split"] == "val"), "product_id"]
    rng = np.random.default_rng((seed, SELECTION_FOLD_STREAM))
    keep = 1 if keep_photographed else 0
    fold = _draw_products(manifest, partition_depth, fraction, rng, unseen, set(scored), keep)
    if fold:
        log.info("selection fold: %d seen products without training photos, selected on their val photos", len(fold))
    return fold


def _n(manifest: pd.DataFrame) -> int:
    return int(manifest["product_id"].nunique())


def _draw_products(
    manifest: pd.DataFrame,
    partition_depth: int,
    fraction: float,
    rng: np.random.Generator,
    exclude: list[str],
    eligible: set[str] | None = None,
    keep: int = 1,
) -> list[str]:
    """Stratified by top group; a product (of ``eligible``, default all) is drawn only if its partition keeps
    ``keep`` other products outside both ``exclude`` and the draw."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"data.unseen_products fraction={fraction} must be in [0, 1)")
    if fraction == 0.0:
        return []
    products = manifest.drop_duplicates("product_id").set_index("product_id")["category"]
    group = category_at(products, 1)
    partition = category_at(products, partition_depth)
    seen_left = partition[~products.index.isin(exclude)].value_counts().to_dict()
    drawn: list[str] = []
    for g in sorted(group.unique()):
        members = sorted(products.index[group == g])
        target = round(fraction * len(members))
        for product in rng.permutation(members).tolist():
            if target == 0:
                break
            drawable = product not in exclude and (eligible is None or product in eligible)
            if drawable and seen_left.get(partition[product], 0) > keep:
                seen_left[partition[product]] -= 1
                drawn.append(product)
                target -= 1
    return sorted(drawn)


UNSEEN_MODES = ("all", "photos")


def held_out_rows(
    manifest: pd.DataFrame, unseen: list[str], mode: str, selection_fold: list[str] | None = None
) -> pd.Series:
    """The rows no model may train, select or calibrate on: every row of the held-out products
    (``mode="all"``), or only their shopper photos (``mode="photos"``: their catalog images stay trainable);
    plus the selection fold's *training* photos (its validation photos are what selection reads)."""
    if mode not in UNSEEN_MODES:
        raise ValueError(f"data.unseen_products.mode={mode!r}; use one of {UNSEEN_MODES}")
    if selection_fold and mode != "photos":
        raise ValueError(
            "data.unseen_products.selection_fold selects for products without shopper photos: it needs mode=photos"
        )
    held = manifest["product_id"].isin(unseen)
    photos = manifest["domain"] != "catalog"
    held = held & photos if mode == "photos" else held
    fold = manifest["product_id"].isin(selection_fold or []) & photos & (manifest["split"] == "train")
    return held | fold
