"""A live catalog: products added and removed while the cascade serves, persisted beside its source.

Every change is embedded first, then written (images and embeddings, fsynced), then logged: one line
appended to ``changes.jsonl`` and fsynced (:mod:`snapsearch.search.changelog`) before it is acknowledged,
then applied to the index and product table under the write side of a readers-writer lock whose read side
every search holds while it ranks (:attr:`Cascade.lock`), so a concurrent search sees the catalog wholly
before or wholly after a change. A crash leaves at most unreferenced files and a torn last
line (never acknowledged, dropped on start). A restart replays the log onto the source's catalog; the log
is compacted to the changes that still matter once dead lines dominate it. The source (a checksummed
bundle) is never edited.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from snapsearch.retrieval.live_index import Compaction, LiveIndex
from snapsearch.retrieval.store import MutableVectorStore, mutable
from snapsearch.search.cascade import Cascade
from snapsearch.search.changelog import ChangeLog, fsync_dir
from snapsearch.search.hubness import added_metadata, item_densities
from snapsearch.search.products import Product
from snapsearch.search.prototype_shift import catalog_vectors
from snapsearch.search.rwlock import RWLock
from snapsearch.search.text import product_text
from snapsearch.utils.atomic import atomic_save, atomic_save_arrays

log = logging.getLogger(__name__)

# A new product's id: 1 to 128 ASCII letters, digits, '.', '_' and '-', starting with a letter or digit, and
# no '..'. It goes into URLs (/products/{id}) and logs; no '/', no path tricks, no control characters.
PRODUCT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
PRODUCT_ID_RULE = "1 to 128 of A-Z a-z 0-9 . _ -, starting with a letter or digit, without '..'"


class CatalogChangeError(ValueError):
    """A change that cannot be applied; ``status`` is the HTTP status a service answers with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def check_product_id(product_id: str) -> str:
    """``product_id`` without surrounding blanks, or CatalogChangeError (422) when it breaks ``PRODUCT_ID``."""
    product_id = product_id.strip()
    if not PRODUCT_ID.fullmatch(product_id) or ".." in product_id:
        raise CatalogChangeError(f"product_id {product_id[:140]!r} is not allowed: use {PRODUCT_ID_RULE}", 422)
    return product_id


@dataclass(frozen=True)
class LiveOptions:
    """When the live catalog compacts. The log: once ``compact_log_after`` of its lines are dead weight
    (removals, and adds of products removed since) and they outnumber the lines kept, so each rewrite is
    paid for by the lines it drops. The index: :class:`~snapsearch.retrieval.live_index.Compaction`."""

    compact_log_after: int = 1000
    index: Compaction = field(default_factory=Compaction)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> LiveOptions:
        """From ``serve.yaml``'s ``live_catalog`` (``compact_log_after``, ``tombstone_share``, ``max_tombstones``)."""
        cfg = dict(cfg or {})
        index = Compaction(float(cfg.get("tombstone_share", 0.2)), int(cfg.get("max_tombstones", 1024)))
        return cls(int(cfg.get("compact_log_after", 1000)), index)


