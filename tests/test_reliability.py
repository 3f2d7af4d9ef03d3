"""Bad input and hostile environments, in-process: atomic writes, unwritable folders, reproducible draws,
manifests the cascade cannot fully serve, and config combinations that must be refused up front."""

from __future__ import annotations

import errno
import logging
import random
import stat
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from pytorch_metric_learning.samplers import MPerClassSampler
from torch.utils.data import RandomSampler, WeightedRandomSampler

from snapsearch.data.augment import build_train_transform
from snapsearch.data.datamodule import SnapDataModule
from snapsearch.data.dataset import LabelMaps, ManifestDataset
from snapsearch.data.draws import SeededDraws
from snapsearch.data.preprocess import Preprocess
from snapsearch.data.protocols import answerable
from snapsearch.data.sources.synthetic import make_synthetic_shop
from snapsearch.training.task import check_config
from snapsearch.utils.atomic import atomic_save, atomic_write_text, ensure_writable_dir

from .conftest import CONF_DIR


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return make_synthetic_shop(tmp_path_factory.mktemp("shop"), n_categories=3, products_per_category=3)


# --- atomic artifacts -------------------------------------------------------------------------------


def test_failed_write_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    atomic_write_text(target, "old, valid")

    def disk_full(tmp: Path) -> None:
        tmp.write_text("half of the new")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_save(target, disk_full)
    assert target.read_text() == "old, valid"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]  # no temporary left behind


def test_published_files_get_the_usual_permissions(tmp_path: Path) -> None:
    """mkstemp creates 0600 files; artifacts meant to be shared must follow the umask like any file."""
    atomic_write_text(tmp_path / "a.txt", "x")
    with open(tmp_path / "b.txt", "w") as fh:
        fh.write("x")
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == stat.S_IMODE((tmp_path / "b.txt").stat().st_mode)


# --- unwritable output folders ---------------------------------------------------------------------------


def test_output_dir_under_a_file_is_refused_by_name(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    with pytest.raises(OSError, match=r"run directory .*not_a_folder/run is not writable"):
        ensure_writable_dir(blocker / "run", "run directory")


def test_read_only_output_dir_is_refused_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read-only mount (EROFS) fails the write probe; simulated because tests may run as root, which
    ignores permission bits."""

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    with pytest.raises(OSError, match=r"evaluation output folder .* is not writable \(Read-only file system\)"):
        ensure_writable_dir(tmp_path / "evaluations", "evaluation output folder")


# --- reproducible training draws -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: RandomSampler(range(50)),
        lambda: WeightedRandomSampler(torch.linspace(0.1, 1.0, 50, dtype=torch.double), 50),
        lambda: MPerClassSampler(np.repeat(np.arange(10), 5), 4, batch_size=16, length_before_new_iter=50),
    ],
    ids=["random", "weighted", "m_per_class"],
)
def test_seeded_draws_replay_per_epoch_without_touching_global_rngs(make) -> None:
    draws = SeededDraws(make(), seed=3)
    torch_state, np_state, py_state = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    first = list(draws)
    assert torch.get_rng_state().equal(torch_state) and np.array_equal(np.random.get_state()[1], np_state)
    assert random.getstate() == py_state
    torch.rand(7), np.random.rand(3), random.random()  # whatever else the process draws in between
    assert list(SeededDraws(make(), seed=3)) == first  # a fresh process resuming this epoch
    draws.set_epoch(1)
    second = list(draws)
    assert second != first and len({s for _, s in first + second}) == len(first + second)


def test_a_seeded_draw_fixes_the_augmentations(shop: pd.DataFrame) -> None:
    labels = LabelMaps.from_manifest(shop, partition_depth=2)
    contract = Preprocess(input_size=64, resize_size=72, interpolation="bilinear", mean=(0.5,) * 3, std=(0.5,) * 3)
    augment = OmegaConf.load(CONF_DIR / "augment" / "user_photo.yaml")
    ds = ManifestDataset(shop, labels, build_train_transform(augment, contract), max_pixels=10**8, draft_size=None)
    a, b, c = ds[(0, 11)]["image"], ds[(0, 11)]["image"], ds[(0, 12)]["image"]
    assert torch.equal(a, b) and not torch.equal(a, c)


# --- manifests the cascade cannot fully serve ---------------------------------------------------------


def _data_cfg(frame: pd.DataFrame, tmp_path: Path):
    path = tmp_path / "manifest.csv"
    frame.to_csv(path, index=False)
    cfg = OmegaConf.load(CONF_DIR / "data" / "manifest.yaml")
    cfg.manifest.path, cfg.partition_depth = str(path), 2
    return cfg


def test_gaps_in_the_data_are_counted_and_named(shop: pd.DataFrame, tmp_path: Path, caplog) -> None:
    cat0 = shop["category"].iloc[0]
    no_photos = (shop["category"] == cat0) & (shop["domain"] == "query") & (shop["split"] == "train")
    lonely = shop["product_id"].iloc[-1]
    frame = shop[~no_photos & ~((shop["product_id"] == lonely) & (shop["domain"] == "catalog"))]
    with caplog.at_level(logging.WARNING):
        SnapDataModule(_data_cfg(frame, tmp_path), OmegaConf.create({}), seed=0)
    assert f"1 categories have no training photos, so the classifier never learns to route to them: ['{cat0}']" in (
        caplog.text
    )
    assert "1 products have no catalog image" in caplog.text and lonely in caplog.text


def test_unscorable_queries_are_dropped_with_a_count(shop: pd.DataFrame, caplog) -> None:
    labels = LabelMaps.from_manifest(shop, partition_depth=2)
    lonely = shop["product_id"].iloc[-1]
    stranger = (
        shop[(shop["domain"] == "query") & (shop["split"] == "test")]
        .head(2)
        .assign(image_id=["x1", "x2"], category="Other/Unknown", product_id="new")
    )
    frame = pd.concat([shop[~((shop["product_id"] == lonely) & (shop["domain"] == "catalog"))], stranger])
    n_test = int(((shop["domain"] == "query") & (shop["split"] == "test")).sum())
    n_lonely = int(((shop["product_id"] == lonely) & (shop["split"] == "test")).sum())
    with caplog.at_level(logging.WARNING):
        queries, _, _ = answerable(frame.reset_index(drop=True), "catalog", labels)
    assert len(queries) == n_test - n_lonely and lonely not in set(queries["product_id"])
    assert f"dropping 2 of {n_test + 2} test queries: category or product unknown" in caplog.text
    assert f"dropping {n_lonely} of {n_test} test queries: their product has no image in the search pool" in (
        caplog.text
    )


# --- config combinations refused up front --------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.embedder.m_per_class=64"], "m_per_class=64 exceeds data.batch_size=16"),
        (["ckpt_path=last"], "also pass run_dir="),
        (["stages=[]"], "unknown or empty stages"),
    ],
)
def test_incompatible_configs_are_refused(overrides: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_config(_compose("experiment=smoke", *overrides))
