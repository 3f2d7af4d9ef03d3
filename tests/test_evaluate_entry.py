"""evaluate.py end to end on the synthetic shop: every strategy, both protocols, reports on disk."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from snapsearch.evaluation.comparison import compare
from snapsearch.runtime.models import SharedTrunkRuntime

from .conftest import run_entry


def _evaluate(run_dir: Path, tmp_path: Path, *overrides: str) -> dict:
    run_entry("evaluate.py", tmp_path, f"run_dir={run_dir}", "latency.n_queries=5", "latency.warmup=1", *overrides)
    reports = sorted((run_dir / "evaluations").glob("*/report.json"), key=lambda p: p.stat().st_mtime)
    assert reports, "evaluate.py wrote no report.json"
    return json.loads(reports[-1].read_text())


def test_evaluate_every_strategy(smoke_run: Path, tmp_path: Path) -> None:
    report = _evaluate(smoke_run, tmp_path, "novelty.weight=0.2")  # off by default (conf/novelty/ramp.yaml)
    assert set(report["strategies"]) == {"global", "top1", "topk", "adaptive", "fusion", "conformal", "oracle"}
    out = next(iter(sorted((smoke_run / "evaluations").glob("catalog_trained_*"))))
    for name in ("report.md", "report.json", "confusion_matrix.png", "examples.png"):
        assert (out / name).is_file(), name
    assert report["hubness"]["weight"] == 0.25  # conf/hubness/csls.yaml, the default: every strategy corrected
    newest = max((smoke_run / "evaluations").glob("*/report.md"), key=lambda p: p.stat().st_mtime)
    assert "corrected for hubness" in newest.read_text()
    assert report["novelty"]["weight"] == 0.2 and report["novelty"]["trained_products"] > 0
    assert "Novelty: untrained products' items + 0.2 x ramp, the ramp from" in newest.read_text()
    oracle = report["strategies"]["oracle"]
    assert oracle["routed_right"] == 1.0
    top1 = report["strategies"]["top1"]
    # routed right x found within = recall@1 of the cascade
    assert top1["routed_right"] * top1["found_within"] == pytest.approx(top1["metrics"]["R@1"], abs=1e-6)
    assert report["strategies"]["global"]["average_improvement"] == pytest.approx(0.0)
    glob = report["strategies"]["global"]["metrics"]
    if glob["R@10"] < 1.0:  # some products rank past 10: the full MRR counts them, mAP@10 does not
        assert glob["MRR"] > glob["mAP@10"]
    low, high = top1["intervals"]["metrics"]["R@1"]  # paired bootstrap 95% interval
    assert low <= top1["metrics"]["R@1"] <= high and high - low < 0.5
    assert report["strategies"]["global"]["intervals"]["relative"]["R@1"] == [0.0, 0.0]
    boot = report["bootstrap"]  # the default unit: products, every photo of a drawn product together
    assert boot["unit"] == "product" and boot["resamples"] > 0 and boot["n_queries"] == report["n_queries"]
    assert 1 < boot["clusters"] <= report["n_products"] < report["n_queries"]  # products, not photos
    assert f"paired bootstrap over products ({boot['clusters']} clusters" in (out / "report.md").read_text()
    assert report["classifier"]["top1"] == pytest.approx(top1["routed_right"], abs=1e-6)
    stages = report["latency"]["stages"]
    assert stages["top1/embed"]["p50_ms"] > 0 and stages["top1/classify"]["p50_ms"] > 0
    assert stages["global/classify"]["p50_ms"] == 0.0  # global search never runs the classifier
    assert "oracle/total" not in stages  # the oracle needs the truth: not a serving path
    rejection = report["rejection"]
    held = rejection["held_out_products"]  # the smoke run has no unseen products: trained-on ones, said so
    assert rejection["out_of_catalog"] == "products the models trained on"
    assert held["val"] and held["test"] and not set(held["val"]) & set(held["test"])  # disjoint halves
    assert set(rejection["strategies"]) == set(report["strategies"]) - {"oracle"}
    for r in rejection["strategies"].values():
        test = r["test"]
        assert test["n_in_catalog"] > 0 and test["n_out_of_catalog"] > 0
        assert 0.0 <= test["out_of_catalog_rejected"] <= 1.0 and 0.0 <= test["in_catalog_wrongly_rejected"] <= 1.0
        low, high = test["intervals"]["auroc"]
        assert low <= test["auroc"] <= high
    assert "Not in our catalog" in (out / "report.md").read_text()


def test_evaluate_extended_catalog_generic_embedder(smoke_run: Path, tmp_path: Path) -> None:
    report = _evaluate(
        smoke_run,
        tmp_path,
        "protocol=extended_catalog",
        "embedder=generic",
        "cascade=top1",
        "index=hnsw",
        "generic_embedder.backbone.name=test_efficientnet",
        "generic_embedder.backbone.weights=null",
        "generic_embedder.backbone.input_size=64",
    )
    assert report["n_pool"] > report["n_products"]  # many images per product, ranked once per product
    assert set(report["strategies"]) == {"global", "top1"}


@pytest.mark.slow
def test_evaluate_shared_trunk_beside_the_separate_models(smoke_run: Path, tmp_path: Path) -> None:
    """One trunk for both stages: the classifier's pooled features serve as the embedding; its report shows
    the separate models' evaluation of the same queries beside it, and says how each model was chosen."""
    separate = _evaluate(smoke_run, tmp_path, "cascade=top1", "rejection.enabled=false")
    assert separate["novelty"] is None  # conf/novelty/ramp.yaml's weight 0: measured, not applied
    separate_dir = sorted((smoke_run / "evaluations").glob("*/report.json"), key=lambda p: p.stat().st_mtime)[-1]
    report = _evaluate(smoke_run, tmp_path, "embedder=shared", "cascade=top1", f"compare_with=[{separate_dir.parent}]")
    assert report["runtime"] == "torch-shared"
    this, other = report["compared"]
    assert this["runtime"] == "torch-shared" and other["runtime"] == "torch"
    assert other["strategies"]["top1"]["metrics"] == separate["strategies"]["top1"]["metrics"]
    assert report["selection"]["classifier"].startswith("the epoch with the best val/acc (max)")
    assert "embedder" not in report["selection"]  # the shared trunk trains no embedder
    assert separate["selection"]["embedder"].startswith("the epoch with the best val/R@1 (max)")
    md = (sorted((smoke_run / "evaluations").glob("*/report.md"), key=lambda p: p.stat().st_mtime)[-1]).read_text()
    assert "Compared cascades" in md and "How the models were chosen" in md
    with pytest.raises(ValueError, match="scored other queries"):
        compare({**report, "n_queries": 1}, [separate_dir])
    runtime = SharedTrunkRuntime.from_run_dir(smoke_run)
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    probs, emb = runtime.classify_and_embed(x)  # one pass gives what the two separate calls give
    np.testing.assert_allclose(probs, runtime.classify(x), atol=1e-5)
    np.testing.assert_allclose(emb, runtime.embed(x), atol=1e-5)


