"""export.py on a trained smoke run: verified ONNX + TorchScript bundle, integrity, runtimes, refusals."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from snapsearch.deploy.export import ExportError, Int8Options, export_bundle
from snapsearch.runtime.bundle import BundleError, read_bundle
from snapsearch.runtime.models import BundleRuntime, TorchRuntime

from .conftest import ROOT, run_entry


@pytest.fixture(scope="module")
def bundle(smoke_bundle: Path) -> Path:
    return smoke_bundle


def test_bundle_contents_and_verification(bundle: Path) -> None:
    meta = read_bundle(bundle)
    cls, emb = meta["models"]["classifier"], meta["models"]["embedder"]
    assert set(cls["files"]) == {"onnx", "torchscript", "onnx_int8"}
    assert cls["preprocess"]["input_size"] == 64 and len(cls["categories"]) == cls_count(bundle)
    assert emb["embedding_dim"] == 64 and emb["metric"] == "ip"
    for fmt in ("onnx", "torchscript"):
        assert cls["verification"][fmt]["probabilities/max_abs_diff"] <= 1e-4
        assert cls["verification"][fmt]["probabilities/top1_agreement"] == 1.0
        assert cls["verification"][fmt]["features/nn_agreement"] == 1.0  # what the query-type head reads
        assert emb["verification"][fmt]["nn_agreement"] == 1.0
    assert cls["outputs"] == ["probabilities", "features"]
    assert "probabilities/accuracy" in cls["verification"]["onnx_int8"]
    assert cls["verification"]["onnx_int8"]["calibration_photos"] > 0  # static: ranges from training photos
    graph = onnx.load(str(bundle / cls["files"]["onnx_int8"])).graph
    ops = {node.op_type for node in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and "ConvInteger" not in ops  # QDQ, not dynamic
    # what int8 costs, scored on the validation photos beside the float models (same strategies, thresholds)
    validation = meta["validation"]
    assert set(validation["onnx_int8"]["R@1"]) == set(validation["R@1"]) and validation["n_photos"] > 0
    assert all(0.0 <= r <= 1.0 for r in validation["onnx_int8"]["R@1"].values())
    assert set(meta["versions"]) >= {"torch", "onnx", "onnxruntime", "timm", "opset"}
    # verified through the Cascade before publishing: every runtime ranks the photos as the run does
    parity = meta["search_parity"]
    assert parity["n_photos"] == 8
    for fmt in ("onnx", "torchscript", "onnx_int8"):
        for strategy in ("global", "top1", "topk", "adaptive", "fusion"):
            assert 0.0 <= parity[f"{fmt}/{strategy}"]["topk_agreement"] <= 1.0
            if fmt != "onnx_int8":
                assert parity[f"{fmt}/{strategy}"]["top1_agreement"] == 1.0


def cls_count(bundle: Path) -> int:
    return len(json.loads((bundle / "labels.json").read_text())["categories"])


@pytest.mark.parametrize("runtime", ["onnx", "torchscript", "onnx_int8"])
def test_bundle_runtimes_match_eager(bundle: Path, smoke_run: Path, runtime: str) -> None:
    eager = TorchRuntime.from_run_dir(smoke_run)
    rt = BundleRuntime(bundle, runtime)
    x = np.random.default_rng(0).standard_normal((3, 3, 64, 64)).astype(np.float32)
    atol = 5e-2 if runtime == "onnx_int8" else 1e-4
    np.testing.assert_allclose(rt.classify(x), eager.classify(x), atol=atol)
    np.testing.assert_allclose(rt.embed(x), eager.embed(x), atol=atol * 10 if runtime == "onnx_int8" else atol)
    assert rt.embedder_fingerprint == eager.embedder_fingerprint
    assert rt.has_gate_features and rt.gate_fingerprint == eager.gate_fingerprint
    for got, want in zip(rt.classify_features(x), eager.classify_features(x), strict=True):
        np.testing.assert_allclose(got, want, atol=atol * 10 if runtime == "onnx_int8" else atol)


def test_tampered_bundle_is_refused(bundle: Path, tmp_path: Path) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    with open(copy / "classifier.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(BundleError, match=r"modified: \['classifier.onnx'\]"):
        BundleRuntime(copy, "onnx")
    (copy / "classifier.onnx").unlink()
    with pytest.raises(BundleError, match="missing"):
        read_bundle(copy)


def test_not_a_bundle_and_unknown_runtime(tmp_path: Path, bundle: Path) -> None:
    with pytest.raises(BundleError, match="not an export bundle"):
        read_bundle(tmp_path)
    with pytest.raises(ValueError, match="cannot run a bundle"):
        BundleRuntime(bundle, "tensorrt")


def test_failed_verification_publishes_nothing(smoke_run: Path, tmp_path: Path) -> None:
    """An export that does not match eager PyTorch raises and leaves no bundle (and no temp folder) behind."""
    batch = np.random.default_rng(0).standard_normal((4, 3, 64, 64)).astype(np.float32)
    out = tmp_path / "bundle"
    with pytest.raises(ExportError, match="does not match eager PyTorch"):
        export_bundle(
            smoke_run,
            out,
            {"classifier": batch, "embedder": batch},
            None,
            formats=["torchscript"],
            opset=18,
            int8=None,
            atol=-1.0,
            extra_files={},
        )
    assert list(tmp_path.iterdir()) == []


def test_int8_refuses_an_unknown_calibration_method(smoke_run: Path, tmp_path: Path) -> None:
    batch = np.random.default_rng(0).standard_normal((4, 3, 64, 64)).astype(np.float32)
    with pytest.raises(ExportError, match=r"int8\.method='Median'"):
        export_bundle(
            smoke_run,
            tmp_path / "bundle",
            {"classifier": batch, "embedder": batch},
            None,
            formats=["onnx"],
            opset=18,
            int8=Int8Options(per_channel=True, reduce_range=True, method="Median"),
            atol=1e-4,
            extra_files={},
            calibration_for={"classifier": batch, "embedder": batch},
        )
    assert list(tmp_path.iterdir()) == []


def _report(folder: Path) -> dict:
    reports = sorted(folder.glob("*/report.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(reports[-1].read_text())


def test_evaluate_from_bundle_matches_eager(bundle: Path, smoke_run: Path, tmp_path: Path) -> None:
    """The cascade evaluated from the ONNX bundle (with its shipped index) gives the eager metrics."""
    common = ["cascade=top1", "latency.n_queries=3", "latency.warmup=1"]
    run_entry("evaluate.py", tmp_path, f"run_dir={smoke_run}", *common)
    eager = _report(smoke_run / "evaluations")
    run_entry("evaluate.py", tmp_path, f"bundle={bundle}", "runtime=onnx", *common)
    onnx = _report(bundle.with_name(bundle.name + "-evaluations"))
    read_bundle(bundle)  # evaluating a bundle leaves it intact
    assert onnx["runtime"] == "onnx"
    # the report records the validation choice; from the bundle, the very scores export recorded
    recorded = read_bundle(bundle)["validation"]["R@1"]
    assert onnx["validation_choice"]["R@1"] == pytest.approx({n: recorded[n] for n in ("global", "top1")})
    assert onnx["validation_choice"]["default_strategy"] == eager["validation_choice"]["default_strategy"]
    for name in ("global", "top1"):
        for metric, value in eager["strategies"][name]["metrics"].items():
            assert onnx["strategies"][name]["metrics"][metric] == pytest.approx(value, abs=1e-3), (name, metric)


def test_bundle_path_imports_no_training_code() -> None:
    code = (
        "import sys; import snapsearch.evaluation.pipeline, snapsearch.runtime.models; "
        "bad = [m for m in sys.modules if m.split('.')[0] in {'pytorch_lightning', 'lightning'} "
        "or m.startswith('snapsearch.training')]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_index_from_another_embedder_is_refused(bundle: Path, smoke_run: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "evaluate.py"),
            f"run_dir={smoke_run}",
            "embedder=generic",
            f"index_path={bundle / 'index'}",
            "generic_embedder.backbone.name=test_efficientnet",
            "generic_embedder.backbone.weights=null",
            "generic_embedder.backbone.input_size=64",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode != 0
    assert "rebuild the index" in proc.stderr + proc.stdout
