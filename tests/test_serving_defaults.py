"""What a bundle carries from its export: the default strategy chosen on validation photos (never test), the
conformal threshold and the rejection thresholds; search.py uses them without the dataset, an explicit
``cascade.default`` overrides, and an older bundle without them still works (calibrating, with a hint)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from snapsearch.data.dataset import LabelMaps
from snapsearch.deploy.serving import evaluated_rejection, serving_calibration
from snapsearch.retrieval import Conformal
from snapsearch.runtime.bundle import BUNDLE_FILE, read_bundle
from snapsearch.search import sources
from snapsearch.search.calibration import choose_default
from snapsearch.search.cascade import Cascade
from snapsearch.search.config import cascade_from_config
from snapsearch.search.task import run_search
from snapsearch.utils.layout import RunDir
from snapsearch.utils.resolvers import register_resolvers

from .conftest import CONF_DIR, run_manifest

register_resolvers()
RECORD_KEYS = ("default_strategy", "validation", "calibration")


def _compose(config_name: str, *overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


def _no_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any read of the source's manifest fails the test: the bundle must carry what it needs."""

    def refuse(*_args, **_kwargs):
        raise AssertionError("the dataset was read")

    monkeypatch.setattr(sources, "load_manifest", refuse)


def _old_bundle(smoke_bundle: Path, tmp_path: Path) -> Path:
    """The smoke bundle as an export before this record (bundle.json is not checksummed)."""
    copy = tmp_path / "old_bundle"
    shutil.copytree(smoke_bundle, copy)
    meta = json.loads((copy / BUNDLE_FILE).read_text())
    for key in RECORD_KEYS:
        meta.pop(key)
    (copy / BUNDLE_FILE).write_text(json.dumps(meta))
    return copy


def test_bundle_records_the_validation_choice(smoke_bundle: Path, smoke_run: Path) -> None:
    meta = read_bundle(smoke_bundle)
    r1 = meta["validation"]["R@1"]
    cascade = Cascade.from_bundle(smoke_bundle)
    assert set(r1) == set(cascade.searchable()) >= {"global", "top1", "fusion", "conformal"}
    assert r1[meta["default_strategy"]] == max(r1.values())
    scores = {n: {"R@1": r1[n], "R@5": meta["validation"]["R@5"][n]} for n in r1}
    assert meta["default_strategy"] == choose_default(scores)
    m = run_manifest(smoke_run)
    labels = LabelMaps.load(smoke_run / "labels.json")
    val = sources.calibration_photos(m, labels)
    assert meta["validation"]["split"] == "val" and meta["validation"]["n_photos"] == len(val)
    conformal = meta["calibration"]["conformal"]["conformal"]
    assert conformal["coverage"] == 0.95 and conformal["n_calibration"] == len(val)
    assert meta["calibration"]["rejection"] == {}  # the smoke run has no evaluation with a rejection study


def test_default_is_chosen_on_validation_photos_only(
    smoke_bundle: Path, smoke_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The export's serving step reads validation photos only (a spy on the models' batched pass), and gives
    the record the bundle carries."""
    seen: list[pd.DataFrame] = []
    infer = Cascade.infer_frame

    def spy(self, frame, *args, **kwargs):
        seen.append(frame)
        return infer(self, frame, *args, **kwargs)

    monkeypatch.setattr(Cascade, "infer_frame", spy)
    cfg = _compose("export", f"run_dir={smoke_run}", "num_workers=0")
    m = run_manifest(smoke_run)
    labels = LabelMaps.load(smoke_run / "labels.json")
    data = OmegaConf.load(smoke_run / "config.yaml").data
    calibrate = serving_calibration(cfg, RunDir(smoke_run), m, labels, data.max_image_pixels, data.draft_decode)
    record = calibrate(smoke_bundle)
    assert len(seen) == 1 and set(seen[0]["split"]) == {"val"} and set(seen[0]["domain"]) == {"query"}
    test_ids = set(m[(m["domain"] == "query") & (m["split"] == "test")]["image_id"])
    assert test_ids and not test_ids & set(seen[0]["image_id"])
    meta = read_bundle(smoke_bundle)
    assert record["default_strategy"] == meta["default_strategy"]
    assert record["validation"]["R@1"] == pytest.approx(meta["validation"]["R@1"])


def test_search_uses_the_bundles_default_and_calibration_without_the_dataset(
    smoke_bundle: Path, query_photo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    meta = read_bundle(smoke_bundle)
    _no_dataset(monkeypatch)
    cfg = _compose("search", f"bundle={smoke_bundle}", f"image={query_photo}", "k=3")
    [result] = run_search(cfg)
    assert result.route.strategy == meta["default_strategy"]
    cascade = cascade_from_config(cfg)
    conformal = cascade.strategies["conformal"]
    assert isinstance(conformal, Conformal)
    assert conformal.threshold == meta["calibration"]["conformal"]["conformal"]["threshold"]
    assert cascade.search(query_photo, k=3, strategy="conformal").products
    # an explicit cascade.default overrides the bundle's choice
    other = "global" if meta["default_strategy"] != "global" else "fusion"
    cfg = _compose("search", f"bundle={smoke_bundle}", f"image={query_photo}", "k=3", f"cascade.default={other}")
    assert run_search(cfg)[0].route.strategy == other


def test_bundles_rejection_thresholds_apply_unless_overridden(smoke_bundle: Path, tmp_path: Path) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(smoke_bundle, copy)
    meta = json.loads((copy / BUNDLE_FILE).read_text())
    meta["calibration"]["rejection"] = {"top1": 2.0, "gone": 0.5}  # cosine never reaches 2
    (copy / BUNDLE_FILE).write_text(json.dumps(meta))
    assert Cascade.from_bundle(copy).rejection == {"top1": 2.0}
    assert Cascade.from_bundle(copy, rejection={}).rejection == {}


def test_old_bundle_calibrates_at_start_with_a_hint(
    smoke_bundle: Path, query_photo: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = _old_bundle(smoke_bundle, tmp_path)
    cfg = _compose("search", f"bundle={old}", f"image={query_photo}", "k=3")
    with caplog.at_level(logging.WARNING, logger="snapsearch.search.sources"):
        cascade = cascade_from_config(cfg)
    assert "Re-export it" in caplog.text
    assert cascade.default_strategy == "top1" and cascade.rejection == {}
    threshold = cascade.strategies["conformal"].threshold  # type: ignore[attr-defined]
    assert threshold == pytest.approx(read_bundle(smoke_bundle)["calibration"]["conformal"]["conformal"]["threshold"])
    assert run_search(cfg)[0].route.strategy == "top1"


def test_rejection_thresholds_come_from_the_newest_matching_evaluation(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    for stage in ("classifier", "embedder"):
        (run.stage(stage)).mkdir(parents=True)
        (run.stage(stage) / "model.json").write_text("{}")
    assert evaluated_rejection(run, ["top1"]) == ({}, None)

    def report(name: str, **fields) -> Path:
        folder = run.evaluations / name
        folder.mkdir(parents=True)
        (folder / "report.json").write_text(json.dumps(fields))
        return folder

    strategies = {"top1": {"threshold": 0.6}, "oracle": {"threshold": 0.1}}
    good = report("a", protocol="catalog", embedder="trained", rejection={"strategies": strategies})
    report("b", protocol="catalog", embedder="generic", rejection={"strategies": {"top1": {"threshold": 0.9}}})
    assert evaluated_rejection(run, ["top1", "global"]) == ({"top1": 0.6}, str(good))
