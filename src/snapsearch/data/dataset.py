"""Framework-free datasets over a manifest: label maps and skip-don't-crash image loading.

Evaluation and deployment use these without importing Lightning.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import albumentations as A
import pandas as pd
import torch
from torch.utils.data import Dataset, default_collate

from snapsearch.data.draws import split_draw
from snapsearch.data.image_io import ImageReadError, read_rgb
from snapsearch.data.manifest import category_at
from snapsearch.utils.atomic import atomic_write_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelMaps:
    """Data-derived metadata that flows into the models and the run directory (never typed twice)."""

    partition_depth: int
    categories: list[str]  # partition labels, index = class id
    products: list[str]  # product ids, index = product index
    product_category: list[int]  # partition class id of each product
    # products held out of training, selection and calibration (the unseen-products protocol)
    unseen_products: list[str] = field(default_factory=list)
    # what of them is held out: "all" (they arrive after training) or "photos" (their catalog images and
    # categories are trained on, their shopper photos are not: a shop's new products)
    unseen_mode: str = "all"
    # seen products whose training photos are withheld (``mode=photos`` only): model selection scores
    # photo-less behaviour on their validation photos (``val/fold/...``)
    selection_fold: list[str] = field(default_factory=list)

    def fold_indices(self) -> tuple[int, ...]:
        """Product indices of the selection fold (what validation scores apart)."""
        return self._indices(self.selection_fold)

    def photo_less_indices(self) -> tuple[int, ...]:
        """Product indices trained without a shopper photo: the held-out products and the selection fold."""
        return self._indices(sorted({*self.unseen_products, *self.selection_fold}))

    def _indices(self, products: list[str]) -> tuple[int, ...]:
        index = {p: i for i, p in enumerate(self.products)}
        return tuple(index[p] for p in products)

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> LabelMaps:
        return cls(**json.loads(Path(path).read_text()))

    @classmethod
    def from_manifest(
        cls,
        df: pd.DataFrame,
        partition_depth: int,
        unseen_products: list[str] | None = None,
        unseen_mode: str = "all",
        selection_fold: list[str] | None = None,
    ) -> LabelMaps:
        """Categories and products in order of first appearance (the source's own order); unseen products
        keep their index (evaluation scores them) though no model trains on them."""
        part = category_at(df["category"], partition_depth)
        categories = list(dict.fromkeys(part))
        products = list(dict.fromkeys(df["product_id"]))
        cat_index = {c: i for i, c in enumerate(categories)}
        first = df.assign(_part=part).drop_duplicates("product_id").set_index("product_id")["_part"]
        product_category = [cat_index[first[p]] for p in products]
        return cls(
            partition_depth,
            categories,
            products,
            product_category,
            sorted(unseen_products or []),
            unseen_mode,
            sorted(selection_fold or []),
        )


class ManifestDataset(Dataset):
    """Images of a manifest slice. An unreadable image yields ``None`` (one warning); the collate drops it."""

    def __init__(
        self,
        frame: pd.DataFrame,
        labels: LabelMaps,
        transform: A.Compose,
        *,
        max_pixels: int,
        draft_size: int | None,
    ) -> None:
        cat_index = {c: i for i, c in enumerate(labels.categories)}
        prod_index = {p: i for i, p in enumerate(labels.products)}
        self.paths = frame["path"].tolist()
        self.rows = frame.index.to_numpy()
        self.targets = category_at(frame["category"], labels.partition_depth).map(cat_index).to_numpy()
        self.products = frame["product_id"].map(prod_index).to_numpy()
        self.domains = frame["domain"].tolist()  # catalog images are composited into scenes, photos are not
        self.transform = transform
        self.max_pixels = max_pixels
        self.draft_size = draft_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, draw: int | tuple[int, int]) -> dict[str, Any] | None:
        """``draw`` is an index, or ``(index, seed)`` from :class:`~snapsearch.data.draws.SeededDraws`:
        then the augmentations of this one sample are seeded, so they replay exactly after a resume."""
        i, seed = split_draw(draw)
        if seed is not None:
            self.transform.set_random_seed(seed)
        try:
            image = read_rgb(self.paths[i], max_pixels=self.max_pixels, draft_size=self.draft_size)
        except ImageReadError as err:
            log.warning("skipping unreadable image %s: %s", err.path, err.reason)
            return None
        return {
            "image": self.transform(image=image, domain=self.domains[i], product=int(self.products[i]))["image"],
            "label": int(self.targets[i]),
            "product": int(self.products[i]),
            "row": int(self.rows[i]),
            "photo": int(self.domains[i] == "query"),
        }


def collate_skipping_bad(batch: list[dict[str, Any] | None]) -> dict[str, Any]:
    """Collate the readable samples; ``n_skipped`` counts the rest so the run summary can report them."""
    good = [b for b in batch if b is not None]
    out: dict[str, Any] = default_collate(good) if good else {"image": torch.empty(0)}
    out["n_skipped"] = len(batch) - len(good)
    return out
