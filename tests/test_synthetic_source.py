"""The embedded synthetic shop: right counts, valid manifest, deterministic, cached, and learnable."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from PIL import Image

from snapsearch.data.manifest import COLUMNS, category_at, validate_manifest
from snapsearch.data.sources.synthetic import COMPLETE_MARKER, MANIFEST_NAME, make_synthetic_shop

DEFAULT = {
    "n_categories": 6,
    "products_per_category": 5,
    "photos_per_product": {"train": 6, "val": 2, "test": 3},
    "catalog_per_product": 1,
    "image_size": 128,
    "seed": 0,
}
SMALL = {
    "n_categories": 3,
    "products_per_category": 2,
    "photos_per_product": {"train": 2, "val": 1, "test": 1},
    "catalog_per_product": 2,
    "image_size": 48,
    "seed": 7,
}
WHITE = 245  # a pixel at least this bright in every channel counts as white
BORDER_PX = 2
CATALOG_MIN_WHITE_BORDER = 0.95
PHOTO_MAX_WHITE_BORDER = 0.5
CHANCE_MULTIPLE = 3.0  # a trivial feature must beat chance by this factor
HUE_BINS = 18
CENTRE_CROP = 0.5  # photos are cluttered at the edges; the product is mostly in the middle
SILHOUETTE_PX = 16
MIN_PRODUCT_DIFFERENCE = 4.0  # mean absolute grey-level difference between catalog images of one category


@pytest.fixture(scope="module")
def default_shop(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return make_synthetic_shop(tmp_path_factory.mktemp("shop"), **DEFAULT)


def _rgb(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _files(shop: pd.DataFrame) -> list[Path]:
    return [Path(p) for p in shop["path"]]


def _shop_dir(shop: pd.DataFrame) -> Path:
    """The cache folder: images lie at <shop>/images/<category>/<product>/<file>."""
    return _files(shop)[0].parents[3]


def test_counts_and_manifest(default_shop: pd.DataFrame) -> None:
    shop = default_shop
    assert list(shop.columns) == list(COLUMNS)
    validate_manifest(shop)
    assert all(Path(p).is_absolute() for p in shop["path"])
    n_products = DEFAULT["n_categories"] * DEFAULT["products_per_category"]
    sizes = shop.groupby(["domain", "split"]).size().to_dict()
    expected = {("catalog", "train"): n_products * DEFAULT["catalog_per_product"]}
    expected |= {("query", s): n_products * n for s, n in DEFAULT["photos_per_product"].items()}
    assert sizes == expected
    assert shop["product_id"].nunique() == n_products
    per_category = shop.groupby("category")["product_id"].nunique()
    assert len(per_category) == DEFAULT["n_categories"]
    assert (per_category == DEFAULT["products_per_category"]).all()
    # Two-level paths, with fewer groups than categories: both partition depths are meaningful.
    assert (shop["category"].str.count("/") == 1).all()
    assert 1 < category_at(shop["category"], 1).nunique() < DEFAULT["n_categories"]


def test_images_readable_at_size(default_shop: pd.DataFrame) -> None:
    shop = default_shop
    size = DEFAULT["image_size"]
    for domain, fmt in (("catalog", "PNG"), ("query", "JPEG")):
        for path in shop.loc[shop["domain"] == domain, "path"].iloc[::7]:
            with Image.open(path) as img:
                assert (img.format, img.size, img.mode) == (fmt, (size, size), "RGB")


def _white_border_fraction(path: str) -> float:
    img = _rgb(path)
    border = np.concatenate(
        [
            img[:BORDER_PX].reshape(-1, 3),
            img[-BORDER_PX:].reshape(-1, 3),
            img[:, :BORDER_PX].reshape(-1, 3),
            img[:, -BORDER_PX:].reshape(-1, 3),
        ]
    )
    return float((border >= WHITE).all(axis=1).mean())


def test_catalog_on_white_photos_not(default_shop: pd.DataFrame) -> None:
    shop = default_shop
    catalog = [_white_border_fraction(p) for p in shop.loc[shop["domain"] == "catalog", "path"]]
    photos = [_white_border_fraction(p) for p in shop.loc[shop["domain"] == "query", "path"]]
    assert min(catalog) >= CATALOG_MIN_WHITE_BORDER
    assert max(photos) <= PHOTO_MAX_WHITE_BORDER


def _hue_histogram(path: str) -> np.ndarray:
    """Saturation- and brightness-weighted hue histogram of the photo's centre: a trivial colour feature."""
    img = _rgb(path)
    margin = round(img.shape[0] * (1 - CENTRE_CROP) / 2)
    hsv = cv2.cvtColor(img[margin:-margin, margin:-margin], cv2.COLOR_RGB2HSV).astype(np.float64)
    hue_max = 180.0  # OpenCV's 8-bit hue range
    bins = np.minimum((hsv[..., 0] / hue_max * HUE_BINS).astype(int), HUE_BINS - 1)
    weights = hsv[..., 1] / 255 * hsv[..., 2] / 255
    hist = np.bincount(bins.ravel(), weights=weights.ravel(), minlength=HUE_BINS)
    return hist / max(hist.sum(), np.finfo(float).eps)


