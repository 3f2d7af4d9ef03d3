"""The typed answers a cascade builds from a ranking or from a barcode found in the catalog."""

from __future__ import annotations

import numpy as np

from snapsearch.retrieval import Ranking, Route
from snapsearch.search.products import ProductTable
from snapsearch.search.result import (
    CategoryProbability,
    ProductHit,
    Rejection,
    RouteTaken,
    SearchResult,
    TextRead,
)


def ranked_answer(
    products: ProductTable,
    ranking: Ranking,
    route: Route,
    probs: np.ndarray,
    strategy: str,
    shown_categories: int,
    threshold: float | None,
    query_type: str,
    text: TextRead | None,
) -> SearchResult:
    """One ranked query's answer: its products, the gate's ``shown_categories`` most probable categories
    (0 for a strategy that ignores the gate), the route, and the rejection verdict under ``threshold``."""
    hits = [
        ProductHit(
            rank=i + 1, product_id=p.product_id, name=p.name, category=p.category, score=float(s), image_id=p.image_id
        )
        for i, (p, s) in enumerate(zip((products[int(q)] for q in ranking.products), ranking.scores, strict=True))
    ]
    order = np.argsort(-probs, kind="stable")[:shown_categories]
    partitions = [] if route is None else [products.categories[p] for p in route]
    rejection = None
    if threshold is not None:
        rejection = Rejection(score=float(ranking.scores[0]) if hits else None, threshold=threshold)
    return SearchResult(
        products=hits,
        categories=[CategoryProbability(products.categories[c], float(probs[c])) for c in order],
        route=RouteTaken(strategy=strategy, partitions=partitions, fallback_to_global=route is None),
        timings_ms={},
        rejection=rejection,
        query_type=query_type,
        text=text,
        product_index=[int(p) for p in ranking.products],
    )


def barcode_answer(products: ProductTable, position: int) -> SearchResult:
    """A decoded barcode found in the catalog: that product, exactly (score 1), no model, no search."""
    p = products[position]
    hit = ProductHit(rank=1, product_id=p.product_id, name=p.name, category=p.category, score=1.0, image_id=p.image_id)
    return SearchResult(
        products=[hit],
        categories=[CategoryProbability(p.category, 1.0)],
        route=RouteTaken(strategy="barcode", partitions=[products.categories[p.partition]], fallback_to_global=False),
        timings_ms={},
        query_type="barcode",
        product_index=[position],
    )
