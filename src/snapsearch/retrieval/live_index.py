"""A partitioned index that takes catalog changes while it serves: items added to their partition and removed,
with no full rebuild.

Adds append to the FAISS structures and to per-item arrays that grow geometrically (amortised O(1) per item).
A removed item is first a tombstone: each sub-index (global, each partition) counts its own, and a search
asks FAISS for ``k`` plus that count, then drops them. When a sub-index's tombstones pass the
:class:`Compaction` threshold it is rebuilt from its stored vectors without them (FAISS cannot delete from
HNSW, and deleting from a flat index renumbers every later item), so the over-fetch stays bounded and a
search costs the same after 10,000 deletes as before. Item ids never change: a rebuilt sub-index maps its
new local ids to them, as partitions always do.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from snapsearch.retrieval.faiss_factory import apply_search_params, l2_normalize, train_index
from snapsearch.retrieval.growable import Growable
from snapsearch.retrieval.index import PartitionedIndex

log = logging.getLogger(__name__)

GLOBAL_KEY = -1  # the global sub-index among the partitions' keys


@dataclass(frozen=True)
class Compaction:
    """When a sub-index is rebuilt without its tombstones: once they are more than ``share`` of its items
    or more than ``max_removed`` (bounds the over-fetch of a large sub-index). Rebuilding costs the
    sub-index's size, paid at most once per ``min(share * size, max_removed)`` removals."""

    share: float = 0.2
    max_removed: int = 1024

    def due(self, removed: int, total: int) -> bool:
        return removed > 0 and removed > min(self.max_removed, self.share * total)


