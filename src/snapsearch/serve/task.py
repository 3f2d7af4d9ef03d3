"""``python serve.py``: the Cascade of a bundle or run directory behind the HTTP service, with its live
catalog persisted beside the source."""

from __future__ import annotations

import logging
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from omegaconf import DictConfig

import snapsearch
from snapsearch.runtime import threads
from snapsearch.search.config import cascade_from_config
from snapsearch.search.live import LiveOptions
from snapsearch.search.shared_catalog import open_live_catalog
from snapsearch.serve.app import create_app
from snapsearch.serve.batcher import BatchOptions
from snapsearch.utils.layout import BundleDir, RunDir

log = logging.getLogger(__name__)


def build_app(cfg: DictConfig) -> FastAPI:
    """Set the compute threads, open the cascade, replay the live catalog's changes onto it, and wrap it in
    the service."""
    threads.apply(threads.ThreadSettings.from_config(cfg.threads))  # before the onnxruntime sessions open
    cascade = cascade_from_config(cfg)
    changes = cfg.catalog_changes
    if changes is None:
        changes = (
            BundleDir(Path(cfg.bundle)).catalog_changes if cfg.bundle else RunDir(Path(cfg.run_dir)).catalog_changes
        )
    live = open_live_catalog(cascade, changes, LiveOptions.from_config(cfg.get("live_catalog")))
    source = {
        "kind": "bundle" if cfg.bundle else "run_dir",
        "path": str(Path(cfg.bundle or cfg.run_dir).resolve()),
        "catalog_changes": str(Path(changes).resolve()),
        "version": snapsearch.__version__,
    }
    log.info(
        "serving %s (%d products, %d catalog changes replayed)", source["path"], cascade.products.n_live, live.n_changes
    )
    return create_app(
        live,
        name=cfg.name,
        source=source,
        max_upload_mb=cfg.max_upload_mb,
        batching=BatchOptions.from_config(cfg),
        max_images_per_product=int(cfg.max_images_per_product),
    )


def run_serve(cfg: DictConfig) -> None:
    app = build_app(cfg)
    log.info("page: http://%s:%d/  API docs: http://%s:%d/docs", cfg.host, cfg.port, cfg.host, cfg.port)
    uvicorn.run(
        app,
        host=cfg.host,
        port=int(cfg.port),
        log_level=cfg.log_level,
        loop=cfg.server.loop,
        http=cfg.server.http,
        access_log=bool(cfg.server.access_log),
    )
