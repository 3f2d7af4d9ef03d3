"""A FAISS index per category partition plus one global index over the whole pool.

Cascade search runs only inside the partitions a query is routed to; the global index is the baseline
and the fallback when the classifier is unsure. All sub-indexes come from one ``index_factory`` string.

Scores are similarity-like for every metric, so "higher is better" everywhere downstream:
``metric="ip"`` returns the inner product (cosine similarity, as embeddings are L2-normalised by default);
``metric="l2"`` returns the negated squared L2 distance.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import faiss
import numpy as np

from snapsearch.retrieval.faiss_factory import (
    Metric,
    apply_search_params,
    check_metric,
    l2_normalize,
)
from snapsearch.retrieval.index_build import (
    GLOBAL,
    build_subindexes,
    check_items,
    members_by_partition,
    partition_name,
)
from snapsearch.retrieval.index_io import (
    IndexFormatError,
    IndexMismatchError,
    check_compatible,
    read_index_dir,
    write_index_dir,
)

log = logging.getLogger(__name__)

META_PREFIX = "meta__"
# Vectors each sub-index is trained on at most: enough for k-means / PQ codebooks, and it bounds the memory
# a streamed build holds (at most this many rows per sub-index) whatever the pool's size.
TRAIN_SAMPLE = 100_000


class SearchHits(NamedTuple):
    """One query's results: pool item ids and their scores, best first (higher score = more similar)."""

    item_ids: np.ndarray
    scores: np.ndarray