class LiveIndex(PartitionedIndex):
    """A :class:`PartitionedIndex` with :meth:`add` and :meth:`remove`. Not thread-safe by itself: the
    caller serialises changes against searches (see :class:`snapsearch.search.live.LiveCatalog`).

    ``compaction`` None (a view made by ``store.excluding``) keeps every tombstone: views share the
    source's FAISS structures and are short-lived."""

    removed: np.ndarray
    compaction: Compaction | None
    n_removed: int  # cached: searches never sum ``removed``
    rebuilt: bool  # a sub-index was compacted (its local ids no longer follow pool order)
    _arrays: dict[str, Growable]  # per-item arrays (and metadata as "meta:<name>"), grown in place
    _member_bufs: dict[int, Growable]  # each partition's item ids, by local id
    _global_members: Growable | None  # None: the global index's local ids are item ids
    _dead: dict[int, int]  # tombstones per sub-index, keyed by id() of its FAISS index

    @classmethod
    def from_index(cls, index: PartitionedIndex, compaction: Compaction | None = None) -> LiveIndex:
        """Take over a built or loaded index (its FAISS structures are shared, not copied; a rebuild
        replaces a sub-index in this object only)."""
        live = cls.__new__(cls)
        live.__dict__.update(index.__dict__)
        live._partitions = dict(index._partitions)
        live.compaction = compaction
        if isinstance(index, LiveIndex):  # a view of a live index keeps its tombstones and rebuilt maps
            live._arrays = {k: g.copy() for k, g in index._arrays.items()}
            live._member_bufs = {p: g.copy() for p, g in index._member_bufs.items()}
            live._global_members = None if index._global_members is None else index._global_members.copy()
            live._dead = dict(index._dead)
            live.n_removed, live.rebuilt = index.n_removed, index.rebuilt
        else:
            arrays = {"item_partition": index.item_partition, "item_product": index.item_product}
            arrays |= {f"meta:{k}": v for k, v in index.metadata.items()}
            live._arrays = {k: Growable(v) for k, v in arrays.items()}
            live._arrays["removed"] = Growable(np.zeros(index.n_items, dtype=bool))
            live._member_bufs = {p: Growable(np.asarray(m, np.int64)) for p, m in index._members.items()}
            live._global_members = None  # global local id == item id until the global index is rebuilt
            live._dead = {}
            live.n_removed, live.rebuilt = 0, False
        live._publish()
        return live

    def _publish(self) -> None:
        """Point the public per-item arrays at the buffers' used parts (call after every change)."""
        self.item_partition = self._arrays["item_partition"].view
        self.item_product = self._arrays["item_product"].view
        self.removed = self._arrays["removed"].view
        self.metadata = {k[len("meta:") :]: g.view for k, g in self._arrays.items() if k.startswith("meta:")}
        self._members = {p: g.view for p, g in self._member_bufs.items()}

    @property
    def n_live(self) -> int:
        return self.n_items - self.n_removed

    def tombstones(self) -> dict[int, int]:
        """Removed items still inside each sub-index (key -1 = the global one), for tests and ``/info``."""
        subs = {GLOBAL_KEY: self._global} | self._partitions
        return {key: self._dead.get(id(ix), 0) for key, ix in subs.items()}

    # ------------------------------------------------------------------ changes
    def add(
        self,
        embeddings: np.ndarray,
        item_partition: np.ndarray,
        item_product: np.ndarray,
        metadata: Mapping[str, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Append items to the global index and to their partitions' indexes; returns their item ids."""
        x = np.ascontiguousarray(embeddings, dtype=np.float32)
        parts = np.asarray(item_partition, dtype=np.int64).reshape(-1)
        products = np.asarray(item_product).reshape(-1)
        if x.ndim != 2 or x.shape[1] != self.dim or not len(x) == len(parts) == len(products):
            raise ValueError(
                f"add needs ({len(parts)}, {self.dim}) embeddings with one partition and product each, got {x.shape}"
            )
        if not np.isfinite(x).all():
            raise ValueError("embeddings to add contain NaN or inf")
        meta = dict(metadata or {})
        if set(meta) != set(self.metadata) or any(len(v) != len(x) for v in meta.values()):
            raise ValueError(f"add needs one value per item for each metadata field {sorted(self.metadata)}")
        for p in parts.tolist():
            self._check_partition(p)
        if self.normalize:
            x = l2_normalize(x)
        ids = np.arange(self.n_items, self.n_items + len(x))
        self._global.add(x)
        if self._global_members is not None:
            self._global_members.extend(ids)
        for p in (int(p) for p in np.unique(parts)):
            rows = parts == p
            if p not in self._partitions:  # a category that had no item yet
                built = train_index(x[rows], self.factory, self.metric, int(rows.sum())).index
                apply_search_params(built, self.nprobe, self.ef_search)
                self._partitions[p] = built
                self._member_bufs[p] = Growable(np.zeros(0, np.int64))
            self._partitions[p].add(x[rows])
            self._member_bufs[p].extend(ids[rows])
        self._arrays["item_partition"].extend(parts)
        self._arrays["item_product"].extend(products.astype(self.item_product.dtype, copy=False))
        for k, v in meta.items():
            self._arrays[f"meta:{k}"].extend(np.asarray(v))
        self._arrays["removed"].extend(np.zeros(len(x), dtype=bool))
        self._publish()
        return ids

    def remove(self, item_ids: np.ndarray) -> None:
        """Tombstone items (again: a no-op): no search returns them again. Sub-indexes past the
        compaction threshold are rebuilt without theirs."""
        ids = np.unique(np.asarray(item_ids, dtype=np.int64))
        if len(ids) and (ids.min() < 0 or ids.max() >= self.n_items):
            raise ValueError(f"item ids out of range 0..{self.n_items - 1}")
        ids = ids[~self.removed[ids]]
        if not len(ids):
            return
        self.removed[ids] = True
        self.n_removed += len(ids)
        self._dead[id(self._global)] = self._dead.get(id(self._global), 0) + len(ids)
        touched, counts = np.unique(self.item_partition[ids], return_counts=True)
        for p, n in zip(touched.tolist(), counts.tolist(), strict=True):
            ix = self._partitions[p]
            self._dead[id(ix)] = self._dead.get(id(ix), 0) + n
        if self.compaction is not None:
            for key in [GLOBAL_KEY, *touched.tolist()]:
                ix = self._global if key == GLOBAL_KEY else self._partitions[key]
                if self.compaction.due(self._dead.get(id(ix), 0), ix.ntotal):
                    self._rebuild(key)

    def _rebuild(self, key: int) -> None:
        """Replace one sub-index by a copy of it (same training) holding only its live items."""
        old = self._global if key == GLOBAL_KEY else self._partitions[key]
        if key == GLOBAL_KEY:
            members = np.arange(self.n_items) if self._global_members is None else self._global_members.view
        else:
            members = self._members[key]
        keep = ~self.removed[members]
        vectors = _stored_vectors(old)
        if vectors is None:
            log.warning("index %s cannot return its vectors: its tombstones stay (searches over-fetch)", self.factory)
            self.compaction = None
            return
        new = faiss.clone_index(old)
        new.reset()
        if keep.any():
            new.add(np.ascontiguousarray(vectors[keep]))
        apply_search_params(new, self.nprobe, self.ef_search)
        self._dead.pop(id(old), None)
        if key == GLOBAL_KEY:
            self._global, self._global_members = new, Growable(members[keep])
        else:
            self._partitions[key], self._member_bufs[key] = new, Growable(members[keep])
        self._dead[id(new)] = 0
        self.rebuilt = True
        self._publish()
        log.info("rebuilt sub-index %s without %d removed items", key, int((~keep).sum()))

    # ------------------------------------------------------------------ search
    def _search(self, index, q: np.ndarray, k: int, members: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Ask FAISS for k plus this sub-index's tombstones (a cached count), then drop them (-1 = none)."""
        dead = self._dead.get(id(index), 0)
        if members is None and index is self._global and self._global_members is not None:
            members = self._global_members.view  # the global index was rebuilt: its local ids skip removed items
        ids, scores = super()._search(index, q, k + dead, members)
        if not dead:
            return ids, scores
        return np.where((ids >= 0) & self.removed[np.maximum(ids, 0)], -1, ids), scores

    def save(self, path: str | Path) -> Path:
        """Saved as a plain index only while no sub-index was rebuilt (FAISS positions = pool order)."""
        if self.rebuilt:
            raise ValueError("a live index whose sub-indexes were compacted cannot be saved; build a new index")
        return super().save(path)


def _stored_vectors(index: faiss.Index) -> np.ndarray | None:
    """The vectors a FAISS index stores, by local id: exact for flat storage (Flat, HNSW, IVF-Flat),
    decoded codes for quantised ones (re-adding them encodes the same codes). None when it cannot."""
    try:
        ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None:
            ivf.make_direct_map()
        return index.reconstruct_n(0, index.ntotal) if index.ntotal else np.zeros((0, index.d), np.float32)
    except RuntimeError:
        return None
