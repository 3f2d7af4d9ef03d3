"""``train.py stages=[..., query_type]``: the query-type head, fitted on the run's gate features of shop
photos (train split) and of views made from the catalog images (re-sent catalog pictures and synthetic
screenshots), then checked on validation photos and on fresh views (other seeds).

It trains after the cascade's models (it reads their gate's pooled trunk features) and never on a held-out product
(``data.unseen_products``), whose catalog image is in the pool but whose pictures no model may learn from.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from snapsearch.data.dataset import LabelMaps
from snapsearch.data.protocols import known_rows, without_unseen
from snapsearch.data.query_views import render_views
from snapsearch.data.sources import load_manifest
from snapsearch.runtime.batch import BatchIO, run_inference
from snapsearch.runtime.factory import run_runtime
from snapsearch.runtime.models import CascadeRuntime
from snapsearch.search.products import display_name
from snapsearch.search.query_type import QueryTypeHead
from snapsearch.utils.atomic import atomic_write_text
from snapsearch.utils.layout import METRICS, RunDir

log = logging.getLogger(__name__)


def type_examples(
    manifest: pd.DataFrame, labels: LabelMaps, split: str, views_per_product: int, seed: int, out_dir: Path, **limits
) -> pd.DataFrame:
    """Labelled query-type examples: the ``split``'s shop photos (``photo``) and ``views_per_product``
    catalog views and screenshots of every known product's catalog images, written under ``out_dir``."""
    known = without_unseen(known_rows(manifest, labels), labels)
    photos = known[(known["domain"] == "query") & (known["split"] == split)].assign(query_type="photo")
    catalog = known[known["domain"] == "catalog"]
    titles = [display_name(p) for p in catalog["product_id"]]
    views = [
        render_views(catalog, kind, views_per_product, seed + i, out_dir, titles=titles, **limits)
        for i, kind in enumerate(("catalog", "screenshot"))
    ]
    return pd.concat([photos, *views], ignore_index=True)


def type_features(runtime: CascadeRuntime, frame: pd.DataFrame, labels: LabelMaps, io: BatchIO, what: str):
    """(the gate's features, query types) of the readable rows of ``frame``."""
    out = run_inference(runtime, frame, labels, classify=True, io=io, what=what, features=True)
    return out.features, frame.loc[out.rows, "query_type"].to_numpy()


def per_type_accuracy(head: QueryTypeHead, emb: np.ndarray, types: np.ndarray) -> dict[str, float]:
    predicted = np.array(head.predict(emb))
    return {t: float((predicted[types == t] == t).mean()) for t in head.types if (types == t).any()}


def train_query_type(cfg: DictConfig, dm, run_dir: Path, loggers) -> dict[str, float]:
    """Fit, check and save the head into ``<run_dir>/query_type``; return its metrics."""
    run = RunDir(run_dir)
    q = cfg.query_type
    labels = LabelMaps.load(run.labels)
    manifest = load_manifest(cfg.data)
    runtime = run_runtime(run.root, "trained", None, "cpu")
    io = BatchIO(q.batch_size, cfg.data.num_workers, int(cfg.data.max_image_pixels), bool(cfg.data.draft_decode))
    limits = {"max_pixels": int(cfg.data.max_image_pixels)}
    folder = run.query_type
    train = type_examples(manifest, labels, "train", q.views_per_product, q.seed, folder / "views" / "train", **limits)
    if q.max_photos is not None:  # photos outnumber the views: a seeded sample is enough for a linear head
        photos = train[train["query_type"] == "photo"]
        keep = photos.sample(n=min(q.max_photos, len(photos)), random_state=q.seed).index
        train = train[(train["query_type"] != "photo") | train.index.isin(keep)]
    emb, types = type_features(runtime, train, labels, io, "query-type training images")
    head = QueryTypeHead.fit(emb, types.tolist(), c=q.c, max_iter=q.max_iter, gate_fingerprint=runtime.gate_fingerprint)
    val = type_examples(manifest, labels, "val", 1, q.seed + 100, folder / "views" / "val", **limits)
    v_emb, v_types = type_features(runtime, val, labels, io, "query-type validation images")
    metrics = {f"val/acc_{t}": a for t, a in per_type_accuracy(head, v_emb, v_types).items()}
    metrics["val/acc"] = float((np.array(head.predict(v_emb)) == v_types).mean())
    metrics["train/acc"] = float((np.array(head.predict(emb)) == types).mean())
    head.save(folder)
    atomic_write_text(folder / METRICS, json.dumps(metrics, indent=2))
    log.info("query-type head: %s", metrics)
    return {f"query_type/{k}": v for k, v in metrics.items()}
