"""The FAISS backend (``index.backend=faiss``, the default): a :class:`PartitionedIndex` in this process,
mutable as a :class:`LiveIndex`; a saved store is an index folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snapsearch.retrieval.backends import Backend, IndexSpec, Items, register
from snapsearch.retrieval.index import PartitionedIndex
from snapsearch.retrieval.live_index import LiveIndex


@dataclass(frozen=True)
class FaissOptions:
    """FAISS reads only the common keys (factory, metric, nprobe, ef_search)."""


def build(spec: IndexSpec, items: Items) -> PartitionedIndex:
    return PartitionedIndex.build_streaming(
        items.chunks,
        item_partition=items.item_partition,
        item_product=items.item_product,
        n_partitions=len(items.categories),
        factory=spec.factory or "Flat",
        metric=spec.metric,
        nprobe=spec.nprobe,
        ef_search=spec.ef_search,
        embedder_checksum=items.embedder_checksum,
        metadata=dict(items.metadata),
    )


def load(path: Path, expected_embedder_checksum: str | None, expected_dim: int | None) -> PartitionedIndex:
    return PartitionedIndex.load(path, expected_embedder_checksum=expected_embedder_checksum, expected_dim=expected_dim)


def mutable(store: PartitionedIndex) -> LiveIndex:
    """The same data as a :class:`LiveIndex` (FAISS structures shared, not copied)."""
    return store if isinstance(store, LiveIndex) else LiveIndex.from_index(store)


def excluding(store: PartitionedIndex, item_ids: np.ndarray) -> LiveIndex:
    """A tombstoned view over the same FAISS structures (the store itself is unchanged)."""
    view = LiveIndex.from_index(store)
    view.remove(item_ids)
    return view


BACKEND = register(
    Backend(
        name="faiss",
        options=FaissOptions,
        build=build,
        load=load,
        types=(PartitionedIndex,),
        mutable=mutable,
        excluding=excluding,
    )
)
