"""``python evaluate.py run_dir=DIR``: open the Cascade on the protocol's pool, classify and embed the queries
once, rank them through the Cascade for every configured strategy, time the serving path, report."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from snapsearch.data.dataset import LabelMaps
from snapsearch.data.protocols import answerable, query_stream
from snapsearch.data.sources import load_manifest
from snapsearch.evaluation.camera_faults import fault_photos
from snapsearch.evaluation.comparison import compare, selection_rules
from snapsearch.evaluation.latency import serving_latency
from snapsearch.evaluation.plots import confusion_matrix_figure, examples_figure
from snapsearch.evaluation.report import print_table, save_png, write_rankings, write_reports
from snapsearch.evaluation.scoring import (
    novelty_breakdown,
    partition_size_breakdown,
    recall1_per_category,
    score_strategies,
)
from snapsearch.evaluation.studies import run_studies
from snapsearch.evaluation.uncertainty import describe as describe_bootstrap
from snapsearch.models.classifier_metrics import classifier_metrics
from snapsearch.retrieval import GlobalSearch, Oracle, em_prior_correction
from snapsearch.runtime.batch import BatchIO
from snapsearch.runtime.bundle import read_bundle
from snapsearch.search.calibration import CHOSEN_BY, calibrate_and_score, choose_default
from snapsearch.search.cascade import Cascade
from snapsearch.search.catalog_index import label_indices
from snapsearch.search.config import open_cascade as open_cascade_from_config
from snapsearch.search.hubness import hubness_info
from snapsearch.search.novelty import novelty_info
from snapsearch.utils.layout import LABELS, MULTITASK_STAGES, BundleDir, RunDir, resolve_source

log = logging.getLogger(__name__)


def open_cascade(cfg: DictConfig, source: Path, data_cfg: DictConfig, pool, out_dir: Path) -> Cascade:
    """The Cascade under evaluation, on the protocol's pool, with the configured strategies."""
    if cfg.runtime != "torch" and cfg.bundle is None:
        raise ValueError(f"runtime={cfg.runtime!r} runs an export bundle: pass bundle=DIR (python export.py makes one)")
    if cfg.bundle is not None and cfg.embedder != "trained":
        raise ValueError("a bundle carries its own embedder; embedder=generic|shared|multitask needs run_dir=")
    options: dict[str, Any] = {
        "data": data_cfg,
        "pool": pool,
        "shards": cfg.catalog_shards,
        "default_strategy": cfg.cascade.baseline,
        "overfetch": cfg.overfetch,
        "k_max": cfg.k,
        "rejection": {},  # the rejection study chooses its own thresholds
    }
    if cfg.bundle is not None:
        shipped = cfg.index_path is None and cfg.catalog_shards is None and BundleDir(source).index.is_dir()
        if shipped and cfg.protocol == "catalog":
            options["pool"] = None  # the bundle ships the catalog's index
    cascade = open_cascade_from_config(cfg, **options)
    if cfg.save_index and cfg.index_path is None and cascade.index.persistent:
        cascade.index.save(out_dir / "index")  # a Qdrant index saves a pointer to its collection
    return cascade


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    source, train_cfg = resolve_source(cfg.run_dir, cfg.bundle)
    data_cfg = cfg.data if cfg.data is not None else train_cfg.data
    labels = LabelMaps.load(source / LABELS)
    manifest = load_manifest(data_cfg)
    queries, pool, calib = answerable(manifest, cfg.protocol, labels)
    if queries.empty:
        raise ValueError(f"no test query of the manifest can be scored under protocol={cfg.protocol}; see the log")
    if cfg.camera_faults.enabled:
        fault_photos(cfg.camera_faults.photos, queries, calib)  # a bad choice fails before the long passes
    out_dir = Path(cfg.paths.output_dir)
    cascade = open_cascade(cfg, source, data_cfg, pool, out_dir)
    io = BatchIO(cfg.batch_size, cfg.num_workers, int(data_cfg.max_image_pixels), bool(data_cfg.draft_decode))

    typed = cfg.query_types.enabled and cascade.query_types is not None  # the type study reads gate features
    q_out = cascade.infer_frame(queries, labels, io, classify=True, what="test queries", features=typed)
    q_part, q_prod = label_indices(queries.loc[q_out.rows], labels)
    assert q_out.probs is not None
    stream = query_stream(q_part, len(labels.categories), cfg.stream.resample_alpha, cfg.stream.seed)
    q_emb, probs, q_part, q_prod, q_rows = (
        x[stream] for x in (q_out.embeddings, q_out.probs, q_part, q_prod, q_out.rows)
    )

    runs = {name: (name, probs) for name in cascade.strategies}
    if cfg.prior_correction:
        # EM re-estimates the stream's category mix; every gate that reads probabilities runs again on it.
        train_part = label_indices(manifest[manifest["split"] == "train"], labels)[0]
        counts = np.bincount(train_part, minlength=len(labels.categories))
        probs_em, _ = em_prior_correction(probs, counts / counts.sum())
        runs |= {
            f"{name}+em": (name, probs_em)
            for name, strategy in cascade.strategies.items()
            if not isinstance(strategy, GlobalSearch | Oracle)
        }
    scores, ranked_by, per_query = score_strategies(
        cascade,
        runs,
        q_emb,
        q_part,
        q_prod,
        k=cfg.k,
        ks=cfg.ks,
        mrr_depth=cfg.mrr_depth or int(np.unique(cascade.index.item_product).size),
        baseline=cfg.cascade.baseline,
        improvement_metrics=cfg.improvement_metrics,
        bootstrap_resamples=cfg.bootstrap.resamples,
        bootstrap_unit=cfg.bootstrap.unit,
        seed=cfg.bootstrap.seed,
    )
    paths = queries.loc[q_out.rows, "path"].tolist()
    searchable = cascade.searchable()
    subset_scoring = {
        "baseline": cfg.cascade.baseline,
        "improvement_metrics": cfg.improvement_metrics,
        "bootstrap_resamples": cfg.bootstrap.resamples,
        "bootstrap_unit": cfg.bootstrap.unit,
        "seed": cfg.bootstrap.seed,
    }
    results: dict[str, Any] = {
        "strategies": scores,
        "protocol": cfg.protocol,
        "source": str(source),
        "embedder": cfg.embedder,
        "runtime": cascade.runtime.name,
        "index": OmegaConf.to_container(cfg.index),
        "hubness": hubness_info(cascade.hubness, cascade.hub_reference),
        "prototype_shift": None if cascade.prototype_shift is None else cascade.prototype_shift.info(),
        "novelty": novelty_info(cascade.novelty, cascade.runtime),
        "baseline": cfg.cascade.baseline,
        "improvement_metrics": list(cfg.improvement_metrics),
        "bootstrap": describe_bootstrap(cfg.bootstrap.unit, cfg.bootstrap.resamples, q_prod),
        "n_queries": len(q_prod),
        "n_pool": cascade.index.n_items,
        "n_products": len(set(cascade.index.item_product.tolist())),
        "n_partitions": len(labels.categories),
        "skipped_images": cascade.pool_skipped + q_out.skipped,
        "classifier": classifier_metrics(probs, q_part),
        "per_category": recall1_per_category(labels.categories, q_part, q_prod, ranked_by),
        "by_partition_size": partition_size_breakdown(
            cascade.index.item_partition, cascade.index.item_product, q_part, q_prod, per_query, **subset_scoring
        ),
        "latency": serving_latency(
            cascade,
            paths,
            k=cfg.k,
            n_queries=cfg.latency.n_queries,
            warmup=cfg.latency.warmup,
            baseline=cfg.cascade.baseline,
            cascade_name="top1" if "top1" in searchable else searchable[0],
        ),
    }
    if labels.unseen_products:  # the unseen-products protocol: seen and unseen scored apart
        unseen = [labels.products.index(p) for p in labels.unseen_products]
        results["unseen_mode"] = labels.unseen_mode
        results["by_novelty"] = novelty_breakdown(
            q_prod, unseen, per_query, probs=probs, true_partition=q_part, **subset_scoring
        )
    if not calib.empty:  # what export.py would make this source's default: the best R@1 on validation photos
        results["validation_choice"] = validation_choice(cascade, calib, labels, io)
    results |= run_studies(
        cfg, cascade, manifest, labels, io, (queries, pool, calib), q_out, (q_emb, probs, q_part, q_prod)
    )
    results["selection"] = selection_rules(train_cfg, _trained_stages(cfg, source))
    if cfg.compare_with:
        results["compared"] = compare(results, cfg.compare_with)
    write_reports(results, out_dir)
    write_rankings(out_dir, queries.loc[q_rows, "image_id"].tolist(), ranked_by, cascade.products)
    _figures(cfg, out_dir, cascade, queries.loc[q_rows, "path"].tolist(), probs, q_part, q_prod, ranked_by)
    print_table(results)
    return results


