"""The product table a cascade answers with: id, display name, category, partition and a catalog image.

Index items point at products by *position* in this table (``PartitionedIndex.item_product``), so the first
positions follow the run's label map (``labels.products``) and products added live are appended after them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd

from snapsearch.data.dataset import LabelMaps
from snapsearch.search.barcode import normalize_gtin
from snapsearch.utils.atomic import atomic_write_text

PRODUCTS_FILE = "products.json"


def display_name(product_id: str) -> str:
    """A readable default name for a product id (``Granny-Smith`` -> ``Granny Smith``)."""
    return product_id.replace("_", " ").replace("-", " ").strip() or product_id


def _cell(row: pd.Series | None, column: str) -> str:
    """A manifest row's optional column as text ("" when the row or the column is missing or empty)."""
    return str(row[column]) if row is not None and column in row.index and row[column] else ""


@dataclass(frozen=True)
class Product:
    product_id: str
    name: str
    category: str  # the full category path (``Fruit/Apple``)
    partition: int  # the gate's class (the category cut at the run's partition depth)
    image_id: str | None  # the catalog image shown for it
    image_path: str | None
    removed: bool = False
    gtin: str | None = None  # GTIN-14 (normalised), from the manifest's optional ``gtin`` column
    description: str = ""  # the manifest's optional ``description``: what text search matches read words with


class ProductTable:
    """Products by position. Removal keeps the position (index items keep pointing at it) and marks it."""

    def __init__(self, products: list[Product], categories: list[str]) -> None:
        self.categories = list(categories)
        self._products = list(products)
        self._position = {p.product_id: i for i, p in enumerate(self._products) if not p.removed}
        self._by_gtin = {p.gtin: i for i, p in enumerate(self._products) if p.gtin and not p.removed}

    @classmethod
    def from_manifest(cls, manifest: pd.DataFrame, labels: LabelMaps) -> ProductTable:
        """The label map's products, named by the manifest's ``name`` column when it has one, each shown by
        its first catalog image (None for a product with no catalog image), with its ``gtin`` and
        ``description`` when the manifest has those columns (a barcode query finds it exactly; text search
        reads the description). Both are read from the product's catalog rows first."""
        first = manifest.drop_duplicates("product_id").set_index("product_id")
        catalog = manifest[manifest["domain"] == "catalog"].drop_duplicates("product_id").set_index("product_id")
        products = []
        for product_id, partition in zip(labels.products, labels.product_category, strict=True):
            shown = catalog.loc[product_id] if product_id in catalog.index else None
            row = shown if shown is not None else first.loc[product_id] if product_id in first.index else None
            name, code = _cell(row, "name"), _cell(row, "gtin")
            products.append(
                Product(
                    product_id=product_id,
                    name=name or display_name(product_id),
                    category=str(row["category"]) if row is not None else labels.categories[partition],
                    partition=int(partition),
                    image_id=None if shown is None else str(shown["image_id"]),
                    image_path=None if shown is None else str(shown["path"]),
                    gtin=normalize_gtin(code),
                    description=_cell(row, "description"),
                )
            )
        return cls(products, labels.categories)

    # ------------------------------------------------------------------ lookup
    def __len__(self) -> int:
        """Positions in use, removed products included (index items may still point at them)."""
        return len(self._products)

    def __getitem__(self, position: int) -> Product:
        return self._products[position]

    def __contains__(self, product_id: object) -> bool:
        return product_id in self._position

    def position(self, product_id: str) -> int:
        """Position of a live product; KeyError when there is none with that id."""
        return self._position[product_id]

    def by_gtin(self, gtin: str | None) -> int | None:
        """Position of the live product with this (normalised) GTIN, or None."""
        return None if gtin is None else self._by_gtin.get(gtin)

    def get(self, product_id: str) -> Product:
        return self._products[self.position(product_id)]

    def live(self) -> Iterator[Product]:
        """Products not removed, in table order."""
        return (p for p in self._products if not p.removed)

    @property
    def has_gtins(self) -> bool:
        """Whether a live product carries a GTIN (a barcode could answer)."""
        return bool(self._by_gtin)

    @property
    def n_live(self) -> int:
        return len(self._position)

    # ------------------------------------------------------------------ changes
    def append(self, product: Product) -> int:
        """Add a product at the next position; ValueError when a live product has its id."""
        if product.product_id in self._position:
            raise ValueError(f"product {product.product_id!r} already exists")
        if not 0 <= product.partition < len(self.categories):
            raise ValueError(f"product {product.product_id!r}: partition {product.partition} out of range")
        self._products.append(product)
        self._position[product.product_id] = len(self._products) - 1
        if product.gtin:
            self._by_gtin[product.gtin] = len(self._products) - 1
        return len(self._products) - 1

    def remove(self, product_id: str) -> int:
        """Mark a live product removed; returns its position."""
        position = self._position.pop(product_id)
        self._by_gtin.pop(self._products[position].gtin, None)
        self._products[position] = replace(self._products[position], removed=True)
        return position

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> None:
        data = {"categories": self.categories, "products": [asdict(p) for p in self._products]}
        atomic_write_text(path, json.dumps(data, indent=1))

    @classmethod
    def load(cls, path: str | Path) -> ProductTable:
        data = json.loads(Path(path).read_text())
        return cls([Product(**p) for p in data["products"]], data["categories"])