class LiveCatalog:
    """Adds and removes products of a :class:`Cascade` (whose index it turns into a :class:`LiveIndex`)."""

    def __init__(self, cascade: Cascade, folder: str | Path, options: LiveOptions | None = None) -> None:
        self.cascade = cascade
        self.folder = Path(folder)
        self.options = options or LiveOptions()
        self.lock = RWLock()  # searches read (cascade.lock), changes and index compactions write
        cascade.index = mutable(cascade.index)
        if isinstance(cascade.index, LiveIndex):
            cascade.index.compaction = self.options.index
        cascade.lock = self.lock.reader
        self._write_lock = threading.Lock()  # one change at a time is embedded, written and applied
        self._added: dict[str, dict[str, Any]] = {}  # live-added products' add lines, in log order
        self._kept_removes: dict[str, dict[str, Any]] = {}  # removals of the source's products
        self._orphans: list[str] = []  # files of added products removed since: deleted after a compaction
        products = np.asarray(self.index.item_product)
        order = np.argsort(products, kind="stable")
        keys, starts = np.unique(products[order], return_index=True)
        self._items_of = dict(zip(keys.tolist(), np.split(order, starts[1:]), strict=True))  # position -> items
        self.log = ChangeLog(self.folder, cascade.runtime.embedder_fingerprint)
        for event in self.log.read():
            add = event["op"] == "add"
            embeddings = np.load(self.folder / event["embeddings"], allow_pickle=False)["embeddings"] if add else None
            self._apply(event, embeddings)
        self._maybe_compact_log()

    @property
    def index(self) -> MutableVectorStore:
        return self.cascade.index  # type: ignore[return-value]

    def reading(self) -> AbstractContextManager[None]:
        """A read section of the catalog: the products and the index stay as they are until it ends."""
        return self.lock.reader

    @property
    def n_changes(self) -> int:
        """Changes in the log (after a compaction: those it kept)."""
        return self.log.n_lines

    def close(self) -> None:
        self.log.close()

    # ------------------------------------------------------------------ changes
    def partition_of(self, category: str) -> int:
        """The gate's class a category path belongs to (the path cut at the run's partition depth)."""
        for p, name in enumerate(self.cascade.products.categories):
            if category == name or category.startswith(name + "/"):
                return p
        known = self.cascade.products.categories
        raise CatalogChangeError(
            f"category {category!r} is none of the {len(known)} categories the gate knows (e.g. {known[:3]}); "
            "a new category needs a retrained gate",
            422,
        )

    def add(self, product_id: str, name: str, category: str, images: Sequence[bytes]) -> Product:
        """Embed ``images`` (encoded files) and add them as a new product of ``category``; durable on return."""
        product_id, name = check_product_id(product_id), name.strip()
        if not images:
            raise CatalogChangeError("a product needs at least one image", 422)
        partition = self.partition_of(category)
        self._check_new(product_id)
        embeddings = catalog_vectors(
            self.cascade.prototype_shift, self.cascade.embed_images(images), partition, product_id
        )
        with self._write_lock:
            self._check_new(product_id)
            n = self.log.next_seq
            files = [self._write_bytes(f"images/{n:06d}_{i}.img", data) for i, data in enumerate(images)]
            emb_file = f"embeddings/{n:06d}.npz"
            atomic_save_arrays(self.folder / emb_file, {"embeddings": embeddings})
            for sub in ("images", "embeddings"):  # the files the log line names survive a crash before it
                fsync_dir(self.folder / sub)
            # paths inside the folder are stored relative to it, so the folder can move with its source
            product = Product(product_id, name or product_id, category, partition, f"live/{n:06d}_0", files[0])
            event = {"op": "add", "seq": n, "product": asdict(product), "images": files, "embeddings": emb_file}
            self.log.append(event)
            self._apply(event, embeddings)
            self._maybe_compact_log()
        return product

    def remove(self, product_id: str) -> Product:
        """Remove a live product; durable on return."""
        with self._write_lock:
            if product_id not in self.cascade.products:
                raise CatalogChangeError(f"no product {product_id!r} in the catalog", 404)
            product = self.cascade.products.get(product_id)
            event = {"op": "remove", "seq": self.log.next_seq, "product_id": product_id}
            self.log.append(event)
            self._apply(event, None)
            self._maybe_compact_log()
        return product

    def compact_log(self) -> None:
        """Rewrite the log to the changes that still matter (removals of source products, then the live
        adds, in their order), atomically; then delete the files of the adds it dropped."""
        with self._write_lock:
            self._compact_log()

    # ------------------------------------------------------------------ internals
    def _check_new(self, product_id: str) -> None:
        if product_id in self.cascade.products:
            raise CatalogChangeError(f"product {product_id!r} already exists; DELETE it first to replace it", 409)

    def _write_bytes(self, relative: str, data: bytes) -> str:
        atomic_save(self.folder / relative, lambda p: Path(p).write_bytes(data))
        return relative

    def _maybe_compact_log(self) -> None:
        kept = len(self._kept_removes) + len(self._added)
        dead = self.log.n_lines - kept
        if dead >= max(1, self.options.compact_log_after) and dead >= kept:
            self._compact_log()

    def _compact_log(self) -> None:
        """:meth:`compact_log` with the write lock held."""
        self.log.rewrite([*self._kept_removes.values(), *self._added.values()], self.log.next_seq)
        for relative in self._orphans:  # only once the rewritten log no longer names them
            (self.folder / relative).unlink(missing_ok=True)
        self._orphans.clear()
        log.info("compacted %s to %d changes", self.log.path, self.log.n_lines)

    def _apply(self, event: dict[str, Any], embeddings: np.ndarray | None) -> None:
        """Apply one change to the index and the product table (a sub-index compaction included), atomically
        for searches: under the write side of the lock."""
        with self.lock.writer:
            table = self.cascade.products
            if event["op"] == "add":
                product = Product(**event["product"])
                product = replace(product, image_path=str(self.folder / product.image_path))
                position = table.append(product)
                if self.cascade.text is not None:  # its name joins the text search at the same position
                    self.cascade.text.add_product(product_text(product.name, product.description))
                n = len(embeddings)  # type: ignore[arg-type]
                reference = self.cascade.hub_reference
                meta = added_metadata(
                    self.index.metadata,
                    product.image_id,
                    n,
                    lambda: item_densities(reference, embeddings, n),  # type: ignore[arg-type]
                )
                ids = self.index.add(embeddings, np.full(n, product.partition), np.full(n, position), meta)  # type: ignore[arg-type]
                self._items_of[position] = np.asarray(ids)
                self._added[product.product_id] = event
            else:
                position = table.remove(event["product_id"])
                self.index.remove(self._items_of.pop(position, np.zeros(0, np.int64)))
                added = self._added.pop(event["product_id"], None)
                if added is None:
                    self._kept_removes[event["product_id"]] = event
                else:
                    self._orphans += [*added["images"], added["embeddings"]]
