"""Augmentation pipelines: configs compose and build, outputs keep the contract, the pipeline is
reproducible and configurable by name, the custom transforms do what they claim, and the preview grid."""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from snapsearch.data.augment import AugmentConfigError, build_augment, build_train_transform
from snapsearch.data.preprocess import Preprocess
from snapsearch.data.transforms import BackgroundClutter, SpecularGlare
from snapsearch.utils.resolvers import register_resolvers

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
AUGMENT_CONFIGS = sorted(p.stem for p in (CONF_DIR / "augment").glob("*.yaml"))
INPUT_SIZE = 64
CONTRACT = Preprocess(
    input_size=INPUT_SIZE,
    resize_size=72,
    interpolation="bilinear",
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
)
# The synthetic catalog image: a coloured product on a white 300x400 canvas.
PRODUCT = (slice(80, 220), slice(120, 280))
PRODUCT_INTERIOR = (slice(90, 210), slice(130, 270))


def catalog_image() -> np.ndarray:
    image = np.full((300, 400, 3), 255, dtype=np.uint8)
    image[PRODUCT] = (200, 30, 40)
    image[100:120, 150:250] = (250, 250, 250)  # white print on the product: not background
    return image


def augment_config(name: str, *overrides: str) -> DictConfig:
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="preview", overrides=[f"augment={name}", *overrides])
    return cfg.augment


def step_types(pipeline: A.Compose) -> list[type]:
    return [type(t) for t in pipeline.transforms]


@pytest.mark.parametrize("name", AUGMENT_CONFIGS)
def test_every_augment_config_composes_and_builds_without_warnings(name: str) -> None:
    cfg = augment_config(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # deprecated albumentations arguments warn: fail on them
        pipeline = build_augment(cfg, INPUT_SIZE, CONTRACT.resize_and_crop(), seed=0)
        out = pipeline(image=catalog_image())["image"]
    assert out.shape == (INPUT_SIZE, INPUT_SIZE, 3)
    assert out.dtype == np.uint8
    assert A.HorizontalFlip not in step_types(pipeline)  # products carry text: never flipped


def test_expected_configs_exist() -> None:
    assert {"user_photo", "catalog", "none"} <= set(AUGMENT_CONFIGS)


def test_none_is_exactly_the_eval_geometry() -> None:
    pipeline = build_augment(augment_config("none"), INPUT_SIZE, CONTRACT.resize_and_crop(), seed=0)
    image = catalog_image()
    expected = A.Compose(CONTRACT.resize_and_crop())(image=image)["image"]
    assert step_types(pipeline) == [A.SmallestMaxSize, A.CenterCrop]
    np.testing.assert_array_equal(pipeline(image=image)["image"], expected)


def test_user_photo_changes_a_catalog_image() -> None:
    pipeline = build_augment(augment_config("user_photo"), INPUT_SIZE, CONTRACT.resize_and_crop(), seed=0)
    image = catalog_image()
    plain = A.Compose(CONTRACT.resize_and_crop())(image=image)["image"].astype(np.int16)
    for _ in range(5):
        out = pipeline(image=image)["image"]
        assert np.abs(out.astype(np.int16) - plain).mean() > 1.0


def test_background_clutter_replaces_the_white_background_and_keeps_the_product() -> None:
    image = catalog_image()
    out = BackgroundClutter(p=1.0)(image=image)["image"]
    background = np.ones(image.shape[:2], dtype=bool)
    background[PRODUCT] = False
    changed = (out != image).any(axis=2)
    assert changed[background].mean() > 0.9
    np.testing.assert_array_equal(out[PRODUCT_INTERIOR], image[PRODUCT_INTERIOR])


def test_background_clutter_leaves_images_not_on_white_alone() -> None:
    photo = np.random.default_rng(0).integers(0, 200, size=(120, 160, 3), dtype=np.uint8)
    np.testing.assert_array_equal(BackgroundClutter(p=1.0)(image=photo)["image"], photo)


def test_background_clutter_zoom_out_shrinks_the_product() -> None:
    image = catalog_image()
    out = BackgroundClutter(product_scale_range=(0.5, 0.5), p=1.0)(image=image)["image"]
    assert out.shape == image.shape
    product_pixels = (np.abs(out.astype(np.int16) - (200, 30, 40)).max(axis=2) < 3).sum()
    assert product_pixels < 0.35 * (image[PRODUCT].size // 3)


def test_specular_glare_only_brightens() -> None:
    image = catalog_image()
    image[:] = (90, 60, 30)
    out = SpecularGlare(intensity_range=(0.8, 0.8), hardness_range=(2.0, 2.0), p=1.0)(image=image)["image"]
    assert (out >= image).all()
    assert (out > image).any()


def test_unknown_name_in_order_is_a_clear_error() -> None:
    cfg = augment_config("user_photo", "augment.order=[crop,jpeg,sparkles]")
    with pytest.raises(AugmentConfigError, match=r"\['sparkles'\].*valid names are.*'crop'.*'jpeg'"):
        build_augment(cfg, INPUT_SIZE, CONTRACT.resize_and_crop())


def test_crop_without_parameters_is_a_clear_error() -> None:
    cfg = OmegaConf.create({"order": ["crop"], "transforms": {}})
    with pytest.raises(AugmentConfigError, match=r"augment\.crop"):
        build_augment(cfg, INPUT_SIZE, CONTRACT.resize_and_crop())


def test_overriding_order_removes_transforms() -> None:
    cfg = augment_config("user_photo", "augment.order=[crop,jpeg]")
    pipeline = build_augment(cfg, INPUT_SIZE, CONTRACT.resize_and_crop())
    assert step_types(pipeline) == [A.RandomResizedCrop, A.ImageCompression]
    assert pipeline.transforms[0].size == (INPUT_SIZE, INPUT_SIZE)


def test_order_without_crop_ends_with_the_eval_geometry() -> None:
    cfg = augment_config("user_photo", "augment.order=[jpeg]", "augment.transforms.jpeg.p=1.0")
    pipeline = build_augment(cfg, INPUT_SIZE, CONTRACT.resize_and_crop())
    assert step_types(pipeline) == [A.ImageCompression, A.SmallestMaxSize, A.CenterCrop]
    assert pipeline(image=catalog_image())["image"].shape == (INPUT_SIZE, INPUT_SIZE, 3)


def test_cli_style_override_reaches_the_transform() -> None:
    cfg = augment_config("user_photo", "augment.transforms.motion_blur.p=0.125")
    pipeline = build_augment(cfg, INPUT_SIZE, CONTRACT.resize_and_crop())
    (blur,) = [t for t in pipeline.transforms if isinstance(t, A.MotionBlur)]
    assert blur.p == 0.125


def _run(pipeline: A.Compose, n: int = 4) -> list[np.ndarray]:
    return [pipeline(image=catalog_image())["image"] for _ in range(n)]


def test_fixed_seed_is_reproducible() -> None:
    cfg = augment_config("user_photo")
    first = _run(build_augment(cfg, INPUT_SIZE, CONTRACT.resize_and_crop(), seed=123))
    again = _run(build_augment(cfg, INPUT_SIZE, CONTRACT.resize_and_crop(), seed=123))
    other = _run(build_augment(cfg, INPUT_SIZE, CONTRACT.resize_and_crop(), seed=124))
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, c) for a, c in zip(first, other, strict=True))


