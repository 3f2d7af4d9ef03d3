"""The partitioned index on a Milvus server (``index=milvus``): one collection per catalog, the category as the
**partition key** (Milvus hashes each category into one of the collection's partitions and prunes a filtered
search to them), a routed search as a ``category in [...]`` filter, global search as no filter; HNSW (or IVF,
or FLAT for exact answers) with inner product on L2-normalised vectors. Same interface as the FAISS
:class:`~snapsearch.retrieval.index.PartitionedIndex`, so every strategy runs on it unchanged.

Point ids are pool positions, so a bulk load is resumable: a rerun uploads only the ids not yet there. The
collection's description holds its fingerprint (embedder, pool digest, size, width): a collection of another
embedder or pool is refused. Items added while serving get random 62-bit point ids above the pool's (two
service replicas may add at once) and local item ids after the pool's; points this process does not know
(another replica's adds it has not read yet, or an add whose process died before it was journalled) are
left out of its answers. The server's journal (:class:`~snapsearch.retrieval.milvus_journal.MilvusJournal`)
is what replicas share. A server that cannot be reached raises :class:`StoreUnavailable`; the next call
reconnects.
"""

from __future__ import annotations

import copy
import json
import logging
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from snapsearch.retrieval.backends import Backend, IndexSpec, Items, register
from snapsearch.retrieval.faiss_factory import l2_normalize
from snapsearch.retrieval.index import SearchHits
from snapsearch.retrieval.index_build import check_items, read_chunks
from snapsearch.retrieval.index_io import IndexFormatError, IndexMismatchError
from snapsearch.retrieval.milvus_client import ID, MilvusConnection, MilvusSpec, pool_digest
from snapsearch.retrieval.milvus_journal import MilvusJournal
from snapsearch.retrieval.store import StoreUnavailable
from snapsearch.utils.atomic import atomic_save_arrays, atomic_write_text
from snapsearch.utils.progress import track

log = logging.getLogger(__name__)

POINTER_FILE = "milvus.json"
ARRAYS_FILE = "items.npz"
VECTOR, CATEGORY, PRODUCT, IMAGE = "vector", "category", "product", "image_id"
ADDED_ID_BITS = 62  # live-added point ids: random in [2**62, 2**63), far above any pool position


