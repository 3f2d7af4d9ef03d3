"""The prototype shift: each catalog item's vector moved from its catalog image towards where shopper photos
of its product lie.

Why: a shopper photo of a product (a pile of apples, a hand, a shelf) does not land on its packshot's
embedding, and for a product without training photos it lands among photos of *similar trained products*
instead. The offset from a trained product's catalog embedding to the mean of its training photos' embeddings
measures that domain gap; the mean offset of the trained products of a category is the best guess for a
product of that category that has no photo (the statistics of base classes carried over to novel ones, as in
Yang et al., 2021, "Free lunch for few-shot learning"). An item is indexed at

    normalise(c + trained_weight * own(product))                   a product with training photos
    normalise(c + untrained_weight * offset(category))             any other (photo-less, added live)

with ``offset(category)`` the global mean where a category has no trained product. Index-time only: queries
and the network are unchanged. BENCHMARKS §21 measures and chooses the weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from snapsearch.utils.atomic import atomic_save_arrays


class PrototypeShiftError(ValueError):
    """Offsets that cannot be computed or do not fit the embedder."""


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True).clip(1e-12)


@dataclass(frozen=True)
class PrototypeShift:
    """Per trained product its own offset, per partition the mean offset of its trained products, and the
    weights the two kinds of item are moved by."""

    products: tuple[str, ...]  # products with training photos (``own`` rows)
    own: np.ndarray  # (len(products), d) float32
    category: np.ndarray  # (n_partitions, d) float32; a partition without trained products: the global mean
    trained_weight: float
    untrained_weight: float
    fingerprint: str

    @classmethod
    def from_embeddings(
        cls,
        catalog: np.ndarray,
        catalog_products: Sequence[str],
        catalog_partitions: np.ndarray,
        photos: np.ndarray,
        photo_products: Sequence[str],
        n_partitions: int,
        *,
        trained_weight: float,
        untrained_weight: float,
        fingerprint: str,
    ) -> PrototypeShift:
        """The offsets of the products that have both catalog images and ``photos`` (training photos only:
        the products the network learnt from photos), averaged per partition of their catalog images."""
        cat_ids, photo_ids = np.asarray(catalog_products), np.asarray(photo_products)
        known = set(cat_ids.tolist())
        trained = [p for p in dict.fromkeys(photo_ids.tolist()) if p in known]
        if not trained:
            raise PrototypeShiftError("no product has both catalog images and training photos: nothing to learn from")
        own, parts = [], []
        for p in trained:
            here = cat_ids == p
            own.append(_normalise(photos[photo_ids == p].mean(0)) - _normalise(catalog[here].mean(0)))
            parts.append(np.bincount(catalog_partitions[here]).argmax())
        own_arr, parts_arr = np.stack(own).astype(np.float32), np.asarray(parts)
        category = np.tile(own_arr.mean(0), (n_partitions, 1))
        for c in np.unique(parts_arr):
            category[c] = own_arr[parts_arr == c].mean(0)
        return cls(tuple(trained), own_arr, category.astype(np.float32), trained_weight, untrained_weight, fingerprint)

    def apply(self, embeddings: np.ndarray, partitions: np.ndarray, products: Sequence[str]) -> np.ndarray:
        """The index vectors of catalog images with these embeddings, partitions and product ids."""
        if len(embeddings) != len(partitions) or len(embeddings) != len(products):
            raise PrototypeShiftError(
                f"{len(embeddings)} embeddings, {len(partitions)} partitions, {len(products)} ids"
            )
        if embeddings.shape[1:] != self.own.shape[1:]:
            raise PrototypeShiftError(f"embeddings of size {embeddings.shape[1:]}, offsets of {self.own.shape[1:]}")
        row = {p: i for i, p in enumerate(self.products)}
        own = np.array([row.get(p, -1) for p in products], dtype=np.int64)
        trained = own >= 0
        offsets = np.where(
            trained[:, None],
            self.trained_weight * self.own[own.clip(0)],
            self.untrained_weight * self.category[partitions],
        )
        return _normalise(embeddings + offsets).astype(embeddings.dtype, copy=False)

    def info(self) -> dict[str, Any]:
        return {
            "trained_weight": self.trained_weight,
            "untrained_weight": self.untrained_weight,
            "trained_products": len(self.products),
        }

    def save(self, path: Path) -> None:
        atomic_save_arrays(
            path,
            {
                "products": np.asarray(self.products, dtype=str),
                "own": self.own,
                "category": self.category,
                "weights": np.asarray([self.trained_weight, self.untrained_weight], dtype=np.float64),
                "fingerprint": np.asarray(self.fingerprint),
            },
        )

    @classmethod
    def load(cls, path: Path, fingerprint: str) -> PrototypeShift:
        """Refused when another embedder's offsets (they would move items the wrong way)."""
        with np.load(path, allow_pickle=False) as z:
            saved = str(z["fingerprint"])
            if saved != fingerprint:
                raise PrototypeShiftError(
                    f"{path} holds another embedder's offsets ({saved[:12]}): re-export the bundle"
                )
            weights = z["weights"].tolist()
            return cls(tuple(z["products"].tolist()), z["own"], z["category"], weights[0], weights[1], saved)
