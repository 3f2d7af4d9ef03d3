"""The optional studies of an evaluation, each switched on in ``conf/evaluate.yaml``: "not in our catalog"
(rejection), camera faults, a growing pool, query types and text. Each reuses the queries' model outputs
where it can."""

from __future__ import annotations

from dataclasses import astuple
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from snapsearch.data.dataset import LabelMaps
from snapsearch.evaluation.camera_faults import camera_faults_study, fault_photos
from snapsearch.evaluation.growing_pool import growing_pool_figure, run_growing_pool
from snapsearch.evaluation.query_types import query_type_study
from snapsearch.evaluation.rejection import Photos, rejection_study
from snapsearch.evaluation.report import save_png
from snapsearch.evaluation.text_study import text_study
from snapsearch.runtime.batch import BatchIO, Outputs
from snapsearch.search.cascade import Cascade
from snapsearch.search.catalog_index import label_indices


def run_studies(
    cfg: DictConfig,
    cascade: Cascade,
    manifest: pd.DataFrame,
    labels: LabelMaps,
    io: BatchIO,
    frames: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame],
    q_out: Outputs,
    stream: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> dict[str, Any]:
    """The enabled studies' results by name (figures are written to the output folder).

    ``frames``: (test queries, pool, calibration photos); ``q_out``: the queries' model outputs;
    ``stream``: (embeddings, probabilities, true partitions, true products) of the query stream.
    """
    queries, pool, calib = frames
    out: dict[str, Any] = {}
    out_dir = Path(cfg.paths.output_dir)
    scoring = {
        "baseline": cfg.cascade.baseline,
        "improvement_metrics": cfg.improvement_metrics,
        "bootstrap_resamples": cfg.bootstrap.resamples,
        "bootstrap_unit": cfg.bootstrap.unit,
        "seed": cfg.bootstrap.seed,
    }
    needs_val = (cfg.rejection.enabled or cfg.text_study.enabled) and not calib.empty
    v_out = cascade.infer_frame(calib, labels, io, classify=True, what="validation photos") if needs_val else None
    if cfg.rejection.enabled and v_out is not None:
        out["rejection"] = _rejection(cfg, cascade, manifest, labels, io, calib, v_out, queries.loc[q_out.rows], q_out)
    if cfg.camera_faults.enabled:
        faults = cfg.camera_faults
        out["camera_faults"] = camera_faults_study(
            cascade,
            fault_photos(faults.photos, queries, calib).iloc[:: faults.query_stride],
            labels,
            io,
            faults.corruptions,
            strategies=[s for s in faults.strategies if s in cascade.strategies],
            k=faults.k,
            seed=faults.seed,
            bootstrap=cfg.bootstrap,
        ) | {"photos": faults.photos}
    if cfg.growing_pool.enabled:
        if cfg.protocol != "catalog":
            raise ValueError("growing_pool.enabled=true grows the catalog protocol's pool: use protocol=catalog")
        out["growing_pool"] = run_growing_pool(cfg.growing_pool, cascade, manifest, pool, labels, io, stream)
        save_png(growing_pool_figure(out["growing_pool"]), out_dir / "growing_pool.png")
    generated: dict[str, tuple] = {}
    if cfg.query_types.enabled:
        out["query_types"], generated = query_type_study(
            cfg.query_types, cascade, labels, io, (queries, pool), q_out, out_dir, k=cfg.k, scoring=scoring
        )
    if cfg.text_study.enabled:
        if v_out is None:
            raise ValueError("text_study.enabled=true chooses its weight on validation photos: the protocol has none")
        picked = slice(None, None, cfg.text_study.query_stride)
        out["text"] = text_study(
            cfg.text_study,
            cascade,
            _outputs_of(calib, v_out, labels, slice(None)),
            _outputs_of(queries, q_out, labels, picked),
            out_dir,
            max_pixels=io.max_pixels,
            scoring=scoring,
            extra=generated,
        )
    return out


def _outputs_of(frame: pd.DataFrame, outputs: Outputs, labels: LabelMaps, picked: slice):
    """(paths, embeddings, probabilities, true partitions, true products) of the ``picked`` readable rows."""
    rows = outputs.rows[picked]
    part, prod = label_indices(frame.loc[rows], labels)
    assert outputs.probs is not None
    return frame.loc[rows, "path"].tolist(), outputs.embeddings[picked], outputs.probs[picked], part, prod


def _rejection(cfg, cascade, manifest, labels, io, calib, v_out, queries, q_out) -> dict[str, Any]:
    """The "not in our catalog" study: out of the pool go the run's fully unseen products when it has them
    (their validation photos, which calibration never sees, choose the thresholds for one half of them), else a
    seeded share of the products the models trained on."""
    fully_unseen = labels.unseen_products if labels.unseen_mode == "all" else []
    val = Photos(v_out.embeddings, v_out.probs, label_indices(calib.loc[v_out.rows], labels)[1])
    if fully_unseen:
        photos = manifest[(manifest["domain"] == "query") & (manifest["split"] == "val")]
        photos = photos[photos["product_id"].isin(fully_unseen)]
        u_out = cascade.infer_frame(photos, labels, io, classify=True, what="held-out products' validation photos")
        held = Photos(u_out.embeddings, u_out.probs, label_indices(photos.loc[u_out.rows], labels)[1])
        val = Photos(*(np.concatenate([a, b]) for a, b in zip(astuple(val), astuple(held), strict=True)))
    return rejection_study(
        cascade,
        cascade.searchable(),
        val,
        Photos(q_out.embeddings, q_out.probs, label_indices(queries, labels)[1]),
        unseen=[labels.products.index(p) for p in fully_unseen],
        holdout_fraction=cfg.rejection.holdout_fraction,
        untrained_in_pool=cfg.rejection.untrained_in_pool,
        seed=cfg.rejection.seed,
        bootstrap={"unit": cfg.bootstrap.unit, "resamples": cfg.bootstrap.resamples, "seed": cfg.bootstrap.seed},
    )