class MilvusStore:
    """A Milvus collection behind the partitioned-index interface (and :class:`MutableVectorStore`)."""

    factory = "milvus"
    metric = "ip"
    normalize = True
    nprobe = None
    ef_search = None

    def __init__(
        self,
        spec: MilvusSpec,
        *,
        dim: int,
        categories: Sequence[str],
        item_partition: np.ndarray,
        item_product: np.ndarray,
        embedder_checksum: str | None,
        metadata: Mapping[str, np.ndarray] | None = None,
        connection: MilvusConnection | None = None,
    ) -> None:
        self.spec = spec
        self.db = connection or MilvusConnection(spec)
        self._dim = dim
        self.categories = list(categories)
        self.n_partitions = len(self.categories)
        self.item_partition = np.asarray(item_partition, dtype=np.int64)
        self.item_product = np.asarray(item_product)
        self.embedder_checksum = embedder_checksum
        self.metadata = dict(metadata or {})
        self.n_pool = len(self.item_partition)
        self.removed = np.zeros(self.n_pool, dtype=bool)
        self.fallbacks: dict[str, str] = {}
        self.upload_counts: dict[str, int] = {}
        self.point_ids = np.arange(self.n_pool, dtype=np.int64)  # item id -> point id (pool: the same)
        self._item_of_added: dict[int, int] = {}  # point id -> item id, for items added after the pool
        self._excluded: list[int] = []
        self._journal: MilvusJournal | None = None
        self.fingerprint = {
            "embedder_checksum": embedder_checksum,
            "pool_digest": pool_digest(self.item_partition, self.item_product, self.metadata),
            "n_items": self.n_pool,
            "dim": dim,
            "metric": self.metric,
        }

    # ------------------------------------------------------------------ building
    @classmethod
    def build_streaming(
        cls,
        spec: MilvusSpec,
        chunks: Callable[[], Iterable[np.ndarray]],
        item_partition: Sequence[int] | np.ndarray,
        item_product: Sequence[Any] | np.ndarray,
        categories: Sequence[str],
        embedder_checksum: str | None = None,
        metadata: Mapping[str, np.ndarray] | None = None,
    ) -> MilvusStore:
        """Upload a pool chunk by chunk. Resumable: ids already in the collection are not sent again (the
        collection's fingerprint must be this pool's)."""
        partitions = np.asarray(item_partition).astype(np.int64, copy=False)
        products = np.asarray(item_product)
        n = len(partitions)
        check_items(n, partitions, products, len(categories), metadata)
        store: MilvusStore | None = None
        written = skipped = 0
        stream = read_chunks(chunks, n, normalize=True)
        for start, x in track(stream, n, f"uploading to Milvus {spec.collection}", size=lambda c: len(c[1])):
            if store is None:
                store = cls(
                    spec,
                    dim=x.shape[1],
                    categories=categories,
                    item_partition=partitions,
                    item_product=products,
                    embedder_checksum=embedder_checksum,
                    metadata=metadata,
                )
                store.db.open_collection(store.fingerprint, x.shape[1])
            for lo in range(0, len(x), spec.upload_batch):
                ids = np.arange(start + lo, start + min(lo + spec.upload_batch, len(x)))
                todo = ~np.isin(ids, store.db.present(int(ids[0]), int(ids[-1]) + 1))
                store._insert(ids[todo], ids[todo], x[ids[todo] - start])
                written, skipped = written + int(todo.sum()), skipped + int((~todo).sum())
        assert store is not None  # read_chunks yields at least one chunk for a non-empty pool
        log.info("Milvus %s: %d points written, %d already there", spec.collection, written, skipped)
        store.upload_counts = {"written": written, "already_present": skipped}
        return store

    def _insert(self, point_ids: np.ndarray, item_ids: np.ndarray, x: np.ndarray) -> None:
        """Pool items (or known items) by item id: their category, product and image id go with them."""
        integer = np.issubdtype(self.item_product.dtype, np.integer)
        products = self.item_product[item_ids] if integer else np.full(len(item_ids), -1)
        images = self.metadata[IMAGE][item_ids] if IMAGE in self.metadata else np.full(len(item_ids), "")
        self._send(point_ids, self.item_partition[item_ids], products, images, x)

    def _send(self, point_ids: np.ndarray, parts: np.ndarray, products: np.ndarray, images, x: np.ndarray) -> None:
        rows = [
            {ID: pid, VECTOR: vec.tolist(), CATEGORY: self.categories[p], PRODUCT: int(prod), IMAGE: str(image)}
            for pid, p, prod, image, vec in zip(
                point_ids.tolist(), parts.tolist(), products.tolist(), list(images), x, strict=True
            )
        ]
        if rows:
            self.db.insert(rows)

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
    def persistent(self) -> bool:
        """The vectors live in the server: a pointer to them is worth saving."""
        return True

    @property
    def journal(self) -> MilvusJournal:
        """The catalog journal replicas share (``<collection>__changes``), opened on first use."""
        if self._journal is None:
            self._journal = MilvusJournal(self.spec)
        return self._journal

    @property
    def shared(self) -> bool:
        """Service replicas share this store: the live catalog's changes go through its journal."""
        return self.spec.shared_catalog

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "milvus",
            "spec": self.spec.public(),
            "dim": self.dim,
            "metric": self.metric,
            "embedder_checksum": self.embedder_checksum,
            "fingerprint": self.fingerprint,
            "n_items": self.n_items,
            "n_partitions": self.n_partitions,
            "categories": self.categories,
            "metadata": sorted(self.metadata),
        }

    def health(self) -> dict[str, Any]:
        """What ``/healthz`` shows: where the server is and how many points it holds (StoreUnavailable: down)."""
        return self.db.health()

    # ------------------------------------------------------------------ search
    def search_global(self, queries: np.ndarray, k: int) -> list[SearchHits]:
        return self.search_routed(queries, [None] * len(np.atleast_2d(queries)), k)

    def search_partitions(
        self, queries: np.ndarray, partitions_per_query: Sequence[Sequence[int]], k: int
    ) -> list[SearchHits]:
        return self.search_routed(queries, list(partitions_per_query), k)

    def search_routed(self, queries: np.ndarray, routed: Sequence[Sequence[int] | None], k: int) -> list[SearchHits]:
        """Per query: no filter where ``routed`` is None, else ``category in [...]`` (Milvus searches only
        the partitions those categories hash to); excluded points are a ``not in`` on the ids."""
        q = self._queries(queries)
        if len(routed) != len(q):
            raise ValueError(f"got routes for {len(routed)} queries, but {len(q)} queries")
        if k < 1:
            raise ValueError(f"k={k}: need at least 1 result per query")
        groups: dict[str, list[int]] = {}  # one server call per distinct filter
        for i, route in enumerate(routed):
            names = None if route is None else sorted({self.categories[self._check_partition(p)] for p in route})
            if names == []:
                continue  # routed nowhere: no hits
            clauses = [] if names is None else [f"{CATEGORY} in {json.dumps(names)}"]
            if self._excluded:
                clauses.append(f"{ID} not in {self._excluded}")
            groups.setdefault(" and ".join(clauses), []).append(i)
        hits = [SearchHits(np.zeros(0, np.int64), np.zeros(0, np.float32)) for _ in q]
        for expr, rows in groups.items():
            for i, found in zip(rows, self.db.search(q[rows], expr, k), strict=True):
                hits[i] = self._hits(found, k)
        return hits

    def _hits(self, found: list[tuple[int, float]], k: int) -> SearchHits:
        """Point ids as item ids (unknown points dropped), ties by item id as the FAISS index orders them."""
        pairs = [(self._item_id(pid), score) for pid, score in found]
        kept = [(i, s) for i, s in pairs if i is not None and not self.removed[i]]
        ids = np.array([i for i, _ in kept], dtype=np.int64)
        scores = np.array([s for _, s in kept], dtype=np.float32)
        order = np.lexsort((ids, -scores))[:k]
        return SearchHits(ids[order], scores[order])

    def _item_id(self, point_id: int) -> int | None:
        return point_id if 0 <= point_id < self.n_pool else self._item_of_added.get(point_id)

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
        """Insert new points (fresh random point ids, so replicas never collide); returns their item ids."""
        point_ids = self.upload(embeddings, item_partition, item_product, metadata)
        return self.attach(point_ids, item_partition, item_product, metadata)

    def upload(
        self,
        embeddings: np.ndarray,
        item_partition: np.ndarray,
        item_product: np.ndarray,
        metadata: Mapping[str, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Insert points under fresh random point ids without knowing them here yet (see :meth:`attach`);
        returns the point ids."""
        x = l2_normalize(np.ascontiguousarray(embeddings, dtype=np.float32))
        parts = np.asarray(item_partition, dtype=np.int64).reshape(-1)
        if x.ndim != 2 or x.shape[1] != self.dim or len(parts) != len(x):
            raise ValueError(f"add needs (n, {self.dim}) embeddings with one partition each, got {x.shape}")
        for p in parts.tolist():
            self._check_partition(p)
        point_ids = np.array([(1 << ADDED_ID_BITS) + secrets.randbits(ADDED_ID_BITS) for _ in x], dtype=np.int64)
        products = np.asarray(item_product).reshape(-1)
        products = products if np.issubdtype(products.dtype, np.integer) else np.full(len(x), -1)
        images = (metadata or {}).get(IMAGE, np.full(len(x), ""))
        self._send(point_ids, parts, products, images, x)
        return point_ids

    def attach(
        self,
        point_ids: np.ndarray,
        item_partition: np.ndarray,
        item_product: np.ndarray,
        metadata: Mapping[str, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Know points that are already in the collection (another replica added them): item ids for them,
        nothing uploaded."""
        parts = np.asarray(item_partition, dtype=np.int64).reshape(-1)
        for p in parts.tolist():
            self._check_partition(p)
        meta = dict(metadata or {})
        if set(meta) != set(self.metadata) or len(parts) != len(point_ids):
            raise ValueError(f"add needs one partition and one value per metadata field {sorted(self.metadata)}")
        ids = np.arange(self.n_items, self.n_items + len(parts))
        self.item_partition = np.concatenate([self.item_partition, parts])
        products = np.asarray(item_product).astype(self.item_product.dtype)
        self.item_product = np.concatenate([self.item_product, products])
        self.metadata = {k: np.concatenate([v, np.asarray(meta[k])]) for k, v in self.metadata.items()}
        self.removed = np.concatenate([self.removed, np.zeros(len(parts), dtype=bool)])
        self.point_ids = np.concatenate([self.point_ids, np.asarray(point_ids, dtype=np.int64)])
        self._item_of_added.update(zip(np.asarray(point_ids).tolist(), ids.tolist(), strict=True))
        return ids

    def remove(self, item_ids: np.ndarray) -> None:
        """Delete the items' points from the collection (again: a no-op) and never return them here."""
        ids = np.asarray(item_ids, dtype=np.int64)
        if len(ids):
            self.db.delete(self.point_ids[ids].tolist())
            self.removed[ids] = True

    def excluding(self, item_ids: np.ndarray) -> MilvusStore:
        """A view that never returns ``item_ids`` (a ``not in`` filter); the collection is unchanged."""
        view = copy.copy(self)
        hidden = self.point_ids[np.asarray(item_ids, dtype=np.int64)].tolist()
        view._excluded = sorted({*self._excluded, *hidden})
        return view

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """A pointer to the collection (where it lives, its fingerprint) plus the pool's item arrays; the
        vectors stay in Milvus. Live adds are not saved: the journal holds them."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        n = self.n_pool
        arrays = {"item_partition": self.item_partition[:n], "item_product": self.item_product[:n]}
        arrays |= {f"meta__{k}": np.asarray(v)[:n] for k, v in self.metadata.items()}
        atomic_save_arrays(path / ARRAYS_FILE, arrays)
        atomic_write_text(path / POINTER_FILE, json.dumps(self.describe(), indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path, expected_embedder_checksum: str | None = None) -> MilvusStore:
        """Reopen a saved pointer; refused when the collection's fingerprint is not the pointer's (another
        pool or embedder was loaded into it since) or the embedder is not the expected one."""
        path = Path(path)
        try:
            meta = json.loads((path / POINTER_FILE).read_text())
            arrays = np.load(path / ARRAYS_FILE, allow_pickle=False)
        except (OSError, ValueError, KeyError) as err:
            raise IndexFormatError(f"{path} is not a saved Milvus index pointer ({err}); rebuild it") from err
        if expected_embedder_checksum is not None and meta["embedder_checksum"] != expected_embedder_checksum:
            raise IndexMismatchError(f"Milvus index at {path} was built by another embedder; rebuild the index")
        store = cls(
            MilvusSpec(**meta["spec"]),
            dim=int(meta["dim"]),
            categories=meta["categories"],
            item_partition=arrays["item_partition"],
            item_product=arrays["item_product"],
            embedder_checksum=meta["embedder_checksum"],
            metadata={k[len("meta__") :]: arrays[k] for k in arrays.files if k.startswith("meta__")},
        )
        store.db.check_collection(store.fingerprint)
        return store


def _build(spec: IndexSpec, items: Items) -> MilvusStore:
    return MilvusStore.build_streaming(
        spec.options,
        items.chunks,
        items.item_partition,
        items.item_product,
        items.categories,
        embedder_checksum=items.embedder_checksum,
        metadata=items.metadata,
    )


def _check(spec: IndexSpec) -> None:
    if spec.metric != "ip":
        raise ValueError("the Milvus index searches by inner product on normalised vectors: use index.metric=ip")


register(
    Backend(
        name="milvus",
        options=MilvusSpec,
        build=_build,
        load=lambda path, checksum, dim: MilvusStore.load(path, expected_embedder_checksum=checksum),
        types=(MilvusStore,),
        mutable=lambda store: store,
        excluding=lambda store, item_ids: store.excluding(item_ids),
        pointer=POINTER_FILE,
        check=_check,
    )
)

__all__ = ["MilvusSpec", "MilvusStore", "StoreUnavailable", "pool_digest"]
