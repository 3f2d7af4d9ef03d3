"""The Milvus connection behind :class:`~snapsearch.retrieval.milvus_store.MilvusStore`: its config
(``conf/index/milvus.yaml``), the collection's schema and fingerprint, and every server call, each with a
timeout. A call that fails for want of a server raises :class:`StoreUnavailable` and drops the client, so
the next call connects afresh: the store recovers by itself when the server is back."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import numpy as np

from snapsearch.retrieval.index_io import IndexMismatchError
from snapsearch.retrieval.store import StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
ID = "id"
MAX_CATEGORY_CHARS = 512  # a category path at the partition depth
MAX_IMAGE_ID_CHARS = 1024
QUERY_WINDOW = 16_384  # Milvus answers at most this many rows per query (offset + limit)


@dataclass(frozen=True)
class MilvusSpec:
    """Where the collection lives and how it is indexed (``conf/index/milvus.yaml``)."""

    uri: str = "http://127.0.0.1:19530"
    token_env: str = "MILVUS_TOKEN"  # the token ("user:password" or an API key) is read from this variable
    collection: str = "snapsearch"
    index_type: str = "HNSW"
    index_params: dict[str, Any] = field(default_factory=lambda: {"M": 16, "efConstruction": 200})
    search_params: dict[str, Any] = field(default_factory=lambda: {"ef": 128})
    num_partitions: int = 64
    consistency: str = "Strong"
    upload_batch: int = 1000
    timeout_s: float = 10.0
    load_timeout_s: float = 120.0
    shared_catalog: bool = True
    journal_poll_s: float = 0.5
    journal_window_s: float = 60.0

    def public(self) -> dict[str, Any]:
        """The spec as saved in a pointer (the token itself is never written anywhere)."""
        return asdict(self)


def pool_digest(item_partition: np.ndarray, item_product: np.ndarray, metadata: Mapping[str, np.ndarray]) -> str:
    """What the collection's points stand for, in pool order: partitions, products and image ids."""
    h = hashlib.sha256()
    for arr in (item_partition, item_product, *(metadata[k] for k in sorted(metadata))):
        h.update(np.asarray(arr).astype(str).tobytes())
    return h.hexdigest()


