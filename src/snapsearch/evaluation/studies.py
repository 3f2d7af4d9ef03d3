"""The optional studies of an evaluation, each switched on in ``conf/evaluate.yaml``: "not in our catalog"
(rejection), camera faults, and a growing pool. Each reuses the queries' model outputs where it can."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from snapsearch.data.dataset import LabelMaps
from snapsearch.evaluation.camera_faults import camera_faults_study
from snapsearch.evaluation.growing_pool import growing_pool_figure, run_growing_pool
from snapsearch.evaluation.rejection import rejection_study
from snapsearch.evaluation.report import save_png
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
    if cfg.rejection.enabled and not calib.empty:
        v_out = cascade.infer_frame(calib, labels, io, classify=True, what="validation photos")
        val = (v_out.embeddings, v_out.probs, label_indices(calib.loc[v_out.rows], labels)[1])
        test = (q_out.embeddings, q_out.probs, label_indices(queries.loc[q_out.rows], labels)[1])
        out["rejection"] = rejection_study(
            cascade,
            cascade.searchable(),
            val,
            test,
            holdout_fraction=cfg.rejection.holdout_fraction,
            seed=cfg.rejection.seed,
        )
    if cfg.camera_faults.enabled:
        faults = cfg.camera_faults
        out["camera_faults"] = camera_faults_study(
            cascade,
            queries.iloc[:: faults.query_stride],
            labels,
            io,
            faults.corruptions,
            strategies=[s for s in faults.strategies if s in cascade.strategies],
            k=faults.k,
            seed=faults.seed,
        )
    if cfg.growing_pool.enabled:
        if cfg.protocol != "catalog":
            raise ValueError("growing_pool.enabled=true grows the catalog protocol's pool: use protocol=catalog")
        out["growing_pool"] = run_growing_pool(cfg.growing_pool, cascade, manifest, pool, labels, io, stream)
        save_png(growing_pool_figure(out["growing_pool"]), Path(cfg.paths.output_dir) / "growing_pool.png")
    return out