def _nearest_centroid(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray) -> np.ndarray:
    labels = np.unique(train_y)
    centroids = np.stack([train_x[train_y == c].mean(axis=0) for c in labels])
    return labels[np.argmin(((test_x[:, None] - centroids[None]) ** 2).sum(axis=-1), axis=1)]


def test_category_learnable_from_photos(default_shop: pd.DataFrame) -> None:
    """Train photos -> test photos' category with a colour histogram and nearest centroid, far above chance."""
    shop = default_shop
    photos = shop[shop["domain"] == "query"]
    train, test = photos[photos["split"] == "train"], photos[photos["split"] == "test"]
    pred = _nearest_centroid(
        np.stack([_hue_histogram(p) for p in train["path"]]),
        train["category"].to_numpy(dtype=object),
        np.stack([_hue_histogram(p) for p in test["path"]]),
    )
    accuracy = float((pred == test["category"].to_numpy(dtype=object)).mean())
    assert accuracy >= CHANCE_MULTIPLE / DEFAULT["n_categories"], accuracy


def test_category_shapes_and_distinct_products(default_shop: pd.DataFrame) -> None:
    """Catalog silhouettes alone tell categories apart (shape families); products in a category differ."""
    shop = default_shop
    catalog = shop[shop["domain"] == "catalog"].reset_index(drop=True)
    grey = np.stack([np.asarray(Image.open(p).convert("L"), np.float32) for p in catalog["path"]])
    silhouettes = np.stack(
        [
            cv2.resize((g < WHITE).astype(np.float32), (SILHOUETTE_PX, SILHOUETTE_PX), interpolation=cv2.INTER_AREA)
            for g in grey
        ]
    ).reshape(len(grey), -1)
    labels = catalog["category"].to_numpy(dtype=object)
    correct = 0
    for i in range(len(catalog)):  # leave one out
        rest = np.arange(len(catalog)) != i
        correct += _nearest_centroid(silhouettes[rest], labels[rest], silhouettes[i : i + 1])[0] == labels[i]
    assert correct / len(catalog) >= CHANCE_MULTIPLE / DEFAULT["n_categories"]
    for _, group in catalog.groupby("category"):
        imgs = grey[group.index]
        diff = np.abs(imgs[:, None] - imgs[None]).mean(axis=(2, 3))
        off_diagonal = diff[~np.eye(len(imgs), dtype=bool)]
        assert off_diagonal.min() >= MIN_PRODUCT_DIFFERENCE


def test_deterministic(tmp_path: Path) -> None:
    a = make_synthetic_shop(tmp_path / "a", **SMALL)
    b = make_synthetic_shop(tmp_path / "b", **SMALL)
    assert a.drop(columns="path").equals(b.drop(columns="path"))
    for pa, pb in zip(_files(a), _files(b), strict=True):
        assert pa.read_bytes() == pb.read_bytes(), pa.name
    other = make_synthetic_shop(tmp_path / "a", **{**SMALL, "seed": SMALL["seed"] + 1})
    assert _shop_dir(other) != _shop_dir(a)
    assert _files(other)[0].read_bytes() != _files(a)[0].read_bytes()


def test_cache_reused(tmp_path: Path) -> None:
    first = make_synthetic_shop(tmp_path, **SMALL)
    mtimes = {p: p.stat().st_mtime_ns for p in _files(first)}
    again = make_synthetic_shop(tmp_path, **SMALL)
    assert again.equals(first)
    assert {p: p.stat().st_mtime_ns for p in _files(again)} == mtimes


def test_hydra_style_config_accepted(tmp_path: Path) -> None:
    """Hydra passes nested config as DictConfig, not dict."""
    params = {**SMALL, "photos_per_product": OmegaConf.create(SMALL["photos_per_product"])}
    assert make_synthetic_shop(tmp_path, **params).equals(make_synthetic_shop(tmp_path, **SMALL))


def test_interrupted_generation_redone(tmp_path: Path) -> None:
    first = make_synthetic_shop(tmp_path, **SMALL)
    shop_dir = _shop_dir(first)
    assert (shop_dir / MANIFEST_NAME).is_file()
    (shop_dir / COMPLETE_MARKER).unlink()  # as if the process died before finishing
    victim = _files(first)[-1]
    victim.write_bytes(b"half written")
    again = make_synthetic_shop(tmp_path, **SMALL)
    assert (shop_dir / COMPLETE_MARKER).is_file()
    assert again.equals(first)
    assert victim.read_bytes() != b"half written"
    validate_manifest(again)
    with Image.open(victim) as img:
        img.load()


def test_no_leftovers_beside_the_shop(tmp_path: Path) -> None:
    make_synthetic_shop(tmp_path, **SMALL)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    "override",
    [
        {"photos_per_product": {"training": 3}},
        {"photos_per_product": {"train": -1}},
        {"image_size": 8},
        {"products_per_category": 2.5},
        {"n_categories": 0},
        {"seed": -1},
    ],
)
def test_bad_parameters_rejected(tmp_path: Path, override: dict) -> None:
    with pytest.raises(ValueError, match=r"synthetic shop|photos_per_product"):
        make_synthetic_shop(tmp_path, **{**SMALL, **override})
