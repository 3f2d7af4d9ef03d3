"""A live catalog: products added and removed while the cascade serves, persisted beside its source.

Every change is embedded first, then written (images, embeddings, then ``changes.json`` atomically, so a
crash leaves at most unreferenced files), then applied to the index and product table under the cascade's
lock, so a concurrent search sees the catalog wholly before or wholly after a change. A restart replays
``changes.json`` onto the source's catalog. The source (a checksummed bundle) is never edited.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from snapsearch.retrieval.store import MutableVectorStore, mutable
from snapsearch.search.cascade import Cascade
from snapsearch.search.products import Product
from snapsearch.search.text import product_text
from snapsearch.utils.atomic import atomic_save, atomic_save_arrays, atomic_write_text

CHANGES_FILE = "changes.json"
FORMAT_VERSION = 1
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


class LiveCatalog:
    """Adds and removes products of a :class:`Cascade` (whose index it turns into a :class:`LiveIndex`)."""

    def __init__(self, cascade: Cascade, folder: str | Path) -> None:
        self.cascade = cascade
        self.folder = Path(folder)
        self.lock = threading.Lock()
        cascade.index = mutable(cascade.index)
        cascade.lock = self.lock
        self._events: list[dict[str, Any]] = []
        self._write_lock = threading.Lock()  # one change at a time is embedded, written and applied
        path = self.folder / CHANGES_FILE
        if path.is_file():
            self._replay(json.loads(path.read_text()), path)

    @property
    def index(self) -> MutableVectorStore:
        return self.cascade.index  # type: ignore[return-value]

    @property
    def n_changes(self) -> int:
        return len(self._events)

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
        """Embed ``images`` (encoded files) and add them as a new product of ``category``."""
        product_id, name = check_product_id(product_id), name.strip()
        if not images:
            raise CatalogChangeError("a product needs at least one image", 422)
        partition = self.partition_of(category)
        self._check_new(product_id)
        embeddings = self.cascade.embed_images(images)
        with self._write_lock:
            self._check_new(product_id)
            n = len(self._events)
            files = [self._write_bytes(f"images/{n:06d}_{i}.img", data) for i, data in enumerate(images)]
            emb_file = f"embeddings/{n:06d}.npz"
            atomic_save_arrays(self.folder / emb_file, {"embeddings": embeddings})
            # paths inside the folder are stored relative to it, so the folder can move with its source
            product = Product(product_id, name or product_id, category, partition, f"live/{n:06d}_0", files[0])
            event = {"op": "add", "product": asdict(product), "images": files, "embeddings": emb_file}
            self._persist([*self._events, event])
            self._apply(event, embeddings)
        return product

    def remove(self, product_id: str) -> Product:
        with self._write_lock:
            if product_id not in self.cascade.products:
                raise CatalogChangeError(f"no product {product_id!r} in the catalog", 404)
            product = self.cascade.products.get(product_id)
            event = {"op": "remove", "product_id": product_id}
            self._persist([*self._events, event])
            self._apply(event, None)
        return product

    # ------------------------------------------------------------------ internals
    def _check_new(self, product_id: str) -> None:
        if product_id in self.cascade.products:
            raise CatalogChangeError(f"product {product_id!r} already exists; DELETE it first to replace it", 409)

    def _write_bytes(self, relative: str, data: bytes) -> str:
        atomic_save(self.folder / relative, lambda p: Path(p).write_bytes(data))
        return relative

    def _persist(self, events: list[dict[str, Any]]) -> None:
        state = {
            "format_version": FORMAT_VERSION,
            "embedder_fingerprint": self.cascade.runtime.embedder_fingerprint,
            "events": events,
        }
        atomic_write_text(self.folder / CHANGES_FILE, json.dumps(state, indent=1))

    def _apply(self, event: dict[str, Any], embeddings: np.ndarray | None) -> None:
        """Apply one change to the index and the product table, atomically for searches."""
        with self.lock:
            table = self.cascade.products
            if event["op"] == "add":
                product = Product(**event["product"])
                product = replace(product, image_path=str(self.folder / product.image_path))
                position = table.append(product)
                if self.cascade.text is not None:  # its name joins the text search at the same position
                    self.cascade.text.add_product(product_text(product.name, product.description))
                n = len(embeddings)  # type: ignore[arg-type]
                meta = {key: np.full(n, product.image_id) for key in self.index.metadata}
                self.index.add(embeddings, np.full(n, product.partition), np.full(n, position), meta)  # type: ignore[arg-type]
            else:
                position = table.remove(event["product_id"])
                self.index.remove(np.flatnonzero(self.index.item_product == position))
            self._events.append(event)

    def _replay(self, state: dict[str, Any], path: Path) -> None:
        if state.get("format_version") != FORMAT_VERSION:
            raise CatalogChangeError(f"{path}: unknown format {state.get('format_version')}", 500)
        if state["embedder_fingerprint"] != self.cascade.runtime.embedder_fingerprint:
            raise CatalogChangeError(
                f"the catalog changes at {path.parent} were embedded by another embedder than this source's; "
                "move that folder aside (its images are kept there) and add the products again",
                500,
            )
        for event in state["events"]:
            add = event["op"] == "add"
            embeddings = np.load(self.folder / event["embeddings"], allow_pickle=False)["embeddings"] if add else None
            self._apply(event, embeddings)
