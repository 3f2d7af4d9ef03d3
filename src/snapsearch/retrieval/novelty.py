"""The novelty bonus: a photo far from every training photo lifts the catalog items of untrained products.

Why: a photo of a product the network saw no photo of lands among the photos of *similar trained products*,
so a trained product's catalog image outranks the right one. BENCHMARKS §21 measures it: inside its true
category and among the untrained items only, a photo-less product's photo finds it at rank 1 78-86% of the
time; among all items, 34%. How far the photo lies from the training photos tells the two cases apart
(*novelty*: the mean cosine to its ``k`` nearest training photos; AUROC 0.86-0.88, photo-less against seen).
The ranking adds

    weight * ramp(q)    to the score of every item of a product without training photos,
    ramp(q) = clip((hi - novelty(q)) / (hi - lo), 0, 1)

``lo`` and ``hi`` being quantiles of the novelty of validation photos of trained products: a photo as near the
training photos as a typical seen one gets nothing, one as far as the farthest tenth gets the whole bonus.
Like the hubness correction it re-scores the candidates the store returns, fetched at least ``depth`` deep.

The same ramp also tempers the gate (:class:`NoveltyTemperature`): the category probabilities of a photo that
looks new are softened, because the gate's temperature was fitted on photos of trained products and it is
overconfident on the others (BENCHMARKS §21: ECE 0.03 on seen products' photos, 0.18-0.27 on photo-less ones').
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snapsearch.retrieval.hubness import HubReference, rescored
from snapsearch.retrieval.index import SearchHits
from snapsearch.utils.atomic import atomic_save_arrays


class NoveltyError(ValueError):
    """A novelty reference or bonus that cannot be used; the message says what to do."""


@dataclass(frozen=True)
class NoveltyReference:
    """The training photos a query's novelty is measured against, the products they show (the *trained*
    ones), and the novelty at which the bonus is whole (``lo``) and at which it starts (``hi``)."""

    photos: HubReference  # novelty(q) = photos.density(q): the mean cosine to the k nearest training photos
    products: tuple[str, ...]
    lo: float
    hi: float

    def __post_init__(self) -> None:
        if not self.products:
            raise NoveltyError("a novelty reference needs the products its training photos show")
        if not self.lo < self.hi:
            raise NoveltyError(
                f"novelty ramp from {self.lo:.4f} to {self.hi:.4f} is empty: the validation photos' novelty does "
                "not spread (too few of them?); widen novelty.quantiles or add validation photos"
            )

    @classmethod
    def calibrate(
        cls,
        photos: np.ndarray,
        photo_products: Sequence[str],
        validation: np.ndarray,
        k: int,
        quantiles: tuple[float, float],
        embedder_checksum: str | None = None,
    ) -> NoveltyReference:
        """The reference of training ``photos`` (embeddings) with the ramp at ``quantiles`` (lo, hi) of the
        novelty of ``validation`` (embeddings of trained products' validation photos: never a training one,
        which would be its own neighbour)."""
        if len(photos) != len(photo_products):
            raise NoveltyError(f"{len(photos)} training photos for {len(photo_products)} product ids")
        if len(validation) == 0:
            raise NoveltyError("no validation photo of a trained product to set the novelty ramp on")
        lo_q, hi_q = quantiles
        if not 0.0 <= lo_q < hi_q <= 1.0:
            raise NoveltyError(f"novelty quantiles {quantiles}: need 0 <= lo < hi <= 1")
        reference = HubReference.from_photos(photos, k, embedder_checksum)
        lo, hi = np.quantile(reference.density(validation), [lo_q, hi_q])
        return cls(reference, tuple(dict.fromkeys(str(p) for p in photo_products)), float(lo), float(hi))

    def novelty(self, queries: np.ndarray) -> np.ndarray:
        """The mean cosine of each query to its k nearest training photos (low: far from every one)."""
        return self.photos.density(queries)

    def ramp(self, queries: np.ndarray) -> np.ndarray:
        """How much of the bonus each query gets, in [0, 1]."""
        return np.clip((self.hi - self.novelty(queries)) / (self.hi - self.lo), 0.0, 1.0).astype(np.float32)

    def save(self, path: str | Path) -> None:
        """Written atomically (float16 photos, as the hubness reference's)."""
        atomic_save_arrays(
            path,
            {
                "photos": self.photos.photos.astype(np.float16),
                "k": np.asarray(self.photos.k),
                "products": np.asarray(self.products, dtype=str),
                "ramp": np.asarray([self.lo, self.hi], dtype=np.float64),
                "embedder_checksum": np.asarray(self.photos.embedder_checksum or ""),
            },
        )

    @classmethod
    def load(cls, path: str | Path, expected_embedder_checksum: str | None = None) -> NoveltyReference:
        """Refused when another embedder's photos (novelty would be measured in another space)."""
        with np.load(path, allow_pickle=False) as z:
            checksum = str(z["embedder_checksum"]) or None
            if expected_embedder_checksum and checksum and checksum != expected_embedder_checksum:
                raise NoveltyError(f"the novelty reference at {path} was embedded by another embedder: re-export it")
            lo, hi = z["ramp"].tolist()
            photos = HubReference(z["photos"].astype(np.float32), int(z["k"]), checksum)
            return cls(photos, tuple(z["products"].tolist()), lo, hi)


@dataclass(frozen=True)
class NoveltyBonus:
    """How a ranking applies the reference: ``score + weight * ramp(q)`` for the items of untrained products,
    over candidates fetched at least ``depth`` deep. ``trained`` tells, per product position (the index's
    ``item_product``), whether the network trained photos of it; positions past its end (products added
    live) are untrained."""

    reference: NoveltyReference
    weight: float
    depth: int
    trained: np.ndarray

    def __post_init__(self) -> None:
        if self.weight < 0 or self.depth < 1:
            raise NoveltyError(f"novelty weight {self.weight} must be >= 0 and depth {self.depth} >= 1")

    @classmethod
    def for_products(
        cls, reference: NoveltyReference, weight: float, depth: int, product_ids: Sequence[str]
    ) -> NoveltyBonus:
        """The bonus for a product table whose positions hold ``product_ids``."""
        known = set(reference.products)
        return cls(reference, weight, depth, np.array([p in known for p in product_ids], dtype=bool))

    def fetch(self, wanted: int) -> int:
        """How many raw items to fetch for ``wanted`` before re-scoring."""
        return max(wanted, self.depth)

    def ramp(self, queries: np.ndarray) -> np.ndarray:
        return self.reference.ramp(queries)

    def untrained(self, positions: np.ndarray) -> np.ndarray:
        """Whether each product position is of a product without training photos."""
        positions = np.asarray(positions, dtype=np.int64)
        inside = positions < len(self.trained)
        return ~(inside & self.trained[np.where(inside, positions, 0)])

    def rescore(self, hits: SearchHits, ramp: float, item_product: np.ndarray) -> SearchHits:
        """One query's hits (of ``ramp``) re-scored and re-sorted (best first; padding ids of -1 stay last)."""
        bonus = self.weight * float(ramp)
        if bonus == 0.0:
            return hits
        return rescored(hits, lambda ids: bonus * self.untrained(item_product[ids]))


@dataclass(frozen=True)
class NoveltyTemperature:
    """The gate's temperature raised with the photo's novelty: ``p' = softmax(log p / (1 + slope * ramp(q)))``,
    i.e. the calibrated logits divided by ``1 + slope * ramp``: a photo as near the training photos as a
    typical seen one keeps its probabilities, one as far as the farthest tenth has them softened most. The
    ranking of categories never changes (top-1 is the same), only the confidence the strategies read."""

    reference: NoveltyReference
    slope: float

    def __post_init__(self) -> None:
        if not self.slope > 0:
            raise NoveltyError(f"novelty temperature slope {self.slope} must be > 0 (0 is off: build none)")

    def apply(self, probs: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
        """``probs`` (N x C, calibrated) of the photos whose embeddings are ``embeddings`` (N x D), tempered."""
        if len(probs) != len(embeddings):
            raise NoveltyError(f"{len(probs)} probability rows for {len(embeddings)} embeddings")
        if len(probs) == 0:
            return probs
        return at_temperature(probs, 1.0 + self.slope * self.reference.ramp(embeddings).astype(np.float64))


def at_temperature(probs: np.ndarray, temperature: np.ndarray | float) -> np.ndarray:
    """``probs`` (N x C) with their logits divided by ``temperature`` (a scalar or one per row): the softmax of
    ``log p / t``, in the input's dtype."""
    t = np.broadcast_to(np.asarray(temperature, dtype=np.float64), (len(probs),))
    z = np.log(np.clip(probs.astype(np.float64), 1e-30, 1.0)) / t[:, None]
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(probs.dtype)
