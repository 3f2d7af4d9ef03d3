"""The synthetic shop as a data source: ``make_synthetic_shop`` validates its parameters, draws every
product's catalog images and photos (in parallel threads) into the cache on first use, and returns the
manifest.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from snapsearch.data.manifest import SPLITS
from snapsearch.data.sources.synthetic.cache import load_cached, publish, read_back, shop_dir
from snapsearch.data.sources.synthetic.photos import MIN_IMAGE_SIZE, catalog_image, photo
from snapsearch.data.sources.synthetic.specs import (
    GENERATOR_VERSION,
    STREAM_CATALOG,
    STREAM_PHOTO,
    STREAM_SPRITE,
    ProductSpec,
    categories,
    product_specs,
    slug,
    stream_rng,
)
from snapsearch.data.sources.synthetic.sprites import render_sprite

log = logging.getLogger(__name__)

DEFAULT_PHOTOS = {"train": 6, "val": 2, "test": 3}
SPLIT_ORDER = ("train", "val", "test")
MAX_WORKERS = 8  # products render in parallel threads (cv2 and numpy release the GIL)

CATALOG_EXT = ".png"
PHOTO_EXT = ".jpg"
PNG_COMPRESSION = 3


def _write(path: Path, image: np.ndarray, params: list[int]) -> None:
    bgr = cv2.cvtColor(np.round(image * 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), bgr, params):
        raise OSError(f"could not write synthetic image {path}")


@dataclass(frozen=True)
class _Job:
    out: Path
    spec: ProductSpec
    params: Mapping


def _render_product(job: _Job) -> list[dict[str, str]]:
    """All images of one product (its own random streams: any order, any thread, same bytes)."""
    spec, params = job.spec, job.params
    seed, size, c, p = params["seed"], params["image_size"], spec.category.index, spec.index
    folder = Path("images") / slug(spec.category.path) / spec.product_id
    (job.out / folder).mkdir(parents=True, exist_ok=True)
    sprite = render_sprite(spec, size, stream_rng(seed, STREAM_SPRITE, c, p))
    rows = []

    def row(name: str, domain: str, split: str) -> dict[str, str]:
        return {
            "image_id": f"{spec.product_id}/{Path(name).stem}",
            "path": str(folder / name),
            "product_id": spec.product_id,
            "category": spec.category.path,
            "domain": domain,
            "split": split,
        }

    for k in range(params["catalog_per_product"]):
        name = f"catalog_{k:02d}{CATALOG_EXT}"
        image = catalog_image(sprite, k, stream_rng(seed, STREAM_CATALOG, c, p, k))
        _write(job.out / folder / name, image, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
        rows.append(row(name, "catalog", "train"))
    for s, split in enumerate(SPLIT_ORDER):
        for k in range(params["photos_per_product"][split]):
            name = f"{split}_{k:03d}{PHOTO_EXT}"
            image, quality = photo(sprite, stream_rng(seed, STREAM_PHOTO, c, p, s, k))
            _write(job.out / folder / name, image, [cv2.IMWRITE_JPEG_QUALITY, quality])
            rows.append(row(name, "query", split))
    return rows


def _draw_shop(out: Path, params: Mapping) -> list[dict[str, str]]:
    """Draw every image into ``out``; returns the manifest rows."""
    jobs = [
        _Job(out, spec, params)
        for category in categories(params["n_categories"])
        for spec in product_specs(category, params["products_per_category"], params["seed"])
    ]
    workers = max(1, min(MAX_WORKERS, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        return [r for product_rows in pool.map(_render_product, jobs) for r in product_rows]


def _check_params(
    n_categories: int,
    products_per_category: int,
    photos_per_product: Mapping[str, int] | None,
    catalog_per_product: int,
    image_size: int,
    seed: int,
) -> dict:
    """Validated, normalised parameters: what the cache folder is named after."""
    photos = dict(DEFAULT_PHOTOS if photos_per_product is None else photos_per_product)
    unknown = sorted(set(photos) - SPLITS)
    if unknown:
        raise ValueError(f"photos_per_product has unknown splits {unknown}; use {list(SPLIT_ORDER)}")
    counts = {split: photos.get(split, 0) for split in SPLIT_ORDER}
    minimums = {
        "n_categories": 1,
        "products_per_category": 1,
        "catalog_per_product": 1,
        "image_size": MIN_IMAGE_SIZE,
        "seed": 0,
        **{f"photos_per_product.{s}": 0 for s in SPLIT_ORDER},
    }
    values = {
        "n_categories": n_categories,
        "products_per_category": products_per_category,
        "catalog_per_product": catalog_per_product,
        "image_size": image_size,
        "seed": seed,
        **{f"photos_per_product.{s}": n for s, n in counts.items()},
    }
    for key, value in values.items():
        if int(value) != value or value < minimums[key]:
            raise ValueError(f"synthetic shop: {key} must be an integer >= {minimums[key]}, got {value!r}")
    return {
        "version": GENERATOR_VERSION,
        "n_categories": int(n_categories),
        "products_per_category": int(products_per_category),
        "photos_per_product": {split: int(n) for split, n in counts.items()},
        "catalog_per_product": int(catalog_per_product),
        "image_size": int(image_size),
        "seed": int(seed),
    }


def make_synthetic_shop(
    root: str | Path,
    *,
    n_categories: int = 6,
    products_per_category: int = 5,
    photos_per_product: Mapping[str, int] | None = None,
    catalog_per_product: int = 1,
    image_size: int = 128,
    seed: int = 0,
) -> pd.DataFrame:
    """The synthetic shop's manifest, drawing its images under ``root`` on first use.

    ``photos_per_product`` maps split -> user photos per product (default ``{train: 6, val: 2, test: 3}``);
    catalog images are split ``train`` (the search pool, also usable for training).
    """
    params = _check_params(
        n_categories, products_per_category, photos_per_product, catalog_per_product, image_size, seed
    )
    out = shop_dir(root, params)
    cached = load_cached(out, params)
    if cached is not None:
        return cached
    n_products = params["n_categories"] * params["products_per_category"]
    log.info("Drawing the synthetic shop (%d products) into %s", n_products, out)
    start = time.perf_counter()
    publish(out, params, _draw_shop)
    log.info("Synthetic shop ready in %.1f s", time.perf_counter() - start)
    return read_back(out, params)
