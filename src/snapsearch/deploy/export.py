"""Export a train run's cascade (classifier and embedder, or one multi-task network with both outputs) to
ONNX and TorchScript, verified against eager PyTorch on real images, into one atomically written bundle."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import timm
import torch
from torch import nn

import snapsearch
from snapsearch.data.preprocess import Preprocess
from snapsearch.models.artifact import META_FILE, fingerprint
from snapsearch.models.classifier import CategoryClassifier
from snapsearch.models.embedder import ProductEmbedder
from snapsearch.models.multitask import MultiTaskNet
from snapsearch.runtime.bundle import BUNDLE_FILE, FORMAT_VERSION, checksums
from snapsearch.runtime.models import load_runner
from snapsearch.utils.atomic import atomic_dir
from snapsearch.utils.layout import MULTITASK_STAGES, RunDir

log = logging.getLogger(__name__)

INPUT_NAME = "image"
# A model's outputs, in order, and how each is checked against eager PyTorch (as a classifier's
# probabilities or as an embedder's embeddings).
# The gate's L2-normalised pooled features ride along (the query-type head reads them; no extra pass).
OUTPUTS = {
    "classifier": ("probabilities", "features"),
    "embedder": ("embedding",),
    "multitask": ("probabilities", "embedding", "features"),
}
CHECKED_AS = {"probabilities": "classifier", "embedding": "embedder", "features": "embedder"}
INT8 = "onnx_int8"  # the runtime (and bundle format) of the int8 models
SUFFIX = {"onnx": ".onnx", "torchscript": ".ts", INT8: ".int8.onnx"}


class ExportError(RuntimeError):
    """An export that failed verification; nothing was published."""


class CalibratedClassifier(nn.Module):
    """What the deployed classifier computes: calibrated probabilities (temperature folded in) and the
    trunk's normalised pooled features, from one pass."""

    def __init__(self, model: CategoryClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.probabilities_and_features(x)


class MultiTaskOutputs(nn.Module):
    """What the deployed multi-task network computes: probabilities, embedding and the gate's features."""

    def __init__(self, model: MultiTaskNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.model.outputs(x)


def export_onnx(module: nn.Module, example: torch.Tensor, path: Path, outputs: tuple[str, ...], opset: int) -> None:
    batch = torch.export.Dim("batch", min=1, max=4096)
    torch.onnx.export(
        module,
        (example,),
        str(path),
        input_names=[INPUT_NAME],
        output_names=list(outputs),
        dynamic_shapes=({0: batch},),
        opset_version=opset,
        dynamo=True,
        external_data=False,
    )
    onnx.checker.check_model(str(path))


def _export_torchscript(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    traced = torch.jit.trace(module, example, check_trace=True)
    traced.save(str(path))


@dataclass(frozen=True)
class Int8Options:
    """Static int8 quantisation (QDQ): activations' ranges are calibrated on real training-split photos, so
    onnxruntime fuses each convolution into an integer kernel. (Dynamic quantisation measured slower than
    float on these CPUs and changed retrieval: BENCHMARKS §6.)"""

    per_channel: bool  # one weight scale per output channel (onnxruntime's advice for convolutions)
    reduce_range: bool  # 7-bit weights: AVX2 CPUs without VNNI saturate u8 x s8 products at 8 bits
    method: str  # onnxruntime CalibrationMethod name: MinMax, Percentile or Entropy


def _quantize(src: Path, dst: Path, calibration: np.ndarray, options: Int8Options, batch_size: int = 8) -> None:
    """``src`` quantised into ``dst`` with activation ranges from ``calibration`` (a preprocessed batch)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(calibration[i : i + batch_size] for i in range(0, len(calibration), batch_size))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)}

    if options.method not in CalibrationMethod.__members__:
        raise ExportError(f"int8.method={options.method!r}: use one of {list(CalibrationMethod.__members__)}")
    prepared = dst.with_suffix(".prep.onnx")
    # graph optimisation first (batch-norm folding, constant folding), as onnxruntime recommends; the
    # symbolic shape pass cannot follow the dynamo export's Expand nodes and is not needed for CNNs
    quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
    try:
        quantize_static(
            str(prepared),
            str(dst),
            Batches(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=options.per_channel,
            reduce_range=options.reduce_range,
            calibrate_method=CalibrationMethod[options.method],
        )
    finally:
        prepared.unlink(missing_ok=True)


def _compare(kind: str, reference: np.ndarray, other: np.ndarray, labels: np.ndarray | None) -> dict[str, float]:
    report = {"max_abs_diff": float(np.abs(reference - other).max())}
    if kind == "classifier":
        report["top1_agreement"] = float(np.mean(reference.argmax(1) == other.argmax(1)))
        if labels is not None:
            report["accuracy_reference"] = float(np.mean(reference.argmax(1) == labels))
            report["accuracy"] = float(np.mean(other.argmax(1) == labels))
    else:
        # nearest neighbour of each image among the others: does retrieval agree?
        def nn_of(e: np.ndarray) -> np.ndarray:
            sim = e @ e.T
            np.fill_diagonal(sim, -np.inf)
            return sim.argmax(1)

        report["nn_agreement"] = float(np.mean(nn_of(reference) == nn_of(other)))
    return report


def _compare_outputs(
    kind: str, reference: tuple[np.ndarray, ...], other: tuple[np.ndarray, ...], labels: np.ndarray | None
) -> dict[str, float]:
    """Every output compared; with several, each key is prefixed by its output's name."""
    names = OUTPUTS[kind]
    if len(other) != len(names):
        raise ExportError(f"{kind} export gives {len(other)} outputs, expected {len(names)} ({names})")
    report: dict[str, float] = {}
    for name, ref, out in zip(names, reference, other, strict=True):
        prefix = f"{name}/" if len(names) > 1 else ""
        report |= {prefix + k: v for k, v in _compare(CHECKED_AS[name], ref, out, labels).items()}
    return report


def _verified(result: dict[str, float], atol: float) -> bool:
    agreements = [v for k, v in result.items() if k.endswith(("top1_agreement", "nn_agreement"))]
    diffs = [v for k, v in result.items() if k.endswith("max_abs_diff")]
    return max(diffs) <= atol and min(agreements, default=1.0) >= 1.0


def export_model(
    kind: str,
    module: nn.Module,
    preprocess: Preprocess,
    folder: Path,
    batch: np.ndarray,
    labels: np.ndarray | None,
    *,
    formats: list[str],
    opset: int,
    int8: Int8Options | None,
    calibration: np.ndarray | None,
    atol: float,
) -> dict[str, Any]:
    """Export one model in every format, verify each against eager PyTorch on ``batch``; with ``int8``, an
    int8 ONNX model too, calibrated on ``calibration`` (training-split photos, never the verification ones)."""
    module = module.eval()
    example = torch.from_numpy(batch[:2]).contiguous()
    with torch.inference_mode():
        out = module(torch.from_numpy(batch))
    reference = tuple(o.numpy() for o in out) if isinstance(out, tuple) else (out.numpy(),)
    files: dict[str, str] = {}
    verification: dict[str, Any] = {}
    for fmt in formats:
        path = folder / f"{kind}{SUFFIX[fmt]}"
        if fmt == "onnx":
            export_onnx(module, example, path, OUTPUTS[kind], opset)
        elif fmt == "torchscript":
            _export_torchscript(module, example, path)
        else:
            raise ExportError(f"unknown export format {fmt!r}; use onnx or torchscript")
        result = _compare_outputs(kind, reference, load_runner(path, INPUT_NAME)(batch), labels)
        log.info("%s %s vs eager: %s", kind, fmt, result)
        if not _verified(result, atol):
            raise ExportError(
                f"{kind} {fmt} export does not match eager PyTorch on {len(batch)} real images: {result} "
                f"(tolerance {atol}); the export is not published"
            )
        files[fmt] = path.name
        verification[fmt] = result
    if int8 is not None:
        if "onnx" not in files:
            raise ExportError("int8 quantisation starts from the ONNX model: add onnx to formats")
        if calibration is None or not len(calibration):
            raise ExportError(f"no calibration photos for the int8 {kind} model: check the run's training split")
        path = folder / f"{kind}{SUFFIX[INT8]}"
        _quantize(folder / files["onnx"], path, calibration, int8)
        files[INT8] = path.name
        verification[INT8] = _compare_outputs(kind, reference, load_runner(path, INPUT_NAME)(batch), labels)
        verification[INT8]["calibration_photos"] = len(calibration)
        log.info("%s onnx int8 vs eager fp32 (reported, not gated): %s", kind, verification[INT8])
    return {
        "files": files,
        "preprocess": preprocess.to_dict(),
        "outputs": list(OUTPUTS[kind]),
        "verification": verification,
    }


def _backbone(folder: Path) -> dict[str, Any]:
    return json.loads((folder / META_FILE).read_text())["backbone"]


def versions(opset: int) -> dict[str, Any]:
    return {
        "snapsearch": snapsearch.__version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "opset": opset,
    }


def _embedding_meta(module: nn.Module, embedding_dim: int) -> dict[str, Any]:
    return {"embedding_dim": embedding_dim, "metric": "ip", "normalized": True, "fingerprint": fingerprint(module)}


# One model of the bundle: (kind, module, its contract, labels to score probabilities against) -> its meta.
Exporter = Callable[[str, nn.Module, Preprocess, np.ndarray | None], dict[str, Any]]


def _export_separate(run: RunDir, export: Exporter, labels: np.ndarray | None) -> dict[str, Any]:
    classifier, cls_pre = CategoryClassifier.load(run.stage("classifier"))
    embedder, emb_pre = ProductEmbedder.load(run.stage("embedder"))
    return {
        "classifier": export("classifier", CalibratedClassifier(classifier), cls_pre, labels)
        | {
            "categories": classifier.categories,
            "temperature": float(classifier.temperature),
            "backbone": _backbone(run.stage("classifier")),
            "fingerprint": fingerprint(classifier),
        },
        "embedder": export("embedder", embedder, emb_pre, None)
        | _embedding_meta(embedder, embedder.embedding_dim)
        | {"backbone": _backbone(run.stage("embedder"))},
    }


def _export_multitask(run: RunDir, export: Exporter, labels: np.ndarray | None) -> dict[str, Any]:
    """One file, three outputs (calibrated probabilities, embedding, the gate's features): the runtimes
    classify and embed in one pass."""
    model, pre = MultiTaskNet.load(run.stage("multitask"))
    return {
        "multitask": export("multitask", MultiTaskOutputs(model), pre, labels)
        | {
            "categories": model.categories,
            "temperature": float(model.temperature),
            "backbone": _backbone(run.stage("multitask")),
        }
        | _embedding_meta(model, model.embedding_dim)
    }


def export_bundle(
    run_dir: Path,
    out_dir: Path,
    batch_for: dict[str, np.ndarray],
    labels: np.ndarray | None,
    *,
    formats: list[str],
    opset: int,
    int8: Int8Options | None,
    atol: float,
    extra_files: dict[str, Path],
    calibration_for: dict[str, np.ndarray] | None = None,
    check: Callable[[Path], dict[str, Any]] | None = None,
    serving: Callable[[Path], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Export the cascade's models of ``run_dir`` into ``out_dir``. ``batch_for[stage]``: real preprocessed
    images under that model's contract; ``calibration_for[stage]``: training-split photos under it, for ``int8``.

    Written in a temporary folder and renamed into place only when every export verified, so an
    interrupted or failed export leaves no half bundle that looks complete. ``check(folder)`` runs on the
    complete, unpublished bundle (raise ExportError to refuse it); what it returns is recorded in
    bundle.json under ``search_parity``. ``serving(folder)`` then calibrates what a service would otherwise
    calibrate at every start (the default strategy, conformal and rejection thresholds); its keys join
    bundle.json (:class:`snapsearch.search.calibration.ServingRecord` reads them).
    """
    run = RunDir(run_dir)
    calibration_for = calibration_for or {}
    with atomic_dir(out_dir) as tmp:

        def export(kind: str, module: nn.Module, pre: Preprocess, truth: np.ndarray | None) -> dict[str, Any]:
            return export_model(
                kind,
                module,
                pre,
                tmp,
                batch_for[kind],
                truth,
                formats=formats,
                opset=opset,
                int8=int8,
                calibration=calibration_for.get(kind),
                atol=atol,
            )

        models = (
            _export_multitask(run, export, labels)
            if run.cascade_stages() == MULTITASK_STAGES
            else _export_separate(run, export, labels)
        )
        for name, src in extra_files.items():
            dst = tmp / name
            if src.is_dir():
                shutil.copytree(src, dst)
            else:
                shutil.copy2(src, dst)
        meta = {
            "format_version": FORMAT_VERSION,
            "created": datetime.now(UTC).isoformat(),
            "source_run": str(run_dir),
            "input_name": INPUT_NAME,
            "models": models,
            "versions": versions(opset),
            "sha256": checksums(tmp),
        }
        (tmp / BUNDLE_FILE).write_text(json.dumps(meta, indent=2))
        if check is not None:
            meta["search_parity"] = check(tmp)
        if serving is not None:
            meta |= serving(tmp)
        if check is not None or serving is not None:
            (tmp / BUNDLE_FILE).write_text(json.dumps(meta, indent=2))  # bundle.json is not checksummed
    return meta
