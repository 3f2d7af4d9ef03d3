"""The prototype shift as a cascade option (``conf/prototype_shift/``): the offsets measured on a run's training
photos, and the catalog vectors an index is built from (:mod:`snapsearch.retrieval.prototype_shift`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from snapsearch.retrieval.prototype_shift import PrototypeShift
from snapsearch.search.photo_embeddings import PhotoEmbeddings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrototypeShiftOptions:
    """``conf/prototype_shift``: the two weights (BENCHMARKS §21 chose them on a selection fold) and, for
    offsets measured here, at most ``photos_per_product`` training photos of each product (a seeded sample)."""

    trained_weight: float
    untrained_weight: float
    photos_per_product: int
    seed: int

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> PrototypeShiftOptions | None:
        """None when the group is off (``prototype_shift=none``) or absent."""
        if cfg is None or not cfg.get("enabled", False):
            return None
        return cls(
            float(cfg["trained_weight"]),
            float(cfg["untrained_weight"]),
            int(cfg["photos_per_product"]),
            int(cfg["seed"]),
        )

    def measure(self, photos: PhotoEmbeddings, manifest: pd.DataFrame, catalog: pd.DataFrame) -> PrototypeShift | None:
        """The offsets of the products the run trained photos of (its training photos; never a held-out
        product's or the selection fold's), None (logged) when there are none."""
        p_emb, p_products = photos.trained(manifest, self.photos_per_product, self.seed)
        if not p_products:
            log.warning("no training photos to measure the prototype shift on: it is off")
            return None
        catalog = catalog[catalog["product_id"].isin(p_products)]
        if catalog.empty:
            log.warning("no catalog image of a product with training photos: the prototype shift is off")
            return None
        c_out = photos.embed(catalog, "prototype shift catalog")
        rows = catalog.loc[c_out.rows]
        labels = photos.labels
        product_partition = dict(zip(labels.products, labels.product_category, strict=True))
        return PrototypeShift.from_embeddings(
            c_out.embeddings,
            rows["product_id"].tolist(),
            np.array([product_partition[p] for p in rows["product_id"]], dtype=np.int64),
            p_emb,
            p_products,
            len(labels.categories),
            trained_weight=self.trained_weight,
            untrained_weight=self.untrained_weight,
            fingerprint=photos.runtime.embedder_fingerprint,
        )


def shifted_chunks(
    shift: PrototypeShift | None,
    chunks: Callable[[], Iterable[np.ndarray]],
    partitions: np.ndarray,
    products: np.ndarray,
) -> Callable[[], Iterable[np.ndarray]]:
    """``chunks`` (embeddings of rows in order) as index vectors: shifted chunk by chunk (as they come)."""
    if shift is None:
        return chunks

    def shifted() -> Iterator[np.ndarray]:
        start = 0
        for chunk in chunks():
            end = start + len(chunk)
            yield shift.apply(chunk, partitions[start:end], products[start:end].tolist())
            start = end

    return shifted


def catalog_vectors(
    shift: PrototypeShift | None, embeddings: np.ndarray, partition: int, product_id: str
) -> np.ndarray:
    """The index vectors of one product's catalog images (a product added live: photo-less by definition,
    unless the network trained photos of a product with its id)."""
    if shift is None:
        return embeddings
    n = len(embeddings)
    return shift.apply(embeddings, np.full(n, partition, dtype=np.int64), [product_id] * n)
