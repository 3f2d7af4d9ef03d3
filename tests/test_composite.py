"""Catalog images composited into store photos: the packshot mask, what is and is not composited, the
background rule (another product's training-split photo, never a validation or test photo), the builder
without scene photos, and the preview."""

from __future__ import annotations

import logging
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import pandas as pd
import pytest

from snapsearch.data.augment import build_augment
from snapsearch.data.transforms import PackshotMask, SceneComposite, ScenePhotos
from tests.test_augment import CONTRACT, INPUT_SIZE, PRODUCT, PRODUCT_INTERIOR, augment_config, catalog_image

RED = np.array((200, 30, 40))
# Flat scene photos, one colour per product: a composite's background tells which photo it came from.
SCENE_COLOURS = {0: (20, 160, 60), 1: (40, 60, 170), 2: (150, 120, 20)}


def _near(image: np.ndarray, colour, tol: int = 12) -> np.ndarray:
    return np.abs(image.astype(np.int16) - np.asarray(colour)).max(axis=2) <= tol


@pytest.fixture()
def scenes(tmp_path: Path) -> ScenePhotos:
    paths, products = [], []
    for product, colour in SCENE_COLOURS.items():
        for i in range(2):
            path = tmp_path / f"scene_{product}_{i}.png"
            cv2.imwrite(str(path), np.full((240, 320, 3), colour[::-1], dtype=np.uint8))  # BGR on disk
            paths.append(str(path))
            products.append(product)
    return ScenePhotos(paths, products, side=240, max_pixels=10**8, cache_size=4)


def _composite(**overrides) -> SceneComposite:
    plain = {
        "shadow_probability": 0.0,
        "pile_probability": 0.0,
        "occlusion_probability": 0.0,
        "exposure_range": (1.0, 1.0),
        "tint_range": (0.0, 0.0),
        "light_gradient_range": (0.0, 0.0),
        "p": 1.0,
    }
    return SceneComposite(**{**plain, **overrides})


def test_mask_finds_the_studio_white_and_keeps_white_print_on_the_product() -> None:
    image = catalog_image()
    background = PackshotMask()(image)
    assert background is not None and background.shape == image.shape[:2]
    outside = np.ones(image.shape[:2], dtype=bool)
    outside[PRODUCT] = False
    assert background[outside].all()
    assert not background[PRODUCT_INTERIOR].any()  # the white print at rows 100-120 is product, not background
    photo = np.random.default_rng(0).integers(0, 200, size=(120, 160, 3), dtype=np.uint8)
    assert PackshotMask()(photo) is None  # no plain background: nothing to cut out


def test_catalog_image_lands_in_another_products_scene(scenes: ScenePhotos) -> None:
    step = _composite(scenes=scenes, rotate_range=(0.0, 0.0))
    pipeline = A.Compose([step], seed=0)
    for _ in range(12):
        out = pipeline(image=catalog_image(), domain="catalog", product=1)["image"]
        assert min(out.shape[:2]) == step.canvas_side
        red, white = _near(out, RED).sum(), (out >= 245).all(axis=2).sum()
        assert red > 0.03 * out.shape[0] * out.shape[1]  # the product is there
        assert white < 0.2 * red  # the studio white is gone: what is left is the print on the product (10%)
        assert not _near(out, SCENE_COLOURS[1]).any()  # never a photo of its own product
        assert _near(out, SCENE_COLOURS[0]).any() or _near(out, SCENE_COLOURS[2]).any()