def validation_choice(cascade: Cascade, photos, labels: LabelMaps, io: BatchIO) -> dict[str, Any]:
    """Every searchable strategy's R@1/R@5 on the validation photos and the one with the best R@1 (never a
    test result): the default a bundle of this source serves."""
    _, scores, n_photos = calibrate_and_score(cascade, {}, photos, labels, io)
    return {
        "default_strategy": choose_default(scores),
        "chosen_by": CHOSEN_BY,
        "n_photos": n_photos,
        "R@1": {n: s["R@1"] for n, s in scores.items()},
        "R@5": {n: s["R@5"] for n, s in scores.items()},
    }


def _trained_stages(cfg: DictConfig, source: Path) -> tuple[str, ...]:
    """The trained models behind the evaluated cascade (a generic embedder is not trained)."""
    if cfg.bundle is not None:
        return tuple(read_bundle(source, verify=False)["models"])
    if cfg.embedder in ("shared", "generic"):
        return ("classifier",)
    return MULTITASK_STAGES if cfg.embedder == "multitask" else RunDir(source).cascade_stages()


def _figures(cfg, out_dir, cascade: Cascade, paths, probs, q_part, q_prod, ranked_by) -> None:
    """The confusion matrix and a grid of example queries with the reported strategy's results."""
    save_png(confusion_matrix_figure(probs, q_part, cascade.products.categories), out_dir / "confusion_matrix.png")
    rng = np.random.default_rng(cfg.seed)
    picks = rng.choice(len(q_prod), size=min(cfg.report.n_examples, len(q_prod)), replace=False)
    table = cascade.products
    product_image = {i: table[i].image_path for i in range(len(table)) if table[i].image_path}
    save_png(
        examples_figure(
            [paths[i] for i in picks],
            q_prod[picks].tolist(),
            [ranked_by[cfg.report.strategy][i] for i in picks],
            product_image,
            [table[i].product_id for i in range(len(table))],
            cfg.report.top,
        ),
        out_dir / "examples.png",
    )
