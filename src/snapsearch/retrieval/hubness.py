"""Hubness correction of the ranking: a catalog image in a crowded region of shopper photos stops attracting
the photos of other products.

A product trained on with shopper photos has its catalog image in a dense neighbourhood of photos; a product
known from its catalog images only does not, so a photo of it lands nearer a trained product's image (a
*hub*). CSLS (Conneau et al., 2018) scores ``cos(q, g) - weight * r(g)``, where ``r(g)`` (the item's
*density*) is the mean cosine of catalog image ``g`` to its ``k`` nearest photos of a reference set (weight
0.5 ranks as CSLS does; the query's own term is constant per query and drops out). The densities are a
per-item column of the store (:data:`DENSITY`), computed when an item is indexed or added, so every backend
and every routing strategy is corrected alike; the ranking re-scores the candidates the store returns
(:func:`rescore`), fetched at least ``depth`` deep. BENCHMARKS §21 measures it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snapsearch.retrieval.index import SearchHits
from snapsearch.utils.atomic import atomic_save_arrays

# The store's per-item metadata column holding r(g).
DENSITY = "hub_density"
# Rows of catalog vectors compared with the reference at once (bounds the similarity block's memory).
BLOCK = 4096


class HubnessError(ValueError):
    """A reference or a correction that cannot be used; the message says what to do."""


@dataclass(frozen=True)
class HubReference:
    """The shopper photos (L2-normalised embeddings) that measure each catalog item's density, and ``k``.

    It must come from the embedder that embeds the catalog; in a bundle it is ``hubness.npz`` (export.py
    writes the validation photos' embeddings), for a run directory the validation photos are embedded at
    start-up.
    """

    photos: np.ndarray
    k: int
    embedder_checksum: str | None = None

    def __post_init__(self) -> None:
        if self.photos.ndim != 2 or len(self.photos) == 0:
            raise HubnessError(f"a hubness reference needs at least one photo embedding, got {self.photos.shape}")
        if self.k < 1:
            raise HubnessError(f"hubness neighbours k={self.k} must be >= 1")

    @property
    def dim(self) -> int:
        return int(self.photos.shape[1])

    def density(self, vectors: np.ndarray) -> np.ndarray:
        """r(g) of each row of ``vectors``: the mean cosine to its k nearest reference photos."""
        x = _normalised(np.asarray(vectors, dtype=np.float32))
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise HubnessError(f"vectors of shape {x.shape} against a reference of dimension {self.dim}")
        k = min(self.k, len(self.photos))
        out = np.empty(len(x), dtype=np.float32)
        for start in range(0, len(x), BLOCK):
            sims = x[start : start + BLOCK] @ self.photos.T
            out[start : start + BLOCK] = np.partition(sims, -k, axis=1)[:, -k:].mean(axis=1)
        return out

    def densities(self, chunks: Iterable[np.ndarray]) -> np.ndarray:
        """:meth:`density` over a pool's embedding chunks, in order."""
        parts = [self.density(c) for c in chunks]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    @classmethod
    def from_photos(cls, photos: np.ndarray, k: int, embedder_checksum: str | None = None) -> HubReference:
        return cls(_normalised(np.asarray(photos, dtype=np.float32)), k, embedder_checksum)

    def save(self, path: str | Path) -> None:
        """Written atomically (float16 photos: densities are means of many cosines, half precision is plenty)."""
        atomic_save_arrays(
            path,
            {
                "photos": self.photos.astype(np.float16),
                "k": np.asarray(self.k),
                "embedder_checksum": np.asarray(self.embedder_checksum or ""),
            },
        )

    @classmethod
    def load(cls, path: str | Path, expected_embedder_checksum: str | None = None) -> HubReference:
        with np.load(path, allow_pickle=False) as z:
            ref = cls(z["photos"].astype(np.float32), int(z["k"]), str(z["embedder_checksum"]) or None)
        if expected_embedder_checksum and ref.embedder_checksum and ref.embedder_checksum != expected_embedder_checksum:
            raise HubnessError(f"the hubness reference at {path} was embedded by another embedder: re-export it")
        return ref


@dataclass(frozen=True)
class HubCorrection:
    """How a ranking applies the densities: ``score - weight * r(item)`` over candidates fetched at least
    ``depth`` items deep (the correction only reorders what the store returns)."""

    weight: float
    depth: int

    def __post_init__(self) -> None:
        if self.weight < 0 or self.depth < 1:
            raise HubnessError(f"hubness weight {self.weight} must be >= 0 and depth {self.depth} >= 1")

    def fetch(self, wanted: int) -> int:
        """How many raw items to fetch for ``wanted`` before re-scoring."""
        return max(wanted, self.depth)

    def rescore(self, hits: SearchHits, density: np.ndarray) -> SearchHits:
        """The hits re-scored and re-sorted (best first; padding ids of -1 stay last)."""
        return rescored(hits, lambda ids: -self.weight * density[ids])


def rescored(hits: SearchHits, change: Callable[[np.ndarray], np.ndarray]) -> SearchHits:
    """``hits`` with ``change(item ids)`` added to their scores, re-sorted best first (a stable sort: ties
    keep the store's order; padding ids of -1 stay last)."""
    ids = np.asarray(hits.item_ids)
    valid = ids >= 0
    scores = np.where(valid, hits.scores + change(np.where(valid, ids, 0)), -np.inf)
    order = np.argsort(-scores, kind="stable")
    return SearchHits(ids[order], scores[order].astype(np.float32))


def _normalised(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, np.finfo(np.float32).tiny)
