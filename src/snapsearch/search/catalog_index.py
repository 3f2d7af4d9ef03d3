"""The catalog's partitioned index built for a runtime: from a pool of manifest rows (embedded here, in
batches) or from ``python embed.py`` shards; index items point at product-table positions."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from snapsearch.data.dataset import LabelMaps
from snapsearch.data.manifest import category_at
from snapsearch.retrieval import PartitionedIndex
from snapsearch.retrieval.qdrant_index import QdrantIndex, QdrantSpec
from snapsearch.retrieval.shards import ShardMismatchError, ids_digest, iter_shards, read_plan, read_shard
from snapsearch.retrieval.store import VectorStore
from snapsearch.runtime.batch import BatchIO, run_inference
from snapsearch.runtime.models import CascadeRuntime

log = logging.getLogger(__name__)


BACKENDS = ("faiss", "qdrant")


@dataclass(frozen=True)
class IndexSpec:
    """How to build the index (``conf/index/``): the backend; for FAISS a factory string, the metric and
    search parameters; for Qdrant where the collection lives (:class:`QdrantSpec`, flat keys in the config)."""

    backend: str = "faiss"
    factory: str | None = "Flat"
    metric: str = "ip"
    nprobe: int | None = None
    ef_search: int | None = None
    qdrant: QdrantSpec = field(default_factory=QdrantSpec)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"index.backend={self.backend!r}; use one of {BACKENDS}")
        if self.backend == "qdrant" and self.metric != "ip":
            raise ValueError("the Qdrant index searches by cosine similarity: use index.metric=ip")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> IndexSpec:
        """From an ``index`` config node, whose Qdrant keys (``url``, ``path``, ...) sit beside the others."""
        qdrant_keys = {f.name for f in fields(QdrantSpec)}
        qdrant = QdrantSpec(**{k: v for k, v in cfg.items() if k in qdrant_keys})
        return cls(**{k: v for k, v in cfg.items() if k not in qdrant_keys}, qdrant=qdrant)


def label_indices(frame: pd.DataFrame, labels: LabelMaps) -> tuple[np.ndarray, np.ndarray]:
    """Partition and product indices (product-table positions) of manifest rows."""
    cats = {c: i for i, c in enumerate(labels.categories)}
    prods = {p: i for i, p in enumerate(labels.products)}
    return (
        category_at(frame["category"], labels.partition_depth).map(cats).to_numpy(),
        frame["product_id"].map(prods).to_numpy(),
    )


def embed_pool(
    spec: IndexSpec, runtime: CascadeRuntime, pool: pd.DataFrame, labels: LabelMaps, io: BatchIO
) -> tuple[VectorStore, int]:
    """Embed the pool and index it (tagged with the embedder's fingerprint); also returns how many pool
    images were unreadable and skipped."""
    log.info("embedding %d pool images", len(pool))
    out = run_inference(runtime, pool, labels, classify=False, io=io, what="embedding the pool")
    return index_rows(spec, runtime, lambda: [out.embeddings], pool.loc[out.rows], labels), out.skipped


def shards_index(
    spec: IndexSpec, runtime: CascadeRuntime, pool: pd.DataFrame, labels: LabelMaps, folder: Path
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
    return index_rows(spec, runtime, lambda: (s.embeddings for s in iter_shards(folder, plan)), rows, labels), skipped


def index_rows(
    spec: IndexSpec,
    runtime: CascadeRuntime,
    chunks: Callable[[], Iterable[np.ndarray]],
    rows: pd.DataFrame,
    labels: LabelMaps,
) -> VectorStore:
    """Index the embeddings of manifest ``rows`` (in that order, as ``chunks`` yields them)."""
    item_part, item_prod = label_indices(rows, labels)
    metadata = {"image_id": rows["image_id"].to_numpy().astype(str)}
    if spec.backend == "qdrant":
        return QdrantIndex.build_streaming(
            spec.qdrant,
            chunks,
            item_part,
            item_prod,
            labels.categories,
            embedder_checksum=runtime.embedder_fingerprint,
            metadata=metadata,
        )
    return PartitionedIndex.build_streaming(
        chunks,
        item_partition=item_part,
        item_product=item_prod,
        n_partitions=len(labels.categories),
        factory=spec.factory,
        metric=spec.metric,
        nprobe=spec.nprobe,
        ef_search=spec.ef_search,
        embedder_checksum=runtime.embedder_fingerprint,
        metadata=metadata,
    )
