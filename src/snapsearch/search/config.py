"""A Cascade from a Hydra config (``search.py``, ``serve.py``): the source, its runtime, the strategies of
``conf/cascade/``, the index and the rejection thresholds."""

from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from snapsearch.search.cascade import Cascade
from snapsearch.search.catalog_index import IndexSpec


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
    }
    if cfg.bundle is not None:
        return Cascade.from_bundle(cfg.bundle, runtime=cfg.runtime, **options)
    generic = OmegaConf.to_container(cfg.generic_embedder)
    return Cascade.from_run(cfg.run_dir, embedder=cfg.embedder, generic_embedder=generic, device=cfg.device, **options)
