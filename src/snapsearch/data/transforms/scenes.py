"""Store photos that may serve as composite backgrounds: the training split's, never a validation or test photo.

The scene photos are data, not configuration: the datamodule hands the training split's photos to the pipeline
builder, so a held-out photo can never leak its scene into model selection or scoring.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from snapsearch.data.image_io import ImageReadError, read_rgb

log = logging.getLogger(__name__)

TRAIN_SPLIT = "train"


class ScenePhotos:
    """Store photos that may serve as composite backgrounds, decoded on demand and kept in a bounded cache.

    Args:
        paths: the photos (the training split's, chosen by the datamodule).
        products: the product index of each photo: a composite never uses a photo of its own product.
        side: photos are decoded with their shorter side near this many pixels (JPEG draft decoding).
        max_pixels: decompression-bomb guard of the image reader.
        cache_size: how many decoded photos each worker keeps.
    """

    def __init__(
        self, paths: Sequence[str], products: Sequence[int], *, side: int, max_pixels: int, cache_size: int
    ) -> None:
        if len(paths) != len(products):
            raise ValueError(f"{len(paths)} scene photos but {len(products)} product ids")
        self.paths = [str(p) for p in paths]
        self.products = np.asarray(products, dtype=np.int64)
        self.side = side
        self.max_pixels = max_pixels
        self.cache_size = cache_size
        self._cache: dict[int, np.ndarray | None] = {}

    @classmethod
    def from_manifest(
        cls, manifest: pd.DataFrame, product_index: Mapping[str, int], *, side: int, max_pixels: int, cache_size: int
    ) -> ScenePhotos:
        """The manifest's training-split shopper photos: the only images allowed as backgrounds (a validation
        or test photo composited into training would leak its scene into model selection and scoring)."""
        photos = manifest[(manifest["domain"] == "query") & (manifest["split"] == TRAIN_SPLIT)]
        products = [product_index.get(p, -1) for p in photos["product_id"]]
        return cls(photos["path"].tolist(), products, side=side, max_pixels=max_pixels, cache_size=cache_size)

    def __len__(self) -> int:
        return len(self.paths)

    def choose(self, u: float, product: int | None) -> int | None:
        """The photo at quantile ``u`` of those not showing ``product`` (``None``: no such photo)."""
        candidates = np.flatnonzero(self.products != product) if product is not None else np.arange(len(self))
        if len(candidates) == 0:
            return None
        return int(candidates[min(int(u * len(candidates)), len(candidates) - 1)])

    def image(self, i: int) -> np.ndarray | None:
        """Photo ``i`` decoded (``None`` once, logged, when unreadable)."""
        if i not in self._cache:
            if len(self._cache) >= self.cache_size:
                self._cache.pop(next(iter(self._cache)))
            try:
                self._cache[i] = read_rgb(self.paths[i], max_pixels=self.max_pixels, draft_size=self.side)
            except ImageReadError as err:
                log.warning("scene photo %s is unreadable and is not used as a background: %s", err.path, err.reason)
                self._cache[i] = None
        return self._cache[i]
