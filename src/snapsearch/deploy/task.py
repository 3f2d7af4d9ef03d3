"""The export task: real verification images from the run's own data, then the verified bundle."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
from omegaconf import DictConfig, OmegaConf

from snapsearch.data.dataset import LabelMaps, ManifestDataset
from snapsearch.data.preprocess import Preprocess
from snapsearch.data.protocols import trained_photos
from snapsearch.data.sources import load_manifest
from snapsearch.deploy.export import INT8, ExportError, Int8Options, export_bundle
from snapsearch.deploy.serving import serving_calibration
from snapsearch.models.artifact import META_FILE
from snapsearch.retrieval.hubness import HubReference
from snapsearch.retrieval.prototype_shift import PrototypeShift
from snapsearch.runtime.batch import BatchIO
from snapsearch.runtime.factory import run_runtime
from snapsearch.runtime.models import CascadeRuntime
from snapsearch.search.cascade import Cascade
from snapsearch.search.catalog_index import IndexSpec, embed_pool
from snapsearch.search.hubness import HubnessOptions
from snapsearch.search.novelty import NoveltyOptions
from snapsearch.search.photo_embeddings import PhotoEmbeddings
from snapsearch.search.products import PRODUCTS_FILE, ProductTable
from snapsearch.search.prototype_shift import PrototypeShiftOptions
from snapsearch.search.query_type import QueryTypeHead
from snapsearch.search.sources import calibration_photos, catalog_pool, default_strategies
from snapsearch.utils.atomic import ensure_writable_dir
from snapsearch.utils.layout import (
    HUBNESS,
    INDEX,
    LABELS,
    NOVELTY,
    PROTOTYPE_SHIFT,
    QUERY_TYPE,
    SOURCE_CONFIG,
    RunDir,
)

log = logging.getLogger(__name__)


def _verification_batch(
    frame, labels: LabelMaps, preprocess: Preprocess, n: int, max_pixels: int
) -> tuple[np.ndarray, np.ndarray]:
    ds = ManifestDataset(frame, labels, preprocess.eval_transform(), max_pixels=max_pixels, draft_size=None)
    items = [it for it in (ds[i] for i in range(min(len(ds), 2 * n))) if it is not None][:n]
    if not items:
        raise ValueError("no readable image to verify the export on; check the run's data")
    return np.stack([it["image"].numpy() for it in items]), np.array([it["label"] for it in items])


def _int8_options(cfg: DictConfig) -> Int8Options | None:
    if not cfg.quantize_int8:
        return None
    return Int8Options(
        per_channel=bool(cfg.int8.per_channel), reduce_range=bool(cfg.int8.reduce_range), method=str(cfg.int8.method)
    )


def _calibration_batches(
    cfg: DictConfig, manifest, labels: LabelMaps, contracts: dict[str, Preprocess], max_pixels: int
) -> dict[str, np.ndarray]:
    """For int8: a seeded sample of the photos the run trained on, under each model's contract."""
    if not cfg.quantize_int8:
        return {}
    photos = trained_photos(manifest, labels)
    if photos.empty:
        raise ExportError("quantize_int8 needs the run's training photos to calibrate on; none were found")
    photos = photos.sample(n=min(int(cfg.int8.calibration_photos), len(photos)), random_state=int(cfg.int8.seed))
    n = len(photos)
    return {k: _verification_batch(photos, labels, c, n, max_pixels)[0] for k, c in contracts.items()}


def _io(cfg: DictConfig, train_cfg: DictConfig) -> BatchIO:
    return BatchIO(cfg.batch_size, cfg.num_workers, train_cfg.data.max_image_pixels, train_cfg.data.draft_decode)


def _catalog_index(
    cfg: DictConfig,
    runtime: CascadeRuntime,
    train_cfg: DictConfig,
    catalog,
    labels: LabelMaps,
    hub: HubReference | None,
    shift: PrototypeShift | None,
    out: Path,
) -> Path:
    """The catalog's partitioned index built with the run's embedder (its vectors moved by the shipped
    prototype shift, with the hubness densities when a reference is shipped), for a deployment to ship."""
    spec = IndexSpec.from_config(OmegaConf.to_container(cfg.index))
    index, _ = embed_pool(spec, runtime, catalog, labels, _io(cfg, train_cfg), hub, shift)
    index.save(out)
    return out


class _Saved(Protocol):
    def save(self, path: Path) -> None: ...


S = TypeVar("S", bound=_Saved)


def _shipped(artifact: S | None, out: Path, extra: dict[str, Path]) -> S | None:
    """``artifact`` (a reference or offsets the bundle ships) saved at ``out`` and listed among the bundle's
    files; nothing when its option is off or it could not be measured."""
    if artifact is not None:
        artifact.save(out)
        extra[out.name] = out
    return artifact