def test_photos_pass_through_and_catalog_images_without_a_white_background_become_a_card(
    scenes: ScenePhotos,
) -> None:
    pipeline = A.Compose([_composite(scenes=scenes)], seed=0)
    photo = np.random.default_rng(1).integers(0, 200, size=(120, 160, 3), dtype=np.uint8)
    np.testing.assert_array_equal(pipeline(image=photo, domain="query", product=0)["image"], photo)
    np.testing.assert_array_equal(pipeline(image=photo)["image"], photo)  # no domain: only packshots change
    full_bleed = np.full((150, 150, 3), (200, 30, 40), dtype=np.uint8)
    out = pipeline(image=full_bleed, domain="catalog", product=0)["image"]
    assert _near(out, RED).mean() > 0.05 and _near(out, SCENE_COLOURS[0]).sum() == 0
    assert (_near(out, SCENE_COLOURS[1]) | _near(out, SCENE_COLOURS[2])).mean() > 0.1  # placed into a scene


def test_occluders_and_piles_use_other_products_content(scenes: ScenePhotos) -> None:
    step = _composite(scenes=scenes, occlusion_probability=1.0, pile_probability=1.0, shadow_probability=1.0)
    pipeline = A.Compose([step], seed=3)
    for _ in range(8):
        out = pipeline(image=catalog_image(), domain="catalog", product=2)["image"]
        assert not _near(out, SCENE_COLOURS[2]).any()
        assert _near(out, RED).mean() > 0.02


def test_scene_photos_are_the_training_splits_photos_only() -> None:
    manifest = pd.DataFrame(
        {
            "path": ["t_photo.jpg", "v_photo.jpg", "x_photo.jpg", "t_pack.jpg"],
            "product_id": ["a", "b", "c", "a"],
            "domain": ["query", "query", "query", "catalog"],
            "split": ["train", "val", "test", "train"],
        }
    )
    scenes = ScenePhotos.from_manifest(manifest, {"a": 0, "b": 1, "c": 2}, side=64, max_pixels=10**8, cache_size=1)
    assert scenes.paths == ["t_photo.jpg"] and scenes.products.tolist() == [0]
    assert scenes.choose(0.5, product=0) is None  # its own product's photo is never a background


def test_builder_leaves_compositing_out_without_scene_photos(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        pipeline = build_augment(augment_config("user_photo"), INPUT_SIZE, CONTRACT.resize_and_crop(), seed=0)
    assert not any(isinstance(t, SceneComposite) for t in pipeline.transforms)
    assert "scene_photos" in caplog.text


def test_composites_are_in_the_preview(scenes: ScenePhotos, tmp_path: Path) -> None:
    from snapsearch.data import preview

    path = tmp_path / "pack.png"
    cv2.imwrite(str(path), catalog_image()[..., ::-1])
    cfg = augment_config("user_photo", "augment.transforms.composite.p=1.0")
    pipeline = build_augment(cfg, INPUT_SIZE, CONTRACT.resize_and_crop(), seed=0, scenes=scenes)
    assert isinstance(pipeline.transforms[0], SceneComposite)
    grid = preview.make_preview_grid([str(path)], pipeline, 3, seed=0)
    scene_pixels = sum(_near(grid, c, tol=40).sum() for c in SCENE_COLOURS.values())
    assert scene_pixels > 0.05 * INPUT_SIZE * INPUT_SIZE  # the scenes show in the augmented tiles


def test_bulk_display_packs_small_copies_over_the_whole_frame(scenes: ScenePhotos) -> None:
    """Loose produce is photographed in bulk: many small copies, none of them the catalog's one large view."""
    step = _composite(scenes=scenes, bulk_probability=1.0, bulk_scale_range=(0.15, 0.2), bulk_spacing=1.4)
    pipeline = A.Compose([step], seed=5)
    for _ in range(6):
        out = pipeline(image=catalog_image(), domain="catalog", product=0)["image"]
        red = _near(out, RED, tol=40).astype(np.uint8)
        n_copies = cv2.connectedComponents(red)[0] - 1
        assert n_copies >= 15  # spaced apart (spacing 1.4), each copy is its own blob
        assert red.mean() > 0.15  # spread over the frame, not one product in the middle
        assert not _near(out, SCENE_COLOURS[0]).any()  # still never a photo of its own product
    with pytest.raises(ValueError, match="bulk_spacing"):
        SceneComposite(bulk_spacing=0.0)