class PartitionedIndex:
    """Per-partition FAISS indexes and a global one, with the item -> product / partition maps.

    Build with :meth:`build` (in memory) or :meth:`build_streaming` (chunk by chunk), reopen with
    :meth:`load`; the constructor is for those.
    """

    def __init__(
        self,
        *,
        global_index: faiss.Index,
        partition_indexes: Mapping[int, faiss.Index],
        item_product: np.ndarray,
        item_partition: np.ndarray,
        n_partitions: int,
        factory: str,
        metric: Metric,
        normalize: bool,
        embedder_checksum: str | None,
        fallbacks: Mapping[str, str],
        metadata: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        self.factory = factory
        self.metric = metric
        self.normalize = normalize
        self.embedder_checksum = embedder_checksum
        self.n_partitions = n_partitions
        self.item_product = item_product
        self.item_partition = item_partition
        self.metadata = dict(metadata or {})
        self.fallbacks = dict(fallbacks)
        self.nprobe: int | None = None
        self.ef_search: int | None = None
        self._global = global_index
        self._partitions = dict(partition_indexes)
        # Items enter a partition's index in pool order, so its local id i is the i-th member.
        members = members_by_partition(item_partition, n_partitions)
        self._members = {p: members[p] for p in self._partitions}

    # ------------------------------------------------------------------ building
    @classmethod
    def build(
        cls,
        embeddings: np.ndarray,
        item_partition: Sequence[int] | np.ndarray,
        item_product: Sequence[Any] | np.ndarray,
        n_partitions: int | None = None,
        factory: str = "Flat",
        metric: str = "ip",
        normalize: bool | None = None,
        nprobe: int | None = None,
        ef_search: int | None = None,
        embedder_checksum: str | None = None,
        metadata: Mapping[str, np.ndarray] | None = None,
    ) -> PartitionedIndex:
        """Index a pool of item embeddings.

        Args:
            embeddings: (n_items, dim) item embeddings.
            item_partition: partition (category label, 0..n_partitions-1) of each item.
            item_product: product id of each item (ints or strings); results are ranked per product.
            n_partitions: number of partitions; None means max(item_partition) + 1. Empty ones are allowed.
            factory: any faiss ``index_factory`` string ("Flat", "IVF64,Flat", "HNSW32", "IVF64,PQ16"...).
            metric: "ip" (inner product) or "l2".
            normalize: L2-normalise items and queries; None means True for "ip" (cosine), False for "l2".
            nprobe, ef_search: search-time IVF / HNSW parameters for every sub-index; None keeps faiss's.
            embedder_checksum: fingerprint of the embedder that made ``embeddings``; checked on load.
            metadata: optional per-item arrays (paths, names...) kept and saved with the index.
        """
        vectors = np.ascontiguousarray(embeddings, dtype=np.float32)
        return cls.build_streaming(
            lambda: [vectors],
            item_partition,
            item_product,
            n_partitions=n_partitions,
            factory=factory,
            metric=metric,
            normalize=normalize,
            nprobe=nprobe,
            ef_search=ef_search,
            embedder_checksum=embedder_checksum,
            metadata=metadata,
        )

    @classmethod
    def build_streaming(
        cls,
        chunks: Callable[[], Iterable[np.ndarray]],
        item_partition: Sequence[int] | np.ndarray,
        item_product: Sequence[Any] | np.ndarray,
        n_partitions: int | None = None,
        factory: str = "Flat",
        metric: str = "ip",
        normalize: bool | None = None,
        nprobe: int | None = None,
        ef_search: int | None = None,
        embedder_checksum: str | None = None,
        metadata: Mapping[str, np.ndarray] | None = None,
        train_sample: int = TRAIN_SAMPLE,
        seed: int = 0,
    ) -> PartitionedIndex:
        """Index a pool whose embeddings need not fit in memory, read chunk by chunk (e.g. shards on disk).

        ``chunks()`` returns a fresh iterable of float32 (m, dim) arrays that together are the pool's
        embeddings in pool order. It is called at most twice: once to draw each sub-index's training sample
        (skipped when the factory needs no training, e.g. Flat or HNSW), once to add the vectors. Memory
        held beyond one chunk is the indexes plus at most ``train_sample`` rows per sub-index.

        Args:
            train_sample: most vectors each sub-index (global, each partition) is trained on; a uniform
                random sample (``seed``) when it has more members, all of them in pool order otherwise.
            Others as in :meth:`build`.
        """
        metric = check_metric(metric)
        normalize = metric == "ip" if normalize is None else normalize
        partitions = np.asarray(item_partition).astype(np.int64, copy=False)
        products = np.asarray(item_product)
        n = len(partitions)
        if n == 0:
            raise ValueError("item_partition is empty: an index needs at least one item")
        if train_sample < 1:
            raise ValueError(f"train_sample={train_sample}: need at least 1 training vector per sub-index")
        if n_partitions is None:
            n_partitions = int(partitions.max()) + 1
        check_items(n, partitions, products, n_partitions, metadata)

        built, fallbacks = build_subindexes(
            chunks, partitions, n_partitions, factory, metric, normalize, train_sample, seed
        )
        index = cls(
            global_index=built[GLOBAL].index,
            partition_indexes={p: built[partition_name(p)].index for p in _present(n_partitions, built)},
            item_product=products,
            item_partition=partitions,
            n_partitions=n_partitions,
            factory=factory,
            metric=metric,
            normalize=normalize,
            embedder_checksum=embedder_checksum,
            fallbacks=fallbacks,
            metadata=metadata,
        )
        index.set_search_params(nprobe=nprobe, ef_search=ef_search)
        return index

    def set_search_params(self, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Set IVF nprobe / HNSW efSearch on every sub-index that has them; None leaves a value unchanged."""
        self.nprobe = self.nprobe if nprobe is None else int(nprobe)
        self.ef_search = self.ef_search if ef_search is None else int(ef_search)
        for sub in (self._global, *self._partitions.values()):
            apply_search_params(sub, self.nprobe, self.ef_search)

    # ------------------------------------------------------------------ facts
    @property
    def dim(self) -> int:
        return int(self._global.d)

    @property
    def n_items(self) -> int:
        return len(self.item_product)

    @property
    def partition_sizes(self) -> np.ndarray:
        """Number of items in each partition (length ``n_partitions``)."""
        return np.bincount(self.item_partition, minlength=self.n_partitions)

    def describe(self) -> dict[str, Any]:
        """What built this index (written to index.json), JSON-ready."""
        return {
            "factory": self.factory,
            "metric": self.metric,
            "normalize": self.normalize,
            "dim": self.dim,
            "embedder_checksum": self.embedder_checksum,
            "n_items": self.n_items,
            "n_partitions": self.n_partitions,
            "partition_sizes": {str(p): int(n) for p, n in enumerate(self.partition_sizes)},
            "fallbacks": dict(self.fallbacks),
            "nprobe": self.nprobe,
            "ef_search": self.ef_search,
            "metadata": sorted(self.metadata),
        }

    # ------------------------------------------------------------------ search
    def search_global(self, queries: np.ndarray, k: int) -> list[SearchHits]:
        """The k best items of the whole pool for each query."""
        return self._search_global(self._queries(queries), k)

    def _search_global(self, q: np.ndarray, k: int) -> list[SearchHits]:
        ids, scores = self._search(self._global, q, k, members=None)
        return [_top(ids[i], scores[i], k) for i in range(len(q))]

    def search_partitions(
        self, queries: np.ndarray, partitions_per_query: Sequence[Sequence[int]], k: int
    ) -> list[SearchHits]:
        """The k best items among each query's listed partitions, merged by score.

        Each partition is searched once for all queries routed to it; an empty partition adds nothing.
        """
        return self._search_partitions(self._queries(queries), partitions_per_query, k)

    def _search_partitions(
        self, q: np.ndarray, partitions_per_query: Sequence[Sequence[int]], k: int
    ) -> list[SearchHits]:
        if len(partitions_per_query) != len(q):
            raise ValueError(f"got partitions for {len(partitions_per_query)} queries, but {len(q)} queries")
        routed: dict[int, list[int]] = {}
        for qi, parts in enumerate(partitions_per_query):
            for p in {self._check_partition(p) for p in parts}:
                routed.setdefault(p, []).append(qi)
        found: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(len(q))]
        for p, rows in routed.items():
            if p not in self._partitions:
                continue
            ids, scores = self._search(self._partitions[p], q[rows], k, members=self._members[p])
            for row, qi in enumerate(rows):
                found[qi].append((ids[row], scores[row]))
        return [_merge(parts, k) for parts in found]

    def search_routed(self, queries: np.ndarray, routed: Sequence[Sequence[int] | None], k: int) -> list[SearchHits]:
        """Per query: global search where ``routed`` is None, else search of the listed partitions."""
        q = self._queries(queries)
        if len(routed) != len(q):
            raise ValueError(f"got routes for {len(routed)} queries, but {len(q)} queries")
        hits: list[SearchHits | None] = [None] * len(q)
        glob = [i for i, r in enumerate(routed) if r is None]
        part = [i for i, r in enumerate(routed) if r is not None]
        if glob:
            for i, h in zip(glob, self._search_global(q[glob], k), strict=True):
                hits[i] = h
        if part:
            part_routes = [routed[i] for i in part]
            for i, h in zip(part, self._search_partitions(q[part], part_routes, k), strict=True):  # type: ignore[arg-type]
                hits[i] = h
        return hits  # type: ignore[return-value]

    def _queries(self, queries: np.ndarray) -> np.ndarray:
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise IndexMismatchError(
                f"queries have shape {np.shape(queries)}, but this index holds {self.dim}-d embeddings "
                f"(embedder checksum {self.embedder_checksum or '<none recorded>'}); embed the queries with the "
                "embedder that built the index, or rebuild the index"
            )
        if not np.isfinite(q).all():
            raise ValueError("queries contain NaN or inf")
        return np.ascontiguousarray(l2_normalize(q) if self.normalize else q)

    def _check_partition(self, partition: int) -> int:
        p = int(partition)
        if not 0 <= p < self.n_partitions:
            raise ValueError(f"partition {partition} out of range: this index has 0..{self.n_partitions - 1}")
        return p

    def _search(
        self, index: faiss.Index, q: np.ndarray, k: int, members: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(pool item ids, similarity scores), both (n_queries, <=k); -1 ids pad missing results."""
        if k < 1:
            raise ValueError(f"k={k}: need at least 1 result per query")
        k_eff = min(k, index.ntotal)
        if k_eff == 0 or len(q) == 0:
            return np.full((len(q), 0), -1, np.int64), np.zeros((len(q), 0), np.float32)
        dist, local = index.search(q, k_eff)
        scores = -dist if self.metric == "l2" else dist
        if members is None:
            return local, scores
        return np.where(local >= 0, members[np.maximum(local, 0)], -1), scores

    # ------------------------------------------------------------------ persistence
    persistent = True  # save() writes the whole index

    def save(self, path: str | Path) -> Path:
        """Write the index folder atomically (faiss files, id maps, index.json); returns its path."""
        indexes = {GLOBAL: self._global} | {partition_name(p): ix for p, ix in self._partitions.items()}
        arrays = {"item_product": self.item_product, "item_partition": self.item_partition}
        arrays |= {META_PREFIX + name: np.asarray(values) for name, values in self.metadata.items()}
        write_index_dir(path, self.describe(), indexes, arrays)
        return Path(path)

    @classmethod
    def load(
        cls, path: str | Path, expected_embedder_checksum: str | None = None, expected_dim: int | None = None
    ) -> PartitionedIndex:
        """Reopen a saved index; IndexMismatchError when it was built for other embeddings.

        Pass the query embedder's checksum and dimension: an index built by another embedder returns
        neighbours that look fine and mean nothing.
        """
        manifest, indexes, arrays = read_index_dir(path)
        check_compatible(manifest, path, expected_embedder_checksum, expected_dim)
        try:
            n_partitions = int(manifest["n_partitions"])
            item_partition = arrays["item_partition"].astype(np.int64)
            index = cls(
                global_index=indexes[GLOBAL],
                partition_indexes={p: indexes[partition_name(p)] for p in _present(n_partitions, indexes)},
                item_product=arrays["item_product"],
                item_partition=item_partition,
                n_partitions=n_partitions,
                factory=manifest["factory"],
                metric=check_metric(manifest["metric"]),
                normalize=bool(manifest.get("normalize", manifest["metric"] == "ip")),
                embedder_checksum=manifest.get("embedder_checksum"),
                fallbacks=manifest.get("fallbacks", {}),
                metadata={k[len(META_PREFIX) :]: v for k, v in arrays.items() if k.startswith(META_PREFIX)},
            )
        except (KeyError, ValueError, TypeError) as err:
            raise IndexFormatError(f"index at {path} is inconsistent ({err!r}); rebuild it") from err
        index._check_loaded(path, int(manifest["dim"]), int(manifest["n_items"]))
        index.set_search_params(nprobe=manifest.get("nprobe"), ef_search=manifest.get("ef_search"))
        return index

    def _check_loaded(self, path: str | Path, dim: int, n_items: int) -> None:
        """The files agree with each other and with index.json (catches mixed or truncated folders)."""
        sizes = self.partition_sizes
        problems = [
            f"dim {self.dim} != {dim}" if self.dim != dim else "",
            f"{self.n_items} items != {n_items}" if self.n_items != n_items else "",
            f"global index holds {self._global.ntotal} != {n_items}" if self._global.ntotal != n_items else "",
            *(
                f"{partition_name(p)} holds {ix.ntotal} != {sizes[p]}"
                for p, ix in self._partitions.items()
                if ix.ntotal != sizes[p] or ix.d != self.dim
            ),
            *(f"{partition_name(p)} is missing" for p in np.flatnonzero(sizes).tolist() if p not in self._partitions),
        ]
        problems = [p for p in problems if p]
        if problems:
            raise IndexFormatError(f"index at {path} is inconsistent: {'; '.join(problems)}; rebuild it")


def _present(n_partitions: int, by_name: Mapping[str, Any]) -> list[int]:
    """Partitions that have a sub-index (empty partitions have none)."""
    return [p for p in range(n_partitions) if partition_name(p) in by_name]


def _top(ids: np.ndarray, scores: np.ndarray, k: int) -> SearchHits:
    """Valid hits sorted best first (ties by item id, so every search path orders them alike), at most k."""
    valid = ids >= 0
    ids, scores = ids[valid], scores[valid]
    order = np.lexsort((ids, -scores))[:k]
    return SearchHits(ids[order].astype(np.int64), scores[order].astype(np.float32))


def _merge(parts: list[tuple[np.ndarray, np.ndarray]], k: int) -> SearchHits:
    if not parts:
        return SearchHits(np.zeros(0, np.int64), np.zeros(0, np.float32))
    return _top(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), k)
