"""A Cascade from a Hydra config, one opener for ``evaluate.py``, ``search.py`` and ``serve.py``: the source,
its runtime, the strategies of ``conf/cascade/`` (with the query types' routes), the index; the service adds
the rejection thresholds and the text search."""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from snapsearch.search.cascade import Cascade
from snapsearch.search.catalog_index import IndexSpec
from snapsearch.search.hubness import HubnessOptions
from snapsearch.search.novelty import NoveltyOptions
from snapsearch.search.prototype_shift import PrototypeShiftOptions
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


def open_cascade(cfg: DictConfig, **options: Any) -> Cascade:
    """The one way a config opens a Cascade (the evaluator, ``search.py``, ``serve.py``): ``bundle=`` (with
    ``runtime=``) or ``run_dir=`` (eager torch, ``embedder=``, ``device=``), the strategies of
    ``cascade.strategies`` and their type routes, ``index``/``index_path``, ``hubness``, ``prototype_shift``,
    ``novelty``,
    ``batch_size``/``num_workers``.
    ``options``: what the caller decides beyond that (the evaluator's pool, the service's rejection...)."""
    if (cfg.run_dir is None) == (cfg.bundle is None):
        raise ValueError("pass exactly one of bundle=<export bundle> or run_dir=<train run directory>")
    options = {
        "index_path": cfg.index_path,
        "index": IndexSpec.from_config(OmegaConf.to_container(cfg.index)),
        "strategies": {n: instantiate(c) for n, c in cfg.cascade.strategies.items() if c is not None},
        "default_strategy": cfg.cascade.get("default"),  # null: the bundle's validation choice
        "batch_size": cfg.batch_size,
        "num_workers": cfg.num_workers,
        "type_routes": dict(cfg.cascade.get("type_routes") or {}),
        "hubness": HubnessOptions.from_config(cfg.get("hubness")),
        "prototype_shift": PrototypeShiftOptions.from_config(cfg.get("prototype_shift")),
        "novelty": NoveltyOptions.from_config(cfg.get("novelty")),
    } | options
    if cfg.bundle is not None:
        return Cascade.from_bundle(cfg.bundle, runtime=cfg.runtime, **options)
    generic = OmegaConf.to_container(cfg.generic_embedder)
    return Cascade.from_run(cfg.run_dir, embedder=cfg.embedder, generic_embedder=generic, device=cfg.device, **options)


def cascade_from_config(cfg: DictConfig) -> Cascade:
    """The service's cascade (``search.py``, ``serve.py``): :func:`open_cascade` with the rejection
    thresholds (null: the bundle's), k's bound, barcodes, the query-type head and the text search."""
    return open_cascade(
        cfg,
        rejection=None if cfg.rejection is None else {str(k): float(v) for k, v in cfg.rejection.items()},
        k_max=cfg.k_max,
        barcodes=cfg.barcodes,
        query_types=cfg.query_types,
        text=text_options(cfg.text),
    )
