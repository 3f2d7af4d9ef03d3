"""The export task: real verification images from the run's own data, then the verified bundle."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from snapsearch.data.dataset import LabelMaps, ManifestDataset
from snapsearch.data.preprocess import Preprocess
from snapsearch.data.sources import load_manifest
from snapsearch.deploy.export import export_bundle
from snapsearch.models.artifact import META_FILE
from snapsearch.runtime.batch import BatchIO
from snapsearch.runtime.models import TorchRuntime
from snapsearch.search.catalog_index import IndexSpec, embed_pool
from snapsearch.search.products import PRODUCTS_FILE, ProductTable
from snapsearch.search.sources import catalog_pool
from snapsearch.utils.atomic import ensure_writable_dir
from snapsearch.utils.layout import INDEX, LABELS, STAGES, RunDir

log = logging.getLogger(__name__)


def _verification_batch(
    frame, labels: LabelMaps, preprocess: Preprocess, n: int, max_pixels: int
) -> tuple[np.ndarray, np.ndarray]:
    ds = ManifestDataset(frame, labels, preprocess.eval_transform(), max_pixels=max_pixels, draft_size=None)
    items = [it for it in (ds[i] for i in range(min(len(ds), 2 * n))) if it is not None][:n]
    if not items:
        raise ValueError("no readable image to verify the export on; check the run's data")
    return np.stack([it["image"].numpy() for it in items]), np.array([it["label"] for it in items])


def _catalog_index(
    cfg: DictConfig, run_dir: Path, train_cfg: DictConfig, catalog, labels: LabelMaps, out: Path
) -> Path:
    """The catalog's partitioned index built with the run's embedder, for a deployment to ship."""
    io = BatchIO(cfg.batch_size, cfg.num_workers, train_cfg.data.max_image_pixels, train_cfg.data.draft_decode)
    spec = IndexSpec(**OmegaConf.to_container(cfg.index))
    index, _ = embed_pool(spec, TorchRuntime.from_run_dir(run_dir), catalog, labels, io)
    index.save(out)
    return out


def run_export(cfg: DictConfig) -> dict[str, Any]:
    run = RunDir(Path(cfg.run_dir))
    run_dir = run.root
    ensure_writable_dir(Path(cfg.output).resolve().parent, "bundle's parent folder")
    for stage in STAGES:
        if not (run.stage(stage) / META_FILE).is_file():
            raise FileNotFoundError(f"{run.stage(stage)} has no trained {stage}; train it with stages=[{stage}]")
    train_cfg = OmegaConf.load(run.config)
    labels = LabelMaps.load(run.labels)
    manifest = load_manifest(train_cfg.data)
    photos = manifest[(manifest["domain"] == "query") & (manifest["split"] == "test")]
    photos = photos.sample(frac=1.0, random_state=0)  # several categories, not the first one only
    pre = {
        k: Preprocess.from_dict(OmegaConf.to_container(OmegaConf.load(run.stage(k) / META_FILE).preprocess))
        for k in STAGES
    }
    batches, truth = {}, None
    for kind, contract in pre.items():
        batches[kind], truth = _verification_batch(
            photos, labels, contract, cfg.verify.n_images, train_cfg.data.max_image_pixels
        )
    extra = {LABELS: run.labels, "source_config.yaml": run.config}
    with tempfile.TemporaryDirectory() as tmp:
        ProductTable.from_manifest(manifest, labels).save(Path(tmp) / PRODUCTS_FILE)
        extra[PRODUCTS_FILE] = Path(tmp) / PRODUCTS_FILE
        if cfg.include_index:
            catalog = catalog_pool(manifest, labels)
            extra[INDEX] = _catalog_index(cfg, run_dir, train_cfg, catalog, labels, Path(tmp) / INDEX)
        meta = export_bundle(
            run_dir,
            Path(cfg.output),
            batches,
            truth,
            formats=list(cfg.formats),
            opset=cfg.opset,
            quantize_int8=cfg.quantize_int8,
            atol=cfg.verify.atol,
            extra_files=extra,
        )
    log.info("bundle written to %s", cfg.output)
    for kind, m in meta["models"].items():
        for fmt, result in m["verification"].items():
            log.info("%-10s %-11s %s", kind, fmt, result)
    return meta
