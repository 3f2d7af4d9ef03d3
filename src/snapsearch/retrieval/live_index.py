"""A partitioned index that takes catalog changes while it serves: items added to their partition and removed,
with no rebuild. Removed items stay in the FAISS structures as tombstones that every search skips (FAISS
cannot delete from HNSW, and deleting from a flat index renumbers every later item)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from snapsearch.retrieval.faiss_factory import l2_normalize, train_index
from snapsearch.retrieval.index import PartitionedIndex


class LiveIndex(PartitionedIndex):
    """A :class:`PartitionedIndex` with :meth:`add` and :meth:`remove`. Not thread-safe by itself: the
    caller serialises changes against searches (see :class:`snapsearch.search.live.LiveCatalog`)."""

    removed: np.ndarray

    @classmethod
    def from_index(cls, index: PartitionedIndex) -> LiveIndex:
        """Take over a built or loaded index (its FAISS structures are shared, not copied)."""
        live = cls.__new__(cls)
        live.__dict__.update(index.__dict__)
        live.removed = np.zeros(index.n_items, dtype=bool)
        return live

    @property
    def n_live(self) -> int:
        return int(self.n_items - self.removed.sum())

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
        for p in parts:
            self._check_partition(p)
        if self.normalize:
            x = l2_normalize(x)
        ids = np.arange(self.n_items, self.n_items + len(x))
        self._global.add(x)
        for p in np.unique(parts):
            rows = parts == p
            if p not in self._partitions:  # a category that had no item yet
                built = train_index(x[rows], self.factory, self.metric, int(rows.sum()))
                self._partitions[int(p)] = built.index
                self._members[int(p)] = np.zeros(0, np.int64)
            self._partitions[int(p)].add(x[rows])
            self._members[int(p)] = np.concatenate([self._members[int(p)], ids[rows]])
        self.item_partition = np.concatenate([self.item_partition, parts])
        self.item_product = np.concatenate([self.item_product, products.astype(self.item_product.dtype)])
        self.metadata = {k: np.concatenate([v, np.asarray(meta[k])]) for k, v in self.metadata.items()}
        self.removed = np.concatenate([self.removed, np.zeros(len(x), dtype=bool)])
        self.set_search_params()
        return ids

    def remove(self, item_ids: np.ndarray) -> None:
        """Tombstone items: no search returns them again."""
        ids = np.asarray(item_ids, dtype=np.int64)
        if len(ids) and (ids.min() < 0 or ids.max() >= self.n_items):
            raise ValueError(f"item ids out of range 0..{self.n_items - 1}")
        self.removed[ids] = True

    def _search(self, index, q: np.ndarray, k: int, members: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Ask FAISS for k plus as many items as are removed, then drop the removed ones (-1 = no result)."""
        n_removed = int(self.removed.sum())
        ids, scores = super()._search(index, q, k + n_removed, members)
        return np.where((ids >= 0) & self.removed[np.maximum(ids, 0)], -1, ids), scores
