"""Queries beyond the shop photo (``query_types.enabled=true``): shop photos, re-sent catalog images,
synthetic screenshots and photos with a barcode label, the last three made here from the test split and the
catalog with seeds no training used.

Reported: the type gate's accuracy and confusion matrix (the barcode reader first, then the query-type
head), the head's accuracy on products whose views it never saw (2-fold by product), and R@1/R@5 per type
for every strategy alone and, per photo route, with and without the type gate (with paired intervals).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from snapsearch.data.dataset import LabelMaps
from snapsearch.data.image_io import read_rgb
from snapsearch.data.query_views import BARCODE, QUERY_TYPES, gtin_for, render_views
from snapsearch.evaluation.scoring import subset_scores
from snapsearch.retrieval import per_query_metrics
from snapsearch.runtime.batch import BatchIO, Outputs
from snapsearch.search.barcode import normalize_gtin, read_codes
from snapsearch.search.cascade import Cascade
from snapsearch.search.catalog_index import label_indices
from snapsearch.search.products import ProductTable
from snapsearch.search.query_type import QueryTypeHead

TYPES = (*QUERY_TYPES, BARCODE)


def _views(cfg: DictConfig, cascade: Cascade, queries: pd.DataFrame, pool: pd.DataFrame, out: Path, max_px: int):
    """The generated queries: catalog views and screenshots of each pool product's catalog image, and one
    test photo per product with its (evaluation-only) EAN-13 label pasted on."""
    catalog = pool[pool["domain"] == "catalog"].drop_duplicates("product_id")
    titles = [cascade.products.get(p).name for p in catalog["product_id"]]
    frames = [
        render_views(catalog, kind, cfg.views_per_product, cfg.seed + i, out, titles=titles, max_pixels=max_px)
        for i, kind in enumerate(("catalog", "screenshot"))
    ]
    shelf = queries.drop_duplicates("product_id")
    gtins = [gtin_for(cascade.products.position(p)) for p in shelf["product_id"]]
    frames.append(render_views(shelf, BARCODE, 1, cfg.seed + 2, out, gtins=gtins, max_pixels=max_px))
    return pd.concat(frames, ignore_index=True)


def _with_gtins(products: ProductTable) -> ProductTable:
    """The product table with every product carrying its evaluation-only EAN-13 (``gtin_for`` its position)."""
    n = len(products)
    return ProductTable([replace(products[i], gtin=normalize_gtin(gtin_for(i))) for i in range(n)], products.categories)


def _held_out_accuracy(feats: np.ndarray, types: np.ndarray, product: np.ndarray, c: float) -> float:
    """The head refitted on half the products' queries and scored on the other half's, both ways."""
    fold = np.isin(product, np.unique(product)[::2])
    right = 0
    for train in (fold, ~fold):
        head = QueryTypeHead.fit(feats[train], types[train].tolist(), c=c, max_iter=2000, gate_fingerprint=None)
        right += int((np.array(head.predict(feats[~train])) == types[~train]).sum())
    return right / len(types)


def query_type_study(
    cfg: DictConfig,
    cascade: Cascade,
    labels: LabelMaps,
    io: BatchIO,
    frames: tuple[pd.DataFrame, pd.DataFrame],
    q_out: Outputs,
    out_dir: Path,
    *,
    k: int,
    scoring: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, tuple]]:
    """(the study's results, the generated query sets by name: paths, embeddings, probabilities, true
    partitions and products, for the text study)."""
    queries, pool = frames
    photos = queries.loc[q_out.rows[:: cfg.photo_stride]].assign(query_type="photo")
    generated = _views(cfg, cascade, queries, pool, out_dir / "queries", io.max_pixels)
    typed = cascade.query_types is not None
    g_out = cascade.infer_frame(generated, labels, io, classify=True, what="generated queries", features=typed)
    assert q_out.probs is not None and g_out.probs is not None
    stride = slice(None, None, cfg.photo_stride)
    emb = np.concatenate([q_out.embeddings[stride], g_out.embeddings])
    probs = np.concatenate([q_out.probs[stride], g_out.probs])
    frame = pd.concat([photos, generated.loc[g_out.rows]], ignore_index=True)
    true_type = frame["query_type"].to_numpy()
    part, prod = label_indices(frame, labels)

    # the type gate: the barcode reader (codes found in the catalog), then the head
    table = _with_gtins(cascade.products)
    exact = np.full(len(frame), -1)
    for i in np.flatnonzero(true_type == BARCODE):
        code = next(iter(read_codes(read_rgb(frame["path"].iloc[i], max_pixels=io.max_pixels))), None)
        position = table.by_gtin(code.gtin) if code is not None else None
        exact[i] = -1 if position is None else position
    feats = None
    if typed:
        if q_out.features is None or g_out.features is None:
            raise ValueError("the query-type study needs the test photos' gate features (infer_frame features=True)")
        feats = np.concatenate([q_out.features[stride], g_out.features])
    head_types = np.array(cascade.detect_types(feats, len(emb)))
    detected = np.where(exact >= 0, BARCODE, head_types)

    strategies = [s for s in cfg.strategies if s in cascade.strategies]
    per_query: dict[str, dict[str, np.ndarray]] = {}
    for s in strategies:
        rankings, _ = cascade.rank(emb, probs, k, s, true_partition=part)
        per_query[s] = per_query_metrics([list(map(int, r.products)) for r in rankings], prod.tolist(), ks=(1, 5))
    exact_hit = (exact == prod).astype(float)  # a code found in the catalog: the product at rank 1, or a miss
    routes = {t: cascade.route(t) for t in QUERY_TYPES}
    for s in cfg.photo_routes:
        if s not in per_query:
            continue
        chosen = [s if t == "photo" else routes[t] for t in head_types]
        routed = {m: np.array([per_query[c][m][i] for i, c in enumerate(chosen)]) for m in per_query[s]}
        per_query[f"{s}+types"] = {m: np.where(exact >= 0, exact_hit, v) for m, v in routed.items()}

    by_type = {}
    for t in TYPES:
        rows = np.flatnonzero(true_type == t)
        if len(rows):
            by_type[t] = {"n_products": int(np.unique(prod[rows]).size)} | subset_scores(
                per_query, rows, products=prod, **scoring
            )
    confusion = pd.crosstab(pd.Series(true_type, name="true"), pd.Series(detected, name="detected"))
    heads = ~np.isin(true_type, [BARCODE])
    out: dict[str, Any] = {
        "head": None if cascade.query_types is None else list(cascade.query_types.types),
        "routes": routes,
        "accuracy": float((detected == true_type).mean()),
        "accuracy_by_type": {t: float((detected[true_type == t] == t).mean()) for t in by_type},
        "confusion": {t: {d: int(confusion.loc[t, d]) for d in confusion.columns} for t in confusion.index},
        "by_type": by_type,
        "n_generated_unreadable": g_out.skipped,
    }
    if cascade.query_types is not None:
        out["held_out_products_accuracy"] = _held_out_accuracy(feats[heads], true_type[heads], prod[heads], cfg.c)
    paths = frame["path"].tolist()
    sets = {  # the generated queries, for the text study (a screenshot prints the product's name)
        f"{t} (generated)": ([paths[i] for i in rows], emb[rows], probs[rows], part[rows], prod[rows])
        for t in ("catalog", "screenshot")
        if len(rows := np.flatnonzero(true_type == t))
    }
    return out, sets
