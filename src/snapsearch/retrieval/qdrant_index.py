"""The partitioned index on Qdrant: one collection, the category as an indexed keyword payload (a tenant),
routing as a ``MatchAny`` filter, global search as no filter. Same interface as the FAISS
:class:`~snapsearch.retrieval.index.PartitionedIndex`, so every strategy runs on it unchanged.

``location=":memory:"`` or ``path=`` runs Qdrant's embedded mode inside this process (exact search over
numpy, payload indexes ignored; what the tests use); ``url=`` talks to a Qdrant server or cluster (HNSW,
quantisation, shards and replicas are the server's). With ``shard_key_per_category`` the collection uses
custom sharding, one shard key per category, so a routed query touches only its categories' shards: a
server feature, refused in embedded mode.

Point ids are pool positions, so a bulk load is resumable: a rerun uploads only the ids not yet there.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from snapsearch.retrieval.faiss_factory import l2_normalize
from snapsearch.retrieval.index import SearchHits
from snapsearch.retrieval.index_build import check_items, read_chunks
from snapsearch.retrieval.index_io import IndexFormatError, IndexMismatchError
from snapsearch.utils.atomic import atomic_save_arrays, atomic_write_text
from snapsearch.utils.progress import track

log = logging.getLogger(__name__)

POINTER_FILE = "qdrant.json"
ARRAYS_FILE = "items.npz"
CATEGORY = "category"
API_KEY_ENV = "QDRANT_API_KEY"


@dataclass(frozen=True)
class QdrantSpec:
    """Where the collection lives and how it is laid out (``conf/index/qdrant.yaml``)."""

    collection: str = "snapsearch"
    location: str | None = ":memory:"
    path: str | None = None
    url: str | None = None
    upload_batch: int = 512
    shard_key_per_category: bool = False
    shards_per_key: int = 1
    replication_factor: int = 1

    @property
    def embedded(self) -> bool:
        return self.url is None

    def client(self) -> Any:
        from qdrant_client import QdrantClient

        if self.url is not None:
            return QdrantClient(url=self.url, api_key=os.environ.get(API_KEY_ENV))
        if self.shard_key_per_category:
            raise ValueError(
                "index.shard_key_per_category needs a Qdrant server (index.url=...): embedded mode has no shards"
            )
        if self.path is not None:
            return QdrantClient(path=self.path)
        return QdrantClient(location=self.location or ":memory:")


class QdrantIndex:
    """A Qdrant collection behind the partitioned-index interface (cosine similarity, exact in embedded mode)."""

    factory = "qdrant"
    metric = "ip"
    normalize = True
    nprobe = None
    ef_search = None

    def __init__(
        self,
        spec: QdrantSpec,
        client: Any,
        *,
        dim: int,
        categories: Sequence[str],
        item_partition: np.ndarray,
        item_product: np.ndarray,
        embedder_checksum: str | None,
        metadata: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        self.spec = spec
        self.client = client
        self._dim = dim
        self.categories = list(categories)
        self.n_partitions = len(self.categories)
        self.item_partition = np.asarray(item_partition, dtype=np.int64)
        self.item_product = np.asarray(item_product)
        self.embedder_checksum = embedder_checksum
        self.metadata = dict(metadata or {})
        self.fallbacks: dict[str, str] = {}
        self.removed = np.zeros(len(self.item_partition), dtype=bool)
        self.upload_counts: dict[str, int] = {}
        self._excluded: list[int] = []

    # ------------------------------------------------------------------ building
    @classmethod
    def build_streaming(
        cls,
        spec: QdrantSpec,
        chunks: Callable[[], Iterable[np.ndarray]],
        item_partition: Sequence[int] | np.ndarray,
        item_product: Sequence[Any] | np.ndarray,
        categories: Sequence[str],
        embedder_checksum: str | None = None,
        metadata: Mapping[str, np.ndarray] | None = None,
    ) -> QdrantIndex:
        """Upload a pool chunk by chunk (batched upserts, with progress). Resumable: ids already in the
        collection (same embedder, same size) are not uploaded again."""
        partitions = np.asarray(item_partition).astype(np.int64, copy=False)
        products = np.asarray(item_product)
        n = len(partitions)
        check_items(n, partitions, products, len(categories), metadata)
        client = spec.client()
        index: QdrantIndex | None = None
        written = skipped = 0
        chunk_stream = read_chunks(chunks, n, normalize=True)
        for start, x in track(chunk_stream, n, f"uploading to Qdrant {spec.collection}", size=lambda c: len(c[1])):
            if index is None:
                index = cls(
                    spec,
                    client,
                    dim=x.shape[1],
                    categories=categories,
                    item_partition=partitions,
                    item_product=products,
                    embedder_checksum=embedder_checksum,
                    metadata=metadata,
                )
                index._open_collection(n)
            ids = np.arange(start, start + len(x))
            present = index._present(ids)
            todo = ~np.isin(ids, present)
            index._upsert(ids[todo], x[todo])
            written, skipped = written + int(todo.sum()), skipped + int((~todo).sum())
        assert index is not None  # read_chunks yields at least one chunk for a non-empty pool
        log.info("Qdrant %s: %d points written, %d already there", spec.collection, written, skipped)
        index.upload_counts = {"written": written, "already_present": skipped}
        return index

    def _open_collection(self, n_items: int) -> None:
        """Create the collection (and shard keys), or check that an existing one is this pool's."""
        from qdrant_client import models as m

        name = self.spec.collection
        if self.client.collection_exists(name):
            config = self.client.get_collection(name).config
            stored = (config.metadata or {}).get("embedder_checksum")
            size = config.params.vectors.size
            count = self.client.count(name, exact=True).count
            if stored != self.embedder_checksum or size != self._dim or count > n_items:
                raise IndexMismatchError(
                    f"Qdrant collection {name!r} holds {count} {size}-d points of embedder {stored!r}, not this pool's "
                    f"{n_items} {self._dim}-d embeddings of {self.embedder_checksum!r}: drop it or use another "
                    "index.collection"
                )
            return
        sharding = {}
        if self.spec.shard_key_per_category:
            sharding = {"sharding_method": m.ShardingMethod.CUSTOM, "shard_number": self.spec.shards_per_key}
        self.client.create_collection(
            name,
            vectors_config=m.VectorParams(size=self._dim, distance=m.Distance.COSINE),
            replication_factor=self.spec.replication_factor,
            metadata={"embedder_checksum": self.embedder_checksum, "categories": self.categories},
            **sharding,
        )
        if self.spec.shard_key_per_category:
            for category in self.categories:
                self.client.create_shard_key(name, shard_key=category)
        if not self.spec.embedded:  # embedded mode ignores payload indexes (and warns)
            params = m.KeywordIndexParams(type=m.KeywordIndexType.KEYWORD, is_tenant=True)
            self.client.create_payload_index(name, CATEGORY, field_schema=params)

    def _present(self, ids: np.ndarray) -> np.ndarray:
        found = self.client.retrieve(self.spec.collection, ids=ids.tolist(), with_payload=False, with_vectors=False)
        return np.array([int(r.id) for r in found], dtype=np.int64)

    def _upsert(self, ids: np.ndarray, x: np.ndarray) -> None:
        from qdrant_client import models as m

        for lo in range(0, len(ids), self.spec.upload_batch):
            batch_ids = ids[lo : lo + self.spec.upload_batch]
            by_key = (
                {c: batch_ids[self.item_partition[batch_ids] == p] for p, c in enumerate(self.categories)}
                if self.spec.shard_key_per_category
                else {None: batch_ids}
            )
            for key, key_ids in by_key.items():
                if not len(key_ids):
                    continue
                rows = np.searchsorted(ids, key_ids)
                payloads = [
                    {CATEGORY: self.categories[self.item_partition[i]], "product": int(i)} for i in key_ids.tolist()
                ]
                self.client.upsert(
                    self.spec.collection,
                    points=m.Batch(ids=key_ids.tolist(), vectors=x[rows].tolist(), payloads=payloads),
                    shard_key_selector=key,
                )

    # ------------------------------------------------------------------ facts
    @property
    def dim(self) -> int:
        return self._dim

    @property
    def n_items(self) -> int:
        return len(self.item_product)

    @property
    def n_live(self) -> int:
        return int(self.n_items - self.removed.sum())

    @property
    def partition_sizes(self) -> np.ndarray:
        return np.bincount(self.item_partition, minlength=self.n_partitions)

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "qdrant",
            "spec": asdict(self.spec),
            "dim": self.dim,
            "metric": self.metric,
            "embedder_checksum": self.embedder_checksum,
            "n_items": self.n_items,
            "n_partitions": self.n_partitions,
            "categories": self.categories,
            "metadata": sorted(self.metadata),
        }

    # ------------------------------------------------------------------ search
    def search_global(self, queries: np.ndarray, k: int) -> list[SearchHits]:
        return self.search_routed(queries, [None] * len(np.atleast_2d(queries)), k)

    def search_partitions(
        self, queries: np.ndarray, partitions_per_query: Sequence[Sequence[int]], k: int
    ) -> list[SearchHits]:
        return self.search_routed(queries, list(partitions_per_query), k)

    def search_routed(self, queries: np.ndarray, routed: Sequence[Sequence[int] | None], k: int) -> list[SearchHits]:
        """Per query: no filter where ``routed`` is None, else a ``MatchAny`` on the routed categories (and,
        with custom sharding, only their shard keys)."""
        from qdrant_client import models as m

        q = self._queries(queries)
        if len(routed) != len(q):
            raise ValueError(f"got routes for {len(routed)} queries, but {len(q)} queries")
        if k < 1:
            raise ValueError(f"k={k}: need at least 1 result per query")
        requests, empty = [], []
        for i, (vector, route) in enumerate(zip(q, routed, strict=True)):
            names: list[Any] | None = (
                None if route is None else [self.categories[self._check_partition(p)] for p in set(route)]
            )
            if names == []:
                empty.append(i)
            must: list[Any] = [] if names is None else [m.FieldCondition(key=CATEGORY, match=m.MatchAny(any=names))]
            must_not: list[Any] = [m.HasIdCondition(has_id=list(self._excluded))] if self._excluded else []
            requests.append(
                m.QueryRequest(
                    query=vector.tolist(),
                    filter=m.Filter(must=must, must_not=must_not) if must or must_not else None,
                    limit=k,
                    shard_key=names if self.spec.shard_key_per_category else None,
                )
            )
        answers = self.client.query_batch_points(self.spec.collection, requests=requests)
        hits = []
        for i, answer in enumerate(answers):
            ids = np.array([] if i in empty else [int(p.id) for p in answer.points], dtype=np.int64)
            scores = np.array([] if i in empty else [p.score for p in answer.points], dtype=np.float32)
            order = np.lexsort((ids, -scores))[:k]  # ties by item id, as the FAISS index orders them
            hits.append(SearchHits(ids[order], scores[order]))
        return hits

    def _queries(self, queries: np.ndarray) -> np.ndarray:
        q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise IndexMismatchError(
                f"queries have shape {np.shape(queries)}, but this index holds {self.dim}-d embeddings"
            )
        if not np.isfinite(q).all():
            raise ValueError("queries contain NaN or inf")
        return l2_normalize(q)

    def _check_partition(self, partition: int) -> int:
        p = int(partition)
        if not 0 <= p < self.n_partitions:
            raise ValueError(f"partition {partition} out of range: this index has 0..{self.n_partitions - 1}")
        return p

    # ------------------------------------------------------------------ changes
    def add(
        self,
        embeddings: np.ndarray,
        item_partition: np.ndarray,
        item_product: np.ndarray,
        metadata: Mapping[str, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Upsert new points (ids follow the pool's); returns their item ids."""
        x = l2_normalize(np.ascontiguousarray(embeddings, dtype=np.float32))
        parts = np.asarray(item_partition, dtype=np.int64).reshape(-1)
        for p in parts.tolist():
            self._check_partition(p)
        ids = np.arange(self.n_items, self.n_items + len(x))
        self.item_partition = np.concatenate([self.item_partition, parts])
        self.item_product = np.concatenate(
            [self.item_product, np.asarray(item_product).astype(self.item_product.dtype)]
        )
        meta = dict(metadata or {})
        self.metadata = {k: np.concatenate([v, np.asarray(meta[k])]) for k, v in self.metadata.items()}
        self.removed = np.concatenate([self.removed, np.zeros(len(x), dtype=bool)])
        self._upsert(ids, x)
        return ids

    def remove(self, item_ids: np.ndarray) -> None:
        from qdrant_client import models as m

        ids = np.asarray(item_ids, dtype=np.int64)
        if len(ids):
            self.client.delete(self.spec.collection, points_selector=m.PointIdsList(points=ids.tolist()))
            self.removed[ids] = True

    def excluding(self, item_ids: np.ndarray) -> QdrantIndex:
        """A view that never returns ``item_ids`` (a ``must_not`` filter); the collection is unchanged."""
        view = copy.copy(self)
        view._excluded = sorted({*self._excluded, *np.asarray(item_ids, dtype=np.int64).tolist()})
        return view

    # ------------------------------------------------------------------ persistence
    @property
    def persistent(self) -> bool:
        """False for ``:memory:``: the vectors die with the process."""
        return not (self.spec.embedded and self.spec.path is None)

    def save(self, path: str | Path) -> Path:
        """A pointer to the collection (where it lives, what it holds) plus the item arrays; the vectors stay
        in Qdrant. Refused for ``:memory:``, whose vectors die with the process."""
        if not self.persistent:
            raise ValueError("an in-memory Qdrant index cannot be saved: set index.path= or index.url=")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        arrays = {"item_partition": self.item_partition, "item_product": self.item_product, "removed": self.removed}
        arrays |= {f"meta__{k}": np.asarray(v) for k, v in self.metadata.items()}
        atomic_save_arrays(path / ARRAYS_FILE, arrays)
        atomic_write_text(path / POINTER_FILE, json.dumps(self.describe(), indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path, expected_embedder_checksum: str | None = None) -> QdrantIndex:
        path = Path(path)
        try:
            meta = json.loads((path / POINTER_FILE).read_text())
            arrays = np.load(path / ARRAYS_FILE, allow_pickle=False)
        except (OSError, ValueError, KeyError) as err:
            raise IndexFormatError(f"{path} is not a saved Qdrant index pointer ({err}); rebuild it") from err
        if expected_embedder_checksum is not None and meta["embedder_checksum"] != expected_embedder_checksum:
            raise IndexMismatchError(f"Qdrant index at {path} was built by another embedder; rebuild the index")
        spec = QdrantSpec(**meta["spec"])
        index = cls(
            spec,
            spec.client(),
            dim=int(meta["dim"]),
            categories=meta["categories"],
            item_partition=arrays["item_partition"],
            item_product=arrays["item_product"],
            embedder_checksum=meta["embedder_checksum"],
            metadata={k[len("meta__") :]: arrays[k] for k in arrays.files if k.startswith("meta__")},
        )
        index.removed = arrays["removed"].copy()
        return index
