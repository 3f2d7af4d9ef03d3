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
from snapsearch.data.protocols import answerable
from snapsearch.data.sources import load_manifest
from snapsearch.data.unseen import choose_unseen_products
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


def test_no_held_out_product_reaches_training_selection_or_calibration(grocery: Path) -> None:
    cfg = _train_config(grocery)
    dm = SnapDataModule(cfg.data, cfg.augment, cfg.seed)
    unseen = set(dm.labels.unseen_products)
    assert unseen and unseen <= set(dm.labels.products)  # they keep their index: evaluation scores them
    for name in ("train", "val", "test", "catalog"):  # training, selection (val + its catalog pool), testing
        assert not set(dm.frame(name)["product_id"]) & unseen, name
    # the loaders the stages train on: the gate's, and the M-per-product one of the embedder / multitask
    dm.attach_preprocess(Preprocess(32, 36, "bilinear", (0.5,) * 3, (0.5,) * 3))
    trained = set(dm.train_dataloader().dataset.products) | set(dm.embedder_train_dataloader(4, 2).dataset.products)
    assert not trained & {dm.labels.products.index(p) for p in unseen}

    full = load_manifest(cfg.data)
    assert not set(calibration_photos(full, dm.labels)["product_id"]) & unseen  # conformal sets
    queries, pool, calib = answerable(full, "catalog", dm.labels)
    assert not set(calib["product_id"]) & unseen  # rejection thresholds
    assert unseen <= set(queries["product_id"]) and unseen <= set(pool["product_id"])  # queried, findable