def test_global_random_seed_makes_unseeded_pipelines_reproducible() -> None:
    cfg = augment_config("user_photo")
    random.seed(7)
    first = _run(build_augment(cfg, INPUT_SIZE, CONTRACT.resize_and_crop()))
    random.seed(7)
    again = _run(build_augment(cfg, INPUT_SIZE, CONTRACT.resize_and_crop()))
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)


def test_train_transform_is_normalised_with_the_contract() -> None:
    image = catalog_image()
    out = build_train_transform(augment_config("none"), CONTRACT, seed=0)(image=image)["image"]
    assert isinstance(out, torch.Tensor)
    assert out.dtype == torch.float32
    assert tuple(out.shape) == (3, INPUT_SIZE, INPUT_SIZE)
    geometry = A.Compose(CONTRACT.resize_and_crop())(image=image)["image"].astype(np.float32) / 255.0
    expected = (geometry - np.array(CONTRACT.mean, np.float32)) / np.array(CONTRACT.std, np.float32)
    np.testing.assert_allclose(out.numpy(), expected.transpose(2, 0, 1), atol=1e-5)

    augmented = build_train_transform(augment_config("user_photo"), CONTRACT, seed=0)(image=image)["image"]
    assert tuple(augmented.shape) == (3, INPUT_SIZE, INPUT_SIZE)
    assert augmented.dtype == torch.float32


def test_preview_grid_shape_and_png(tmp_path: Path) -> None:
    from snapsearch.data import preview

    paths = []
    for i, size in enumerate([(300, 400), (200, 120)]):
        image = np.full((*size, 3), 255, dtype=np.uint8)
        image[size[0] // 4 : size[0] // 2, size[1] // 4 : size[1] // 2] = (30 * i, 120, 200)
        path = tmp_path / f"img{i}.png"
        cv2.imwrite(str(path), image)
        paths.append(str(path))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    paths.append(str(broken))

    pipeline = build_augment(augment_config("user_photo"), INPUT_SIZE, CONTRACT.resize_and_crop())
    n_augmented = 3
    grid = preview.make_preview_grid(paths, pipeline, n_augmented, seed=0)
    gap = max(1, round(INPUT_SIZE * preview._GAP_FRACTION))
    header = max(1, round(INPUT_SIZE * preview._HEADER_FRACTION))
    n_rows, n_cols = 2, 1 + n_augmented  # the broken file is skipped
    assert grid.dtype == np.uint8
    assert grid.shape == (header + n_rows * (INPUT_SIZE + gap), n_cols * (INPUT_SIZE + gap) - gap, 3)
    again = preview.make_preview_grid(paths, pipeline, n_augmented, seed=0)
    np.testing.assert_array_equal(grid, again)

    out = preview.save_grid_png(grid, tmp_path / "sub" / "grid.png")
    read_back = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(read_back, grid)
    assert [p.name for p in out.parent.iterdir()] == ["grid.png"]  # no temporary file left behind


def test_preview_grid_rejects_a_normalising_pipeline(tmp_path: Path) -> None:
    from snapsearch.data import preview

    path = tmp_path / "img.png"
    cv2.imwrite(str(path), catalog_image())
    train = build_train_transform(augment_config("catalog"), CONTRACT, seed=0)
    with pytest.raises(TypeError, match="uint8"):
        preview.make_preview_grid([str(path)], train, 1, seed=0)
