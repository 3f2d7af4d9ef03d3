"""Type-checked, never run: every store implementation satisfies the protocol the strategies, the Cascade and
the live catalog are written against (``mypy`` in .ci/run checks this module with the package)."""

from __future__ import annotations

from snapsearch.retrieval.index import PartitionedIndex
from snapsearch.retrieval.live_index import LiveIndex
from snapsearch.retrieval.milvus_store import MilvusStore
from snapsearch.retrieval.qdrant_index import QdrantIndex
from snapsearch.retrieval.store import MutableVectorStore, VectorStore


def read_only(index: PartitionedIndex) -> VectorStore:
    return index


def live(index: LiveIndex) -> MutableVectorStore:
    return index


def qdrant(index: QdrantIndex) -> MutableVectorStore:
    return index


def milvus(index: MilvusStore) -> MutableVectorStore:
    return index
