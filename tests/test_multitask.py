"""One trunk, two heads: the multitask stage trains, exports to one file with all its outputs, and evaluate /
export / search use it through the run directory with no special case."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
import torch

from snapsearch.data.dataset import LabelMaps
from snapsearch.models.multitask import MultiTaskNet
from snapsearch.runtime.batch import BatchIO
from snapsearch.runtime.bundle import read_bundle
from snapsearch.runtime.factory import run_runtime
from snapsearch.runtime.models import BundleRuntime, MultiTaskRuntime
from snapsearch.runtime.tempered import NoveltyTemperedRuntime
from snapsearch.search.cascade import Cascade
from snapsearch.search.novelty import NoveltyOptions
from snapsearch.utils.layout import MULTITASK_STAGES, RunDir

from .conftest import run_entry, run_manifest, run_train


@pytest.fixture(scope="module")
def multitask_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("multitask")
    # a quarter of the products without shopper photos (their catalog images composited into store photos): the
    # unseen-products protocol in a shop's mode, end to end, at no extra training
    unseen = ("data.unseen_products.fraction=0.25", "data.unseen_products.mode=photos")
    # the measures made for that mode, trained alongside: domain critics, the pretrained trunk as a teacher
    # (export must leave it behind), and a selection fold scored apart
    measures = ("multitask.domain_invariance.weight=0.1", "multitask.feature_preservation.weight=0.1",
                "multitask.feature_preservation.targets=[similarities,features]",
                "data.unseen_products.selection_fold=0.2")  # fmt: skip
    run_train(tmp, "experiment=smoke", "stages=[multitask]", "logger=csv", *unseen, *measures, f"run_dir={tmp / 'run'}")
    return tmp / "run"


@pytest.fixture(scope="module")
def multitask_bundle(multitask_run: Path) -> Path:
    out = multitask_run.parent / "bundle"
    run_entry("export.py", multitask_run.parent, f"run_dir={multitask_run}", f"output={out}", "verify.n_images=8")
    return out


def _batch(n: int = 4) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, 3, 64, 64)).astype(np.float32)


def test_forward_is_calibrated_heads_and_save_load_round_trips(tmp_path: Path) -> None:
    backbone = {"name": "test_efficientnet", "pretrained": False, "weights": None, "checkpoint": None,
                "drop_rate": 0.2, "input_size": 64}  # fmt: skip
    model, pre = MultiTaskNet.build(backbone, ["a", "b", "c"], embedding_dim=16, gem_p=3.0)
    model.eval().temperature.fill_(0.5)
    x = torch.from_numpy(_batch())
    with torch.inference_mode():
        logits, emb = model.heads(x)
        probs, emb2 = model(x)
    torch.testing.assert_close(probs, torch.softmax(logits / 0.5, -1))
    torch.testing.assert_close(emb, emb2)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(4))
    model.save(tmp_path, backbone=backbone, preprocess=pre)
    loaded, pre2 = MultiTaskNet.load(tmp_path)
    assert pre2 == pre and loaded.categories == ["a", "b", "c"] and float(loaded.temperature) == 0.5
    with torch.inference_mode():
        for a, b in zip(model(x), loaded(x), strict=True):
            torch.testing.assert_close(a, b)


def test_run_holds_one_calibrated_network_used_by_default(multitask_run: Path) -> None:
    run = RunDir(multitask_run)
    assert run.cascade_stages() == MULTITASK_STAGES
    assert not run.has_model("classifier") and not run.has_model("embedder")
    metrics = json.loads(run.metrics.read_text())
    assert {"multitask/val/joint", "multitask/test/acc", "multitask/test/ece", "multitask/temperature"} <= set(metrics)
    assert metrics["multitask/temperature"] != 1.0  # fitted on the validation photos
    assert (run.stage("multitask") / "confusion_matrix.png").is_file()
    logged = pd.concat([pd.read_csv(f) for f in multitask_run.glob("csv/*/metrics.csv")])
    critic_acc = logged["train/domain_critic_acc"].dropna()
    assert len(critic_acc) and critic_acc.between(0.0, 1.0).all()  # the domain critics trained with the heads
    preservation = logged["train/loss_preservation"].dropna()
    assert len(preservation) and preservation.between(0.0, 2.0).all()  # the teacher's term trained with them
    assert logged["val/fold/R@1"].notna().any() and logged["val/R@1"].notna().any()  # the fold scored apart
    assert json.loads(run.labels.read_text())["selection_fold"]
    runtime = run_runtime(multitask_run)  # embedder=trained: the run's own cascade is the multi-task network
    assert isinstance(runtime, MultiTaskRuntime)
    x = _batch()
    probs, emb = runtime.classify_and_embed(x)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(probs, runtime.classify(x), atol=1e-6)
    np.testing.assert_allclose(emb, runtime.embed(x), atol=1e-6)  # the embedding head alone gives the same


def test_export_one_file_runs_both_heads_in_one_pass(multitask_run: Path, multitask_bundle: Path) -> None:
    meta = read_bundle(multitask_bundle)
    assert set(meta["models"]) == {"multitask"}
    model = meta["models"]["multitask"]
    assert model["outputs"] == ["probabilities", "embedding", "features"]  # features: the query-type head's
    graph = onnx.load(str(multitask_bundle / model["files"]["onnx"])).graph
    assert [o.name for o in graph.output] == ["probabilities", "embedding", "features"]
    for fmt in ("onnx", "torchscript"):
        check = model["verification"][fmt]
        assert check["probabilities/top1_agreement"] == 1.0 and check["embedding/nn_agreement"] == 1.0
        assert check["features/nn_agreement"] == 1.0
    assert all(v["top1_agreement"] == 1.0 for k, v in meta["search_parity"].items() if "/" in k)

    eager, x = MultiTaskRuntime.from_run_dir(multitask_run), _batch(3)
    for runtime in ("onnx", "torchscript"):
        exported = BundleRuntime(multitask_bundle, runtime)
        assert exported.embedder_fingerprint == eager.embedder_fingerprint  # an index built eagerly is accepted
        for got, want in zip(exported.classify_embed_features(x), eager.classify_embed_features(x), strict=True):
            np.testing.assert_allclose(got, want, atol=1e-4)
        np.testing.assert_allclose(exported.embed(x), eager.embed(x), atol=1e-4)


def test_search_and_evaluate_use_it_with_no_special_case(multitask_run: Path, multitask_bundle: Path) -> None:
    cascade = Cascade.from_bundle(multitask_bundle, runtime="onnx")
    photo = multitask_run / "augment_preview.png"  # any real image file
    result = cascade.search(photo, k=3, strategy="top1")
    assert result.products and result.timings_ms["classify"] == 0.0  # both heads ran in the embed pass
    quick = ("latency.n_queries=5", "latency.warmup=1", "bootstrap.resamples=50", "rejection.enabled=false")
    # the gate tempered by novelty (a one-trunk network's option): reported, and read by every strategy
    tempered = "novelty.temperature_slope=1.0"
    run_entry("evaluate.py", multitask_run.parent, f"bundle={multitask_bundle}", "runtime=onnx", tempered, *quick)
    out = next(multitask_bundle.parent.glob("bundle-evaluations/*/"))
    report = json.loads((out / "report.json").read_text())
    assert report["novelty"]["temperature_slope"] == 1.0 and report["novelty"]["weight"] == 0.0
    assert "Novelty: no bonus, the gate's temperature x (1 + 1 x ramp)" in (out / "report.md").read_text()
    assert report["strategies"]["oracle"]["routed_right"] == 1.0
    assert 0.0 <= report["strategies"]["top1"]["metrics"]["R@1"] <= 1.0
    assert report["selection"]["multitask"].startswith("the epoch with the best val/joint (max)")
    # unseen products: queried and scored apart, with intervals; the seen ones are the rest
    unseen = LabelMaps.load(multitask_bundle / "labels.json").unseen_products
    novelty = report["by_novelty"]
    assert novelty["unseen"]["n_products"] == len(unseen) > 0
    assert novelty["seen"]["n_queries"] + novelty["unseen"]["n_queries"] == report["n_queries"]
    assert "intervals" in novelty["unseen"]["strategies"]["global"]
    assert report["unseen_mode"] == "photos" and 0.0 <= novelty["unseen"]["gate"]["top1"] <= 1.0


def test_the_novelty_temperature_softens_the_gate_on_photos_that_look_new(
    multitask_run: Path, multitask_bundle: Path
) -> None:
    """Every reader of the probabilities gets the tempered ones (the runtime is wrapped), the category order
    never changes, a photo far from the training photos is softened and a near one is not, and a bundle
    tempers as the run does."""
    options = NoveltyOptions(
        weight=0.0, depth=100, neighbours=3, quantiles=(0.1, 0.5), photos_per_product=50, validation_photos=1000,
        seed=0, temperature_slope=2.0,
    )  # fmt: skip
    plain, tempered = Cascade.from_run(multitask_run), Cascade.from_run(multitask_run, novelty=options)
    assert isinstance(tempered.runtime, NoveltyTemperedRuntime) and tempered.novelty is None  # no bonus
    info = tempered.info()["novelty"]
    assert info["temperature_slope"] == 2.0 and info["weight"] == 0.0
    labels = LabelMaps.load(multitask_run / "labels.json")
    manifest = run_manifest(multitask_run)
    test = manifest[(manifest["domain"] == "query") & (manifest["split"] == "test")]
    io = BatchIO(16, 0, 40_000_000, True)
    raw = plain.infer_frame(test, labels, io, classify=True, what="test photos")
    got = tempered.infer_frame(test, labels, io, classify=True, what="test photos, tempered")
    np.testing.assert_array_equal(got.embeddings, raw.embeddings)
    np.testing.assert_array_equal(got.probs.argmax(axis=1), raw.probs.argmax(axis=1))
    ramp = tempered.runtime.temperature.reference.ramp(raw.embeddings)
    assert (ramp == 0).any() and (ramp > 0).any(), "the test photos should spread over the ramp"
    near, far = ramp == 0, ramp > 0
    np.testing.assert_allclose(got.probs[near], raw.probs[near], atol=1e-5)  # as near as a typical seen photo
    assert (got.probs[far].max(axis=1) < raw.probs[far].max(axis=1) + 1e-6).all()
    assert got.probs[far].max(axis=1).mean() < raw.probs[far].max(axis=1).mean()
    np.testing.assert_allclose(got.probs.sum(axis=1), 1.0, atol=1e-5)
    # a bundle tempers with its shipped reference (export's conf/novelty: k=5), at the opener's slope
    bundle = Cascade.from_bundle(multitask_bundle, runtime="onnx", novelty=options)
    assert isinstance(bundle.runtime, NoveltyTemperedRuntime) and bundle.runtime.temperature.slope == 2.0
    assert bundle.runtime.temperature.reference.photos.k == 5
    exported = bundle.infer_frame(test, labels, io, classify=True, what="test photos, bundle")
    untempered = Cascade.from_bundle(multitask_bundle, runtime="onnx").infer_frame(
        test, labels, io, classify=True, what="test photos, plain bundle"
    )
    want = bundle.runtime.temperature.apply(untempered.probs, untempered.embeddings)
    np.testing.assert_allclose(exported.probs, want, atol=1e-5)


def test_a_bundle_is_served_at_the_temperature_slope_it_was_calibrated_at(
    multitask_bundle: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """export.py records the slope its default strategy and conformal thresholds were calibrated at; a bundle
    opened with the slope unset follows it, a slope set against it (or the novelty group off) is warned about."""
    meta = read_bundle(multitask_bundle)
    assert meta["calibration"]["novelty_temperature_slope"] == 0.0  # exported with the slope unset: untempered
    unset = NoveltyOptions(
        weight=0.0, depth=100, neighbours=3, quantiles=(0.1, 0.5), photos_per_product=50, validation_photos=1000,
        seed=0,
    )  # fmt: skip
    assert not isinstance(Cascade.from_bundle(multitask_bundle, runtime="onnx", novelty=unset).runtime,
                          NoveltyTemperedRuntime)  # fmt: skip
    tempered = tmp_path / "bundle"  # the same bundle as if exported at slope 1.5 (bundle.json is not checksummed)
    shutil.copytree(multitask_bundle, tempered)
    meta["calibration"]["novelty_temperature_slope"] = 1.5
    (tempered / "bundle.json").write_text(json.dumps(meta))
    follows = Cascade.from_bundle(tempered, runtime="onnx", novelty=unset)
    assert isinstance(follows.runtime, NoveltyTemperedRuntime) and follows.runtime.temperature.slope == 1.5
    assert follows.info()["novelty"]["temperature_slope"] == 1.5
    with caplog.at_level(logging.WARNING, logger="snapsearch"):
        overridden = Cascade.from_bundle(tempered, runtime="onnx", novelty=replace(unset, temperature_slope=0.0))
    assert not isinstance(overridden.runtime, NoveltyTemperedRuntime)
    assert "calibrated at 1.5" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="snapsearch"):
        Cascade.from_bundle(tempered, runtime="onnx", novelty=None)
    assert "serves it untempered" in caplog.text
