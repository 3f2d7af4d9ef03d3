"""The unseen-products protocol on the Grocery Store data: a fixed, stratified split, and no held-out product
reaching training, model selection or calibration (while evaluation still queries and finds them)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from snapsearch.data.datamodule import SnapDataModule
from snapsearch.data.manifest import category_at
from snapsearch.data.preprocess import Preprocess
from snapsearch.data.protocols import answerable, trained_photos
from snapsearch.data.sources import load_manifest
from snapsearch.data.unseen import choose_selection_fold, choose_unseen_products
from snapsearch.search.sources import calibration_photos
from snapsearch.utils.resolvers import register_resolvers

from .conftest import CONF_DIR

FRACTION = 0.33


def _train_config(grocery: Path, *overrides: str) -> DictConfig:
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(
            config_name="train",
            overrides=[
                "experiment=efficientnet_lite0",
                f"data.manifest.root={grocery}",
                f"data.unseen_products.fraction={FRACTION}",
                *overrides,
            ],
        )


@pytest.fixture(scope="module")
def manifest(grocery: Path) -> pd.DataFrame:
    return load_manifest(_train_config(grocery).data)


def test_split_is_stratified_fixed_and_keeps_every_category_routable(manifest: pd.DataFrame) -> None:
    unseen = choose_unseen_products(manifest, 2, FRACTION, seed=0)
    assert unseen == choose_unseen_products(manifest, 2, FRACTION, seed=0)  # fixed
    assert unseen != choose_unseen_products(manifest, 2, FRACTION, seed=1)
    products = manifest.drop_duplicates("product_id").set_index("product_id")["category"]
    groups = category_at(products, 1)
    for group in groups.unique():
        members = products.index[groups == group]
        held = members.isin(unseen).sum()
        assert 0 < held <= round(FRACTION * len(members))  # about a third of every group
    coarse = category_at(products, 2)
    seen = coarse[~coarse.index.isin(unseen)]
    assert set(seen) == set(coarse)  # every coarse category keeps a seen product for the gate to learn
    assert 15 <= len(unseen) <= 27  # a third at most; single-product categories cannot give one up


@pytest.mark.parametrize("mode", ["all", "photos"])
def test_no_held_out_product_reaches_training_selection_or_calibration(grocery: Path, mode: str) -> None:
    """mode=all: nothing of a held-out product is trained, selected or calibrated on; mode=photos: only its
    catalog images are (a shop's new product), never a photo of it, nor any validation or test photo as a
    composite's background."""
    cfg = _train_config(grocery, f"data.unseen_products.mode={mode}")
    dm = SnapDataModule(cfg.data, cfg.augment, cfg.seed)
    unseen = set(dm.labels.unseen_products)
    assert unseen and unseen <= set(dm.labels.products)  # they keep their index: evaluation scores them
    assert dm.labels.unseen_mode == mode
    full = load_manifest(cfg.data)
    assert sorted(unseen) == choose_unseen_products(full, 2, FRACTION, seed=0)  # the same products in either mode
    for name in ("val", "test"):  # selection and testing: never a held-out product's photo
        assert not set(dm.frame(name)["product_id"]) & unseen, name
    train, catalog = dm.frame("train"), dm.frame("catalog")
    assert not set(train.loc[train["domain"] == "query", "product_id"]) & unseen  # never their photos
    trained_catalog = set(train.loc[train["domain"] == "catalog", "product_id"]) & unseen
    assert trained_catalog == (unseen if mode == "photos" else set())  # their packshots: in photos mode only
    assert (set(catalog["product_id"]) & unseen) == trained_catalog  # the validation pool likewise
    # the loaders the stages train on: the gate's, and the M-per-product one of the embedder / multitask
    dm.attach_preprocess(Preprocess(32, 36, "bilinear", (0.5,) * 3, (0.5,) * 3))
    held = {dm.labels.products.index(p) for p in unseen}
    for loader in (dm.train_dataloader(), dm.embedder_train_dataloader(4, 2)):
        ds = loader.dataset
        photo_products = {int(p) for p, d in zip(ds.products, ds.domains, strict=True) if d == "query"}
        assert not photo_products & held
        assert ({int(p) for p in ds.products} & held) == (held if mode == "photos" else set())
    # composites' backgrounds: training-split photos of products the run may see, nothing else
    scenes = dm.scene_photos()
    assert (
        scenes is not None
        and len(scenes)
        == ((full["domain"] == "query") & (full["split"] == "train")).sum()
        - (full["product_id"].isin(unseen) & (full["domain"] == "query") & (full["split"] == "train")).sum()
    )
    allowed = set(full.loc[(full["domain"] == "query") & (full["split"] == "train"), "path"])
    assert set(scenes.paths) <= allowed and not held & set(scenes.products.tolist())

    assert not set(calibration_photos(full, dm.labels)["product_id"]) & unseen  # conformal sets
    queries, pool, calib = answerable(full, "catalog", dm.labels)
    assert not set(calib["product_id"]) & unseen  # rejection thresholds
    assert unseen <= set(queries["product_id"]) and unseen <= set(pool["product_id"])  # queried, findable


def test_selection_fold_withholds_seen_products_training_photos_and_keeps_their_validation_photos(
    grocery: Path,
) -> None:
    """The fold that selects for photo-less behaviour: seen products only (adding it leaves the held-out
    products as they were), their training photos out, their catalog images and validation photos in."""
    cfg = _train_config(grocery, "data.unseen_products.mode=photos", "data.unseen_products.selection_fold=0.2")
    dm = SnapDataModule(cfg.data, cfg.augment, cfg.seed)
    full = load_manifest(cfg.data)
    unseen, fold = set(dm.labels.unseen_products), set(dm.labels.selection_fold)
    assert sorted(unseen) == choose_unseen_products(full, 2, FRACTION, seed=0)  # the fold changes nothing there
    assert fold and not fold & unseen
    assert sorted(fold) == sorted(dm.labels.products[i] for i in dm.labels.fold_indices())
    train = dm.frame("train")
    assert not set(train.loc[train["domain"] == "query", "product_id"]) & fold  # no training photo of the fold
    assert fold <= set(train.loc[train["domain"] == "catalog", "product_id"])  # their catalog images train
    # export's int8 calibration photos: exactly the shopper photos the run trained on
    assert set(trained_photos(full, dm.labels)["path"]) == set(train.loc[train["domain"] == "query", "path"])
    assert fold <= set(dm.frame("val")["product_id"])  # selection reads their validation photos
    assert not set(dm.frame("val")["product_id"]) & unseen
    coarse = category_at(full.drop_duplicates("product_id").set_index("product_id")["category"], 2)
    with_photos = coarse[~coarse.index.isin(unseen | fold)]
    assert set(with_photos) == set(coarse)  # every partition keeps a product with training photos


def test_selection_fold_needs_the_photos_mode(grocery: Path) -> None:
    cfg = _train_config(grocery, "data.unseen_products.mode=all", "data.unseen_products.selection_fold=0.2")
    with pytest.raises(ValueError, match="needs mode=photos"):
        SnapDataModule(cfg.data, cfg.augment, cfg.seed)


def test_a_fold_that_may_take_a_partitions_last_photographed_product_reaches_loose_produce(grocery: Path) -> None:
    """On Grocery every fruit and vegetable partition keeps one photographed product once the held-out products
    are drawn, so the default fold holds packs only; ``fold_keeps_photographed=false`` draws produce too (a
    partition may then be known from catalog images alone) and still never a held-out product."""
    overrides = ("data.unseen_products.mode=photos", "data.unseen_products.selection_fold=0.2")
    full = load_manifest(_train_config(grocery, *overrides).data)
    unseen = choose_unseen_products(full, 2, FRACTION, seed=0)
    top = category_at(full.drop_duplicates("product_id").set_index("product_id")["category"], 1)
    strict = choose_selection_fold(full, 2, 0.2, 0, unseen)
    relaxed = choose_selection_fold(full, 2, 0.2, 0, unseen, keep_photographed=False)
    assert set(top[strict]) == {"Packages"}
    assert set(top[relaxed]) == {"Fruit", "Packages", "Vegetables"} and not set(relaxed) & set(unseen)
    cfg = _train_config(grocery, *overrides, "data.unseen_products.fold_keeps_photographed=false")
    dm = SnapDataModule(cfg.data, cfg.augment, cfg.seed)
    assert dm.labels.selection_fold == relaxed
    train = dm.frame("train")
    assert not set(train.loc[train["domain"] == "query", "product_id"]) & set(relaxed)
