"""A Cascade from a Hydra config (``search.py``, ``serve.py``): the source, its runtime, the strategies of
``conf/cascade/`` (with the query types' routes), the index, the rejection thresholds and the text search."""

from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from snapsearch.search.cascade import Cascade
from snapsearch.search.catalog_index import IndexSpec
from snapsearch.search.text import TextOptions


def text_options(text_cfg: DictConfig | None) -> TextOptions | None:
    """The ``text`` group as options (None when it is off)."""
    if text_cfg is None or not text_cfg.enabled:
        return None
    return TextOptions(
        encoder=instantiate(text_cfg.encoder),
        weight=float(text_cfg.weight),
        depth=int(text_cfg.depth),
        min_chars=int(text_cfg.min_chars),
        min_confidence=float(text_cfg.min_confidence),
        ocr_categories=None if text_cfg.ocr_categories is None else list(text_cfg.ocr_categories),
    )


def cascade_from_config(cfg: DictConfig) -> Cascade:
    """Open ``bundle=`` (with ``runtime=``) or ``run_dir=`` (eager torch) with the configured strategies."""
    if (cfg.run_dir is None) == (cfg.bundle is None):
        raise ValueError("pass exactly one of bundle=<export bundle> or run_dir=<train run directory>")
    options = {
        "index_path": cfg.index_path,
        "index": IndexSpec.from_config(OmegaConf.to_container(cfg.index)),
        "strategies": {n: instantiate(c) for n, c in cfg.cascade.strategies.items() if c is not None},
        "default_strategy": cfg.cascade.default,
        "batch_size": cfg.batch_size,
        "num_workers": cfg.num_workers,
        "rejection": {str(k): float(v) for k, v in (cfg.rejection or {}).items()},
        "k_max": cfg.k_max,
        "barcodes": cfg.barcodes,
        "query_types": cfg.query_types,
        "type_routes": dict(cfg.cascade.get("type_routes") or {}),
        "text": text_options(cfg.text),
    }
    if cfg.bundle is not None:
        return Cascade.from_bundle(cfg.bundle, runtime=cfg.runtime, **options)
    generic = OmegaConf.to_container(cfg.generic_embedder)
    return Cascade.from_run(cfg.run_dir, embedder=cfg.embedder, generic_embedder=generic, device=cfg.device, **options)