@pytest.mark.slow
def test_evaluate_prior_correction_on_resampled_stream(smoke_run: Path, tmp_path: Path) -> None:
    report = _evaluate(
        smoke_run,
        tmp_path,
        "cascade=top1",
        "prior_correction=true",
        "stream.resample_alpha=0.5",
        "hubness=none",
        "novelty=none",
    )
    assert set(report["strategies"]) == {"global", "top1", "top1+em"}
    assert report["hubness"] is None and report["novelty"] is None


@pytest.mark.slow
def test_evaluate_on_qdrant_matches_flat(smoke_run: Path, tmp_path: Path) -> None:
    """index=qdrant (embedded, exact) gives the metrics index=flat gives, for every strategy."""
    pytest.importorskip("qdrant_client")
    common = ("latency.n_queries=2", "rejection.enabled=false")
    flat = _evaluate(smoke_run, tmp_path, "index=flat", *common)
    qdrant = _evaluate(smoke_run, tmp_path, "index=qdrant", *common)
    assert qdrant["index"]["backend"] == "qdrant"
    for name, s in flat["strategies"].items():
        assert qdrant["strategies"][name]["metrics"] == pytest.approx(s["metrics"], abs=1e-9), name


def test_growing_pool_nested_and_anchored(smoke_run: Path, tmp_path: Path) -> None:
    """Distractors only push the true product down (nested pools, exact search), and with none the curve
    starts at the main table's numbers."""
    report = _evaluate(
        smoke_run, tmp_path, "growing_pool.enabled=true", "growing_pool.sizes=[0,30,100000]", "rejection.enabled=false"
    )
    points = report["growing_pool"]["points"]
    assert [p["n_distractors"] for p in points][:2] == [0, 30] and points[-1]["n_items"] > points[1]["n_items"]
    for strategy in ("global", "top1", "fusion", "oracle"):
        r1 = [p["metrics"][strategy]["R@1"] for p in points]
        assert r1[0] == pytest.approx(report["strategies"][strategy]["metrics"]["R@1"]), strategy
        assert all(a >= b for a, b in itertools.pairwise(r1)), (strategy, r1)
    out = sorted((smoke_run / "evaluations").glob("*/growing_pool.png"))
    assert out, "no growing_pool.png"


@pytest.mark.slow
def test_camera_faults_are_seeded_and_reported(smoke_run: Path, tmp_path: Path) -> None:
    """Each corruption is replayed exactly (same seed: same numbers), clean is the anchor (100% kept)."""
    overrides = (
        "camera_faults.enabled=true",
        "camera_faults.query_stride=3",
        "~camera_faults.corruptions",
        "+camera_faults.corruptions={noise: {_target_: albumentations.GaussNoise, std_range: [0.3, 0.3], p: 1.0},"
        " low_res: {_target_: albumentations.Downscale, scale_range: [0.15, 0.15], p: 1.0}}",
        "rejection.enabled=false",
        "bootstrap.resamples=0",
        "latency.n_queries=1",
    )
    first = _evaluate(smoke_run, tmp_path, *overrides)["camera_faults"]
    again = _evaluate(smoke_run, tmp_path, *overrides)["camera_faults"]
    assert first == again  # random noise, yet seeded per photo: the same numbers twice
    runs = first["corruptions"]
    assert set(runs) == {"clean", "noise", "low_res"}
    assert all(v == 1.0 for v in runs["clean"]["R@1_kept"].values() if v == v)  # NaN when clean R@1 is 0
    assert runs["noise"] != runs["clean"] and runs["low_res"] != runs["clean"]
    assert first["photos"] == "test"
    # The validation photos instead (to choose a recipe without a test photo): other photos, labelled so.
    val = _evaluate(smoke_run, tmp_path, *overrides, "camera_faults.photos=val")["camera_faults"]
    assert val["photos"] == "val"
    assert (val["n_photos"], val["corruptions"]["clean"]) != (first["n_photos"], runs["clean"])
    newest = max((smoke_run / "evaluations").glob("*/report.md"), key=lambda p: p.stat().st_mtime)
    assert f"## Camera faults ({val['n_photos']} validation photos" in newest.read_text()
