"""The Qdrant backend (``index=qdrant``): :class:`~snapsearch.retrieval.qdrant_index.QdrantIndex`, embedded or
a server; its config keys are :class:`~snapsearch.retrieval.qdrant_index.QdrantSpec`'s."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from snapsearch.retrieval.backends import Backend, IndexSpec, Items, register
from snapsearch.retrieval.qdrant_index import POINTER_FILE, QdrantIndex, QdrantSpec


def build(spec: IndexSpec, items: Items) -> QdrantIndex:
    return QdrantIndex.build_streaming(
        spec.options,
        items.chunks,
        items.item_partition,
        items.item_product,
        items.categories,
        embedder_checksum=items.embedder_checksum,
        metadata=items.metadata,
    )


def load(path: Path, expected_embedder_checksum: str | None, expected_dim: int | None) -> QdrantIndex:
    return QdrantIndex.load(path, expected_embedder_checksum=expected_embedder_checksum)


def check(spec: IndexSpec) -> None:
    if spec.metric != "ip":
        raise ValueError("the Qdrant index searches by cosine similarity: use index.metric=ip")


def excluding(store: QdrantIndex, item_ids: np.ndarray) -> QdrantIndex:
    return store.excluding(item_ids)


BACKEND = register(
    Backend(
        name="qdrant",
        options=QdrantSpec,
        build=build,
        load=load,
        types=(QdrantIndex,),
        mutable=lambda store: store,
        excluding=excluding,
        pointer=POINTER_FILE,
        check=check,
    )
)
