"""The evaluation protocols (DESIGN.md §3): which manifest rows are queries, which are the search pool, which
are calibration photos, restricted to what the trained models can score; and the query stream (as-is or
re-mixed). The evaluator and ``embed.py`` read the same pool from here, so shards match the evaluation."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from snapsearch.data.dataset import LabelMaps
from snapsearch.data.manifest import category_at

log = logging.getLogger(__name__)

PROTOCOLS = ("catalog", "extended_catalog")
FRAME_NAMES = ("test queries", "pool images", "calibration photos")


def known_rows(frame: pd.DataFrame, labels: LabelMaps) -> pd.DataFrame:
    """Rows whose category and product the trained models know."""
    part = category_at(frame["category"], labels.partition_depth)
    return frame[part.isin(labels.categories) & frame["product_id"].isin(labels.products)]


def without_unseen(frame: pd.DataFrame, labels: LabelMaps) -> pd.DataFrame:
    """Rows of products the run did not hold out: what calibration (thresholds, conformal sets) may use."""
    return frame[~frame["product_id"].isin(labels.unseen_products)]


def trained_photos(manifest: pd.DataFrame, labels: LabelMaps) -> pd.DataFrame:
    """The training-split shopper photos the run trained on: never an unseen product's or the selection
    fold's (what export calibrates its int8 models' activation ranges on)."""
    photos = known_rows(manifest[(manifest["domain"] == "query") & (manifest["split"] == "train")], labels)
    return photos[~photos["product_id"].isin([*labels.unseen_products, *labels.selection_fold])]


def protocol_frames(manifest: pd.DataFrame, protocol: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(queries, pool, calibration photos) of a protocol: catalog = the catalog images are the pool;
    extended_catalog = the train photos join them."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol={protocol!r}; use one of {PROTOCOLS}")
    query = manifest["domain"] == "query"
    pool = manifest["domain"] == "catalog"
    if protocol == "extended_catalog":
        pool |= query & (manifest["split"] == "train")
    return (
        manifest[query & (manifest["split"] == "test")],
        manifest[pool],
        manifest[query & (manifest["split"] == "val")],
    )


def _known(frame: pd.DataFrame, labels: LabelMaps, what: str) -> pd.DataFrame:
    """Rows whose category and product the trained models know; the rest are dropped, counted and logged
    (a manifest evaluated against a run trained on another one)."""
    known = known_rows(frame, labels)
    if len(known) < len(frame):
        dropped = frame.loc[~frame.index.isin(known.index)]
        log.warning(
            "dropping %d of %d %s: category or product unknown to the trained models (e.g. %s)",
            len(dropped),
            len(frame),
            what,
            dropped["path"].iloc[0],
        )
    return known


def answerable(manifest: pd.DataFrame, protocol: str, labels: LabelMaps) -> tuple[pd.DataFrame, ...]:
    """(queries, pool, calibration photos) restricted to what can be scored: known labels, and queries
    whose product has an image in the pool (a product without one can never be found: counted, logged).
    The run's unseen products stay among the queries and in the pool, not among the calibration photos."""
    frames = protocol_frames(manifest, protocol)
    queries, pool, calib = (_known(f, labels, w) for f, w in zip(frames, FRAME_NAMES, strict=True))
    calib = without_unseen(calib, labels)
    in_pool = queries["product_id"].isin(pool["product_id"])
    if not in_pool.all():
        log.warning(
            "dropping %d of %d test queries: their product has no image in the search pool (e.g. %s)",
            int((~in_pool).sum()),
            len(queries),
            queries.loc[~in_pool, "path"].iloc[0],
        )
    return queries[in_pool], pool, calib


def query_stream(true_partition: np.ndarray, n_categories: int, alpha: float | None, seed: int) -> np.ndarray:
    """Indices of the query stream: the test photos as they are, or (``alpha`` set) resampled with
    replacement to a category mix drawn from Dirichlet(alpha): a shop whose users photograph other things
    than the training data shows, for measuring prior correction."""
    if alpha is None:
        return np.arange(len(true_partition))
    rng = np.random.default_rng(seed)
    present = np.unique(true_partition)
    mix = np.zeros(n_categories)
    mix[present] = rng.dirichlet(np.full(len(present), float(alpha)))
    weights = mix[true_partition] / np.bincount(true_partition, minlength=n_categories)[true_partition]
    return rng.choice(len(true_partition), size=len(true_partition), replace=True, p=weights / weights.sum())
