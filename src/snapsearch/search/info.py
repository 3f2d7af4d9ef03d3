"""What a cascade serves, JSON-ready: the service's ``GET /info``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from snapsearch.search.hubness import hubness_info
from snapsearch.search.novelty import novelty_info

if TYPE_CHECKING:
    from snapsearch.search.cascade import Cascade


def describe(cascade: Cascade) -> dict[str, Any]:
    """Runtime, strategies, catalog sizes, index, options (call under the cascade's lock: it reads the
    product table and the index)."""
    index, products = cascade.index, cascade.products
    sizes = np.bincount(
        index.item_partition[~getattr(index, "removed", np.zeros(index.n_items, bool))],
        minlength=index.n_partitions,
    )
    text = cascade.text
    return {
        "runtime": cascade.runtime.name,
        "strategies": cascade.searchable(),
        "default_strategy": cascade.default_strategy,
        "categories": list(products.categories),
        "n_products": products.n_live,
        "n_items": int(sizes.sum()),
        "partition_sizes": {c: int(n) for c, n in zip(products.categories, sizes, strict=True)},
        "index": {"factory": index.factory, "metric": index.metric},
        "embedding_dim": cascade.runtime.embedding_dim,
        "rejection": cascade.rejection,
        "k_max": cascade.k_max,
        "barcodes": cascade.barcodes,
        "query_types": None if cascade.query_types is None else list(cascade.query_types.types),
        "type_routes": cascade.type_routes,
        "text": None if text is None else {"encoder": text.encoder.name, "weight": text.weight},
        "hubness": hubness_info(cascade.hubness, cascade.hub_reference),
        "prototype_shift": None if cascade.prototype_shift is None else cascade.prototype_shift.info(),
        "novelty": novelty_info(cascade.novelty, cascade.runtime),
    }