class MilvusConnection:
    """A lazily (re)connected client for one collection; every call maps server trouble to StoreUnavailable."""

    def __init__(self, spec: MilvusSpec) -> None:
        self.spec = spec
        self._client: Any = None
        self._lock = threading.Lock()
        self.last_error: str | None = None

    # ------------------------------------------------------------------ plumbing
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                from pymilvus import MilvusClient

                token = os.environ.get(self.spec.token_env, "")
                self._client = MilvusClient(uri=self.spec.uri, token=token, timeout=self.spec.timeout_s)
            return self._client

    def call(self, what: str, fn: Callable[[Any], T]) -> T:
        """``fn(client)``; StoreUnavailable (the client dropped) when the server cannot be reached or fails.
        A collection the restarted server has not loaded yet is loaded and the call tried once more."""
        from grpc import RpcError
        from pymilvus import MilvusException

        try:
            try:
                out = fn(self.client())
            except MilvusException as err:
                if "not loaded" not in str(err):
                    raise
                self._client.load_collection(self.spec.collection, timeout=self.spec.load_timeout_s)
                out = fn(self.client())
        except (MilvusException, RpcError, OSError, RuntimeError) as err:
            self.reset()
            self.last_error = f"{type(err).__name__}: {err}"
            raise StoreUnavailable(
                f"Milvus at {self.spec.uri} did not answer {what} (collection {self.spec.collection!r}): {err}"
            ) from err
        self.last_error = None
        return out

    def reset(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception as err:  # a dead channel may fail to close: it is dropped either way
                log.debug("closing the Milvus client: %s", err)

    def health(self) -> dict[str, Any]:
        """Where the server is and how many points the collection holds; StoreUnavailable when it is down."""
        return {"backend": "milvus", "uri": self.spec.uri, "collection": self.spec.collection, "points": self.count()}

    # ------------------------------------------------------------------ the collection
    def open_collection(self, fingerprint: Mapping[str, Any], dim: int) -> None:
        """Create the collection (schema, index, loaded), or check that an existing one is this pool's."""
        if self.has():
            self.check_collection(fingerprint)
            return
        self.call("create_collection", lambda c: self._create(c, fingerprint, dim))

    def has(self) -> bool:
        name = self.spec.collection
        return bool(self.call("has_collection", lambda c: c.has_collection(name, timeout=self.spec.timeout_s)))

    def _create(self, client: Any, fingerprint: Mapping[str, Any], dim: int) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(
            auto_id=False, description=json.dumps(dict(fingerprint)), partition_key_field="category"
        )
        schema.add_field(ID, DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        schema.add_field("category", DataType.VARCHAR, max_length=MAX_CATEGORY_CHARS)
        schema.add_field("product", DataType.INT64)
        schema.add_field("image_id", DataType.VARCHAR, max_length=MAX_IMAGE_ID_CHARS)
        index = client.prepare_index_params()
        index.add_index(
            field_name="vector", index_type=self.spec.index_type, metric_type="IP", params=self.spec.index_params
        )
        client.create_collection(
            self.spec.collection,
            schema=schema,
            index_params=index,
            consistency_level=self.spec.consistency,
            num_partitions=self.spec.num_partitions,
            timeout=self.spec.load_timeout_s,
        )

    def check_collection(self, fingerprint: Mapping[str, Any]) -> None:
        """IndexMismatchError unless the collection exists and its fingerprint is ``fingerprint``."""
        name = self.spec.collection
        info = self.call("describe_collection", lambda c: c.describe_collection(name, timeout=self.spec.timeout_s))
        try:
            stored = json.loads(info.get("description") or "{}")
        except json.JSONDecodeError:
            stored = {}
        if stored != dict(fingerprint):
            raise IndexMismatchError(
                f"Milvus collection {name!r} at {self.spec.uri} holds {stored.get('n_items')} "
                f"{stored.get('dim')}-d points of embedder {stored.get('embedder_checksum')!r} (pool "
                f"{str(stored.get('pool_digest'))[:12]}), not this pool's {fingerprint['n_items']} "
                f"{fingerprint['dim']}-d embeddings of {fingerprint['embedder_checksum']!r} (pool "
                f"{str(fingerprint['pool_digest'])[:12]}): drop it or use another index.collection"
            )

    def drop(self) -> None:
        self.call("drop_collection", lambda c: c.drop_collection(self.spec.collection, timeout=self.spec.timeout_s))

    # ------------------------------------------------------------------ points
    def present(self, lo: int, hi: int) -> np.ndarray:
        """Point ids in ``[lo, hi)`` already in the collection (a window of at most QUERY_WINDOW ids)."""
        if hi - lo > QUERY_WINDOW:
            raise ValueError(f"ask for at most {QUERY_WINDOW} ids at once, not {hi - lo}")
        rows = self.call(
            "query",
            lambda c: c.query(
                self.spec.collection,
                filter=f"{ID} >= {lo} and {ID} < {hi}",
                output_fields=[ID],
                limit=hi - lo,
                timeout=self.spec.timeout_s,
            ),
        )
        return np.array(sorted(r[ID] for r in rows), dtype=np.int64)

    def count(self) -> int:
        rows = self.call(
            "count",
            lambda c: c.query(self.spec.collection, filter="", output_fields=["count(*)"], timeout=self.spec.timeout_s),
        )
        return int(rows[0]["count(*)"])

    def insert(self, rows: list[dict[str, Any]]) -> None:
        self.call("insert", lambda c: c.insert(self.spec.collection, rows, timeout=self.spec.timeout_s))

    def delete(self, point_ids: list[int]) -> None:
        self.call("delete", lambda c: c.delete(self.spec.collection, ids=point_ids, timeout=self.spec.timeout_s))

    def search(self, vectors: np.ndarray, expr: str, k: int) -> list[list[tuple[int, float]]]:
        """Per vector: (point id, inner product), best first."""
        answers = self.call(
            "search",
            lambda c: c.search(
                self.spec.collection,
                data=vectors.tolist(),
                filter=expr,
                limit=k,
                search_params={"metric_type": "IP", "params": self.spec.search_params},
                output_fields=[],
                timeout=self.spec.timeout_s,
            ),
        )
        return [[(int(hit["id"]), float(hit["distance"])) for hit in answer] for answer in answers]
