"""Shared-store mode of the live catalog: when the store is a server that service replicas share (Milvus with
``index.shared_catalog=true``), the store is the catalog's source of truth, not a local changes file.

An add uploads the product's vectors (random point ids: replicas never collide), then appends one event to
the store's journal naming the product (its metadata travels in the event) and those point ids; a removal
appends its event and deletes the points. Every replica applies the journal's events once each, its own at
once and the others' from a poller (``index.journal_poll_s``), under the catalog's write lock, so a search
sees a change wholly or not at all. Across replicas a removal is seen in two steps: its points leave the
shared store at once (no replica finds the product any more), its record goes at the replica's next poll
(``GET /products/{id}`` answers 200 until then). A replica that starts replays the whole journal onto its source's
catalog. Images of added products stay on the disk of the replica that took them (``catalog_changes``; point
it at a shared volume to serve every image from every replica). An add whose process dies between its upload
and its journal event leaves points no replica knows: they never appear in answers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from snapsearch.retrieval.hubness import DENSITY
from snapsearch.retrieval.store import StoreUnavailable
from snapsearch.search.cascade import Cascade
from snapsearch.search.hubness import added_metadata, item_densities, journalled_densities
from snapsearch.search.live import CatalogChangeError, LiveCatalog, LiveOptions, check_product_id
from snapsearch.search.products import Product
from snapsearch.search.prototype_shift import catalog_vectors
from snapsearch.search.rwlock import RWLock
from snapsearch.search.text import product_text

log = logging.getLogger(__name__)


def open_live_catalog(cascade: Cascade, folder: str | Path, options: LiveOptions | None = None) -> LiveCatalog:
    """The shared catalog when the cascade's store is shared by replicas, else the local-log one."""
    if getattr(cascade.index, "shared", False):
        return SharedCatalog(cascade, folder, options)
    return LiveCatalog(cascade, folder, options)


class SharedCatalog(LiveCatalog):
    """A :class:`LiveCatalog` whose changes live in the store's journal (see the module docstring)."""

    def __init__(self, cascade: Cascade, folder: str | Path, options: LiveOptions | None = None) -> None:
        self.cascade = cascade
        self.folder = Path(folder)
        (self.folder / "images").mkdir(parents=True, exist_ok=True)
        self.options = options or LiveOptions()
        self.lock = RWLock()
        cascade.lock = self.lock.reader
        self._write_lock = threading.Lock()
        self.store: Any = cascade.index  # a MilvusStore: journal, upload, attach
        products = np.asarray(self.store.item_product)
        order = np.argsort(products, kind="stable")
        keys, starts = np.unique(products[order], return_index=True)
        self._items_of = dict(zip(keys.tolist(), np.split(order, starts[1:]), strict=True))
        self._seen: set[int] = set()
        self._last_seq: int | None = None
        self._stop = threading.Event()
        self.sync()  # the whole journal, before the first search
        self._poller = threading.Thread(target=self._poll, name="catalog-journal", daemon=True)
        self._poller.start()

    @property
    def n_changes(self) -> int:
        """Journal events applied here (every replica's)."""
        return len(self._seen)

    def close(self) -> None:
        self._stop.set()
        self._poller.join(timeout=self.store.spec.timeout_s)

    def compact_log(self) -> None:
        """Nothing to compact here: the journal lives in the store."""

    # ------------------------------------------------------------------ changes
    def add(self, product_id: str, name: str, category: str, images: Sequence[bytes]) -> Product:
        """Embed, upload, journal; durable (in the store) on return."""
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
            key = f"{product_id}-{threading.get_ident()}-{len(self._seen)}"
            files = [self._write_bytes(f"images/{key}_{i}.img", data) for i, data in enumerate(images)]
            product = Product(product_id, name or product_id, category, partition, f"live/{key}", files[0])
            n = len(embeddings)
            reference = self.cascade.hub_reference
            meta = added_metadata(
                self.store.metadata, product.image_id, n, lambda: item_densities(reference, embeddings, n)
            )
            event: dict[str, Any] = {"op": "add", "product": asdict(product)}
            if DENSITY in meta:  # every replica gets the same densities through the journal
                event["densities"] = meta[DENSITY].tolist()
            points = self.store.upload(embeddings, np.full(n, partition), np.full(n, -1), meta)
            event["points"] = points.tolist()
            self._apply_event(self.store.journal.append(event), event)
        return product

    def remove(self, product_id: str) -> Product:
        with self._write_lock:
            if product_id not in self.cascade.products:
                raise CatalogChangeError(f"no product {product_id!r} in the catalog", 404)
            product = self.cascade.products.get(product_id)
            event = {"op": "remove", "product_id": product_id}
            self._apply_event(self.store.journal.append(event), event)
        return product

    # ------------------------------------------------------------------ the journal
    def sync(self) -> int:
        """Apply the journal's events this replica has not applied yet; returns how many."""
        events = self.store.journal.since(self._last_seq)
        fresh = [(seq, e) for seq, e in events if seq not in self._seen]
        with self._write_lock:
            for seq, event in fresh:
                self._apply_event(seq, event)
        return len(fresh)

    def _poll(self) -> None:
        while not self._stop.wait(self.store.spec.journal_poll_s):
            try:
                self.sync()
            except StoreUnavailable as err:
                log.warning("catalog journal unreadable (retrying): %s", err)

    def _apply_event(self, seq: int, event: dict[str, Any]) -> None:
        """One event, once, under the write lock (the caller holds ``_write_lock``)."""
        if seq in self._seen:
            return
        self._seen.add(seq)
        self._last_seq = max(seq, self._last_seq or seq)
        with self.lock.writer:
            table = self.cascade.products
            if event["op"] == "add":
                product = Product(**event["product"])
                if product.product_id in table:
                    log.warning("journal adds %s again (two replicas at once?): the first stays", product.product_id)
                    return
                product = replace(product, image_path=str(self.folder / product.image_path))
                position = table.append(product)
                if self.cascade.text is not None:
                    self.cascade.text.add_product(product_text(product.name, product.description))
                points = np.asarray(event["points"], dtype=np.int64)
                n = len(points)
                column = self.store.metadata.get(DENSITY)
                meta = added_metadata(
                    self.store.metadata, product.image_id, n, lambda: journalled_densities(event, column, n)
                )
                ids = self.store.attach(points, np.full(n, product.partition), np.full(n, position), meta)
                self._items_of[position] = ids
            elif event["product_id"] in table:
                position = table.remove(event["product_id"])
                self.store.remove(self._items_of.pop(position, np.zeros(0, np.int64)))