def search_parity(
    run: RunDir,
    manifest,
    labels: LabelMaps,
    photos: list[str],
    formats: list[str],
    n_catalog: int,
    k: int,
    shipped_index: Path | None,
) -> Callable[[Path], dict[str, Any]]:
    """A check of an unpublished bundle through the Cascade: every photo searched with every strategy by the
    run (eager torch) and by each exported runtime, on one index, must rank the same top product (the full
    top-k agreement is recorded; int8 models are reported, not gated). The index is the one the bundle ships
    (embedded once), else one of up to ``n_catalog`` catalog images."""

    def check(folder: Path) -> dict[str, Any]:
        # every strategy is named below: the default is only what the Cascade requires
        options: dict[str, Any] = {"strategies": default_strategies(), "default_strategy": "global", "k_max": k}
        with tempfile.TemporaryDirectory() as tmp:
            if shipped_index is None:
                pool = catalog_pool(manifest, labels)
                pool = pool.sample(n=min(n_catalog, len(pool)), random_state=0).sort_index()
                eager = Cascade.from_run(run.root, pool=pool, **options)
                index = eager.index.save(Path(tmp) / INDEX)
            else:
                index = shipped_index
                eager = Cascade.from_run(run.root, index_path=index, **options)
            exported = {fmt: Cascade.from_bundle(folder, runtime=fmt, index_path=index, **options) for fmt in formats}
        report: dict[str, Any] = {"n_photos": len(photos), "n_catalog_images": eager.index.n_items, "k": k}
        for name in eager.searchable():
            reference = [r.product_index for r in eager.search_batch(photos, k=k, strategy=name)]
            for fmt, cascade in exported.items():
                ranked = [r.product_index for r in cascade.search_batch(photos, k=k, strategy=name)]
                top1 = float(np.mean([a[:1] == b[:1] for a, b in zip(ranked, reference, strict=True)]))
                report[f"{fmt}/{name}"] = {
                    "top1_agreement": top1,
                    "topk_agreement": float(np.mean([a == b for a, b in zip(ranked, reference, strict=True)])),
                }
                if top1 < 1.0 and fmt != INT8:
                    raise ExportError(
                        f"{fmt} bundle ranks {100 * (1 - top1):.1f}% of {len(photos)} real photos differently "
                        f"from the run with strategy {name!r}; the export is not published"
                    )
        log.info("search parity through the Cascade: %s", report)
        return report

    return check


def run_export(cfg: DictConfig) -> dict[str, Any]:
    run = RunDir(Path(cfg.run_dir))
    run_dir = run.root
    ensure_writable_dir(Path(cfg.output).resolve().parent, "bundle's parent folder")
    stages = run.cascade_stages()
    train_cfg = OmegaConf.load(run.config)
    labels = LabelMaps.load(run.labels)
    manifest = load_manifest(train_cfg.data)
    photos = manifest[(manifest["domain"] == "query") & (manifest["split"] == "test")]
    photos = photos.sample(frac=1.0, random_state=0)  # several categories, not the first one only
    pre = {
        k: Preprocess.from_dict(OmegaConf.to_container(OmegaConf.load(run.stage(k) / META_FILE).preprocess))
        for k in stages
    }
    batches, truth = {}, None
    for kind, contract in pre.items():
        batches[kind], truth = _verification_batch(
            photos, labels, contract, cfg.verify.n_images, train_cfg.data.max_image_pixels
        )
    extra = {LABELS: run.labels, SOURCE_CONFIG: run.config}
    with tempfile.TemporaryDirectory() as tmp:
        if QueryTypeHead.exists(run.query_type):  # the head travels with the models it reads (not its views)
            QueryTypeHead.load(run.query_type).save(Path(tmp) / QUERY_TYPE)
            extra[QUERY_TYPE] = Path(tmp) / QUERY_TYPE
        ProductTable.from_manifest(manifest, labels).save(Path(tmp) / PRODUCTS_FILE)
        extra[PRODUCTS_FILE] = Path(tmp) / PRODUCTS_FILE
        runtime = run_runtime(run_dir)
        # the references and offsets the bundle ships, each photo embedded once (validation photos never test)
        embedded = PhotoEmbeddings(runtime, labels, _io(cfg, train_cfg))
        validation = calibration_photos(manifest, labels)
        hubness = HubnessOptions.from_config(cfg.get("hubness"))
        hub = _shipped(None if hubness is None else hubness.reference(embedded, validation), Path(tmp) / HUBNESS, extra)
        offsets = PrototypeShiftOptions.from_config(cfg.get("prototype_shift"))
        shift = _shipped(
            None if offsets is None else offsets.measure(embedded, manifest, catalog_pool(manifest, labels)),
            Path(tmp) / PROTOTYPE_SHIFT,
            extra,
        )
        novelty = NoveltyOptions.from_config(cfg.get("novelty"))
        _shipped(
            None if novelty is None else novelty.reference(embedded, manifest, validation), Path(tmp) / NOVELTY, extra
        )
        if cfg.include_index:
            catalog = catalog_pool(manifest, labels)
            extra[INDEX] = _catalog_index(cfg, runtime, train_cfg, catalog, labels, hub, shift, Path(tmp) / INDEX)
        check = search_parity(
            run,
            manifest,
            labels,
            photos["path"].head(cfg.verify.n_images).tolist(),
            [*cfg.formats, *([INT8] if cfg.quantize_int8 else [])],
            cfg.verify.search_pool,
            cfg.verify.k,
            extra.get(INDEX),
        )
        meta = export_bundle(
            run_dir,
            Path(cfg.output),
            batches,
            truth,
            formats=list(cfg.formats),
            opset=cfg.opset,
            int8=_int8_options(cfg),
            atol=cfg.verify.atol,
            extra_files=extra,
            calibration_for=_calibration_batches(cfg, manifest, labels, pre, train_cfg.data.max_image_pixels),
            check=check if cfg.verify.search else None,
            serving=serving_calibration(
                cfg, run, manifest, labels, train_cfg.data.max_image_pixels, train_cfg.data.draft_decode
            ),
        )
    log.info("bundle written to %s (default strategy %r)", cfg.output, meta.get("default_strategy"))
    for kind, m in meta["models"].items():
        for fmt, result in m["verification"].items():
            log.info("%-10s %-11s %s", kind, fmt, result)
    return meta
