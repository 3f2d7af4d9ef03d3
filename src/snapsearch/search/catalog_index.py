"""The catalog's partitioned index built for a runtime: from a pool of manifest rows (embedded here, in
batches) or from ``python embed.py`` shards; index items point at product-table positions."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from snapsearch.data.dataset import LabelMaps
from snapsearch.data.manifest import category_at
from snapsearch.retrieval.backends import IndexSpec, Items
from snapsearch.retrieval.hubness import DENSITY, HubReference
from snapsearch.retrieval.prototype_shift import PrototypeShift
from snapsearch.retrieval.shards import ShardMismatchError, ids_digest, iter_shards, read_plan, read_shard
from snapsearch.retrieval.store import VectorStore
from snapsearch.runtime.batch import BatchIO, run_inference
from snapsearch.runtime.models import CascadeRuntime
from snapsearch.search.prototype_shift import shifted_chunks

log = logging.getLogger(__name__)


def label_indices(frame: pd.DataFrame, labels: LabelMaps) -> tuple[np.ndarray, np.ndarray]:
    """Partition and product indices (product-table positions) of manifest rows."""
    cats = {c: i for i, c in enumerate(labels.categories)}
    prods = {p: i for i, p in enumerate(labels.products)}
    return (
        category_at(frame["category"], labels.partition_depth).map(cats).to_numpy(),
        frame["product_id"].map(prods).to_numpy(),
    )


def embed_pool(
    spec: IndexSpec,
    runtime: CascadeRuntime,
    pool: pd.DataFrame,
    labels: LabelMaps,
    io: BatchIO,
    hub: HubReference | None = None,
    shift: PrototypeShift | None = None,
) -> tuple[VectorStore, int]:
    """Embed the pool and index it (tagged with the embedder's fingerprint); also returns how many pool
    images were unreadable and skipped."""
    log.info("embedding %d pool images", len(pool))
    out = run_inference(runtime, pool, labels, classify=False, io=io, what="embedding the pool")
    built = index_rows(spec, runtime, lambda: [out.embeddings], pool.loc[out.rows], labels, hub, shift)
    return built, out.skipped


def shards_index(
    spec: IndexSpec,
    runtime: CascadeRuntime,
    pool: pd.DataFrame,
    labels: LabelMaps,
    folder: Path,
    hub: HubReference | None = None,
    shift: PrototypeShift | None = None,
) -> tuple[VectorStore, int]:
    """The pool's index built from ``python embed.py`` shards, read one shard at a time; refused when the
    shards are of another pool (order included) or another embedder than the runtime's."""
    plan = read_plan(folder)
    if plan.embedder_fingerprint != runtime.embedder_fingerprint:
        raise ShardMismatchError(f"{folder} was embedded by another embedder than embedder={runtime.name}'s")
    if plan.ids_sha256 != ids_digest(pool["image_id"].tolist()):
        raise ShardMismatchError(f"{folder} holds another pool than this protocol's {len(pool)} images (or order)")
    positions, skipped = [], 0
    for shard in range(plan.n_shards):
        s = read_shard(folder, shard, embeddings=False)
        positions.append(s.positions)
        skipped += s.n_skipped
    rows = pool.iloc[np.concatenate(positions)]
    log.info("index from %d shards of %s (%d images, %d skipped)", plan.n_shards, folder, len(rows), skipped)

    def chunks() -> Iterator[np.ndarray]:
        return (s.embeddings for s in iter_shards(folder, plan))

    built = index_rows(spec, runtime, chunks, rows, labels, hub, shift)
    return built, skipped


def index_rows(
    spec: IndexSpec,
    runtime: CascadeRuntime,
    chunks: Callable[[], Iterable[np.ndarray]],
    rows: pd.DataFrame,
    labels: LabelMaps,
    hub: HubReference | None = None,
    shift: PrototypeShift | None = None,
) -> VectorStore:
    """Index the embeddings of manifest ``rows`` (in that order, as ``chunks`` yields them), moved by the
    prototype ``shift`` when one is given; with a hubness reference each item's density (of its indexed
    vector) is a metadata column (one more pass over the chunks)."""
    item_part, item_prod = label_indices(rows, labels)
    chunks = shifted_chunks(shift, chunks, item_part, rows["product_id"].to_numpy())
    metadata = {"image_id": rows["image_id"].to_numpy().astype(str)}
    if hub is not None:
        metadata[DENSITY] = hub.densities(chunks())
    return spec.build(Items(chunks, item_part, item_prod, labels.categories, runtime.embedder_fingerprint, metadata))
