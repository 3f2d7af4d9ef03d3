"""Preview of an augmentation pipeline: a grid PNG so a person can see what the model is trained on.

    python -m snapsearch.data.preview augment=user_photo [data=grocery] [n_images=8] [seed=0]

One row per catalog image: the original (letterboxed to the tile size), then ``n_augmented`` augmented
versions. :func:`make_preview_grid` is a library function so training can log the same grid.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from pathlib import Path

import albumentations as A
import cv2
import hydra
import numpy as np
import pandas as pd
from omegaconf import DictConfig

from snapsearch.data.augment import build_augment
from snapsearch.data.image_io import ImageReadError, read_rgb
from snapsearch.data.preprocess import Preprocess
from snapsearch.data.sources import load_manifest
from snapsearch.data.transforms import ScenePhotos
from snapsearch.utils.atomic import atomic_path

log = logging.getLogger(__name__)

CONF_DIR = Path(__file__).resolve().parents[3] / "conf"

# Decompression-bomb guard for callers without a data config (the configs set data.max_image_pixels).
DEFAULT_MAX_PIXELS = 40_000_000
# Grid layout, relative to the tile side so that the grid looks the same at any input size.
_HEADER_FRACTION = 0.12  # height of the column-label strip
_GAP_FRACTION = 0.02  # space between tiles
_TEXT_FRACTION = 0.5  # label text height within its strip
_CAPTION_FRACTION = 0.08  # height of the file-name caption on the original
_GRID_BACKGROUND = (40, 40, 40)  # dark, so white catalog backgrounds stand out
_TEXT_COLOUR = (255, 255, 255)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _letterbox(image: np.ndarray, size: int) -> np.ndarray:
    """Fit the whole image inside a ``size`` square (aspect kept), so the original is seen uncropped."""
    height, width = image.shape[:2]
    scale = size / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    tile = np.empty((size, size, 3), dtype=np.uint8)
    tile[:] = _GRID_BACKGROUND
    top, left = (size - new_h) // 2, (size - new_w) // 2
    tile[top : top + new_h, left : left + new_w] = resized
    return tile


def _put_label(canvas: np.ndarray, text: str, x: int, y: int, width: int, height: int) -> None:
    """Write ``text`` centred in the box, shrunk to fit its width."""
    thickness = 1
    scale = cv2.getFontScaleFromHeight(_FONT, max(1, round(height * _TEXT_FRACTION)), thickness)
    (text_w, text_h), _ = cv2.getTextSize(text, _FONT, scale, thickness)
    if text_w > width:
        scale *= width / text_w
        (text_w, text_h), _ = cv2.getTextSize(text, _FONT, scale, thickness)
    origin = (x + (width - text_w) // 2, y + (height + text_h) // 2)
    cv2.putText(canvas, text, origin, _FONT, scale, _TEXT_COLOUR, thickness, cv2.LINE_AA)


def _augmented(augment: A.Compose, image: np.ndarray) -> np.ndarray:
    out = augment(image=image)["image"]
    if not (isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.ndim == 3):
        raise TypeError(
            "make_preview_grid needs a uint8 -> uint8 pipeline (build_augment), not one that ends in "
            f"normalisation (build_train_transform); it returned {type(out).__name__} "
            f"{getattr(out, 'dtype', '')}"
        )
    return out


def make_preview_grid(
    paths: Sequence[str | Path],
    augment: A.Compose,
    n_augmented: int,
    seed: int,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Grid of originals and augmented versions (RGB uint8), one row per readable image.

    ``augment`` is copied and re-seeded with ``seed``, so the grid is reproducible and the caller's
    pipeline (for instance the one feeding training) keeps its own random stream. Unreadable images
    are skipped with a warning.

    Raises:
        ValueError: none of ``paths`` could be read.
        TypeError: ``augment`` does not return uint8 HxWx3 images.
    """
    augment = copy.deepcopy(augment)
    augment.set_random_seed(seed)
    rows: list[tuple[str, np.ndarray, list[np.ndarray]]] = []
    for path in paths:
        try:
            image = read_rgb(path, max_pixels=max_pixels)
        except ImageReadError as err:
            log.warning("preview: skipping %s: %s", path, err)
            continue
        rows.append((Path(path).stem, image, [_augmented(augment, image) for _ in range(n_augmented)]))
    if not rows:
        raise ValueError(f"none of the {len(paths)} preview images could be read")

    first = rows[0][2][0] if n_augmented else rows[0][1]
    tile = max(first.shape[:2])
    gap = max(1, round(tile * _GAP_FRACTION))
    header = max(1, round(tile * _HEADER_FRACTION))
    n_cols = 1 + n_augmented
    grid = np.empty((header + len(rows) * (tile + gap), n_cols * (tile + gap) - gap, 3), dtype=np.uint8)
    grid[:] = _GRID_BACKGROUND
    for col, title in enumerate(["original", *(f"augmented {i + 1}" for i in range(n_augmented))]):
        _put_label(grid, title, col * (tile + gap), 0, tile, header)

    caption = max(1, round(tile * _CAPTION_FRACTION))
    for row, (name, original, augmented) in enumerate(rows):
        top = header + row * (tile + gap)
        for col, image in enumerate([original, *augmented]):
            left = col * (tile + gap)
            tile_image = image if image.shape[:2] == (tile, tile) else _letterbox(image, tile)
            grid[top : top + tile, left : left + tile] = tile_image
        grid[top + tile - caption : top + tile, 0:tile] = _GRID_BACKGROUND
        _put_label(grid, name, 0, top + tile - caption, tile, caption)
    return grid


def save_grid_png(grid: np.ndarray, path: str | Path) -> Path:
    """Write an RGB grid as PNG atomically (a crash never leaves a half-written file)."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"could not encode a {grid.shape} {grid.dtype} grid as PNG")
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())
    return Path(path)


def preview_paths(manifest: pd.DataFrame, n_images: int) -> list[str]:
    """The first ``n_images`` catalog images of a manifest (any images when it has no catalog)."""
    catalog = manifest[manifest["domain"] == "catalog"]
    chosen = catalog if len(catalog) else manifest
    return chosen["path"].head(n_images).astype(str).tolist()


@hydra.main(config_path=str(CONF_DIR), config_name="preview", version_base="1.3")
def main(cfg: DictConfig) -> Path:
    """Compose data + augment configs, augment the first catalog images, write the grid PNG."""
    # Only the geometry of the contract is used: the preview shows uint8 images before normalisation.
    contract = Preprocess(
        input_size=cfg.input_size,
        resize_size=cfg.resize_size,
        interpolation=cfg.interpolation,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
    )
    manifest = load_manifest(cfg.data)
    scenes = cfg.augment.get("scene_photos")
    if scenes is not None:  # the composites are previewed in the training split's store photos, as trained
        scenes = ScenePhotos.from_manifest(
            manifest, {}, side=scenes.side, max_pixels=cfg.max_pixels, cache_size=scenes.cache_size
        )
    augment = build_augment(cfg.augment, contract.input_size, contract.resize_and_crop(), seed=cfg.seed, scenes=scenes)
    paths = preview_paths(manifest, cfg.n_images)
    grid = make_preview_grid(paths, augment, cfg.n_augmented, cfg.seed, max_pixels=cfg.max_pixels)
    out = save_grid_png(grid, cfg.output)
    log.info("augmentation preview (%d images x %d versions): %s", len(paths), cfg.n_augmented, out)
    return out


if __name__ == "__main__":
    from snapsearch.utils.resolvers import register_resolvers

    register_resolvers()
    main()
