"""The vector-store interface every strategy, the Cascade and the live catalog run on, and the helpers that
dispatch to the implementation of a store's backend (:mod:`snapsearch.retrieval.backends`: FAISS in-process,
Qdrant embedded or server, Milvus server)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from snapsearch.retrieval.backends import backend_of, load_saved
from snapsearch.retrieval.index import SearchHits


class StoreUnavailable(RuntimeError):
    """The store's server cannot be reached or refused the call: the caller answers "try again later" (the
    service: 503), never a wrong or empty result."""


class VectorStore(Protocol):
    """Items (vectors with a partition, a product and metadata) searched globally or within partitions."""

    factory: str
    embedder_checksum: str | None
    n_partitions: int
    item_partition: np.ndarray
    item_product: np.ndarray
    metadata: dict[str, np.ndarray]

    @property
    def metric(self) -> str:
        """ "ip" or "l2" (read-only: a store's metric is fixed when it is built)."""
        ...

    @property
    def dim(self) -> int: ...

    @property
    def n_items(self) -> int: ...

    def search_global(self, queries: np.ndarray, k: int) -> list[SearchHits]: ...

    def search_partitions(
        self, queries: np.ndarray, partitions_per_query: Sequence[Sequence[int]], k: int
    ) -> list[SearchHits]: ...

    def search_routed(
        self, queries: np.ndarray, routed: Sequence[Sequence[int] | None], k: int
    ) -> list[SearchHits]: ...

    def describe(self) -> dict[str, Any]: ...

    @property
    def persistent(self) -> bool:
        """Whether :meth:`save` can write something a later process can load."""
        ...

    def save(self, path: str | Path) -> Path: ...


class MutableVectorStore(VectorStore, Protocol):
    """A store that takes catalog changes while it serves."""

    removed: np.ndarray

    def add(
        self,
        embeddings: np.ndarray,
        item_partition: np.ndarray,
        item_product: np.ndarray,
        metadata: Mapping[str, np.ndarray] | None = None,
    ) -> np.ndarray: ...

    def remove(self, item_ids: np.ndarray) -> None: ...


def load_store(
    path: str | Path, expected_embedder_checksum: str | None = None, expected_dim: int | None = None
) -> VectorStore:
    """A saved store: a FAISS index folder, or a backend's pointer to its collection."""
    return load_saved(path, expected_embedder_checksum, expected_dim)


def mutable(store: VectorStore) -> MutableVectorStore:
    """The store as one that takes changes (a FAISS index becomes a :class:`LiveIndex` over the same data)."""
    return backend_of(store).mutable(store)


def excluding(store: VectorStore, item_ids: np.ndarray) -> VectorStore:
    """A view of the store that never returns ``item_ids`` (the store itself is unchanged)."""
    return backend_of(store).excluding(store, item_ids)
