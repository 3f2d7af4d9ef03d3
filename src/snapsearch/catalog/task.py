"""The embed task: a catalog of any size -> embedding shards on disk, resumable, on any Lightning strategy.

``python embed.py run_dir=DIR [embedder=generic] [shard_size=N] [trainer.strategy=ddp trainer.devices=8]``;
then ``python evaluate.py run_dir=DIR catalog_shards=<out>`` builds the index from the shards.
"""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from snapsearch.catalog.predict import EmbedPredictor, PendingShards, ShardWriter
from snapsearch.data.dataset import LabelMaps, ManifestDataset
from snapsearch.data.protocols import answerable
from snapsearch.data.sources import load_manifest
from snapsearch.models.artifact import fingerprint
from snapsearch.retrieval.shards import ShardPlan, ids_digest, open_plan, pending_shards
from snapsearch.runtime.factory import eager_embedder
from snapsearch.utils.atomic import ensure_writable_dir
from snapsearch.utils.layout import LABELS, resolve_source
from snapsearch.utils.lightning_progress import lightning_progress_bar

log = logging.getLogger(__name__)


def run_embed(cfg: DictConfig) -> Path:
    """Embed the pool of ``protocol`` into ``out``; shards already there (same plan) are not redone."""
    if cfg.bundle is not None:
        raise ValueError("embed.py runs the eager embedder of a run directory: pass run_dir=, not bundle=")
    if int(cfg.shard_size) < 1:
        raise ValueError(f"shard_size={cfg.shard_size}: a shard holds at least one image")
    source, train_cfg = resolve_source(cfg.run_dir, cfg.bundle)
    data_cfg = cfg.data if cfg.data is not None else train_cfg.data
    labels = LabelMaps.load(source / LABELS)
    _, pool, _ = answerable(load_manifest(data_cfg), cfg.protocol, labels)
    embedder, preprocess = eager_embedder(source, cfg.embedder, OmegaConf.to_container(cfg.generic_embedder))
    plan = ShardPlan(
        n_rows=len(pool),
        shard_size=int(cfg.shard_size),
        ids_sha256=ids_digest(pool["image_id"].tolist()),
        embedder_fingerprint=fingerprint(embedder),
        embedding_dim=int(embedder.embedding_dim),
    )
    folder = open_plan(ensure_writable_dir(Path(cfg.out), "shard folder"), plan)
    pending = pending_shards(folder, plan)
    log.info("%s: %d of %d shards to embed (%d images)", folder, len(pending), plan.n_shards, plan.n_rows)
    if pending:
        images = ManifestDataset(
            pool.reset_index(drop=True),
            labels,
            preprocess.eval_transform(),
            max_pixels=data_cfg.max_image_pixels,
            draft_size=preprocess.resize_size if data_cfg.draft_decode else None,
        )
        writer = ShardWriter(folder, plan)
        trainer = instantiate(cfg.trainer, callbacks=[writer, lightning_progress_bar(cfg.progress_every_pct)])
        data = PendingShards(images, plan, pending, cfg.batch_size, cfg.num_workers)
        trainer.predict(EmbedPredictor(embedder), datamodule=data, return_predictions=False)
        trainer.strategy.barrier()
        log.info("rank %d wrote %d shards", trainer.global_rank, len(writer.written))
        if not trainer.is_global_zero:
            return folder
    left = pending_shards(folder, plan)
    if left:
        raise RuntimeError(f"{len(left)} shards were not written (e.g. {left[:5]}); run the same command again")
    log.info("all %d shards of %s are complete", plan.n_shards, folder)
    return folder
