"""``python evaluate.py run_dir=DIR``: embed the pool, build the partitioned index, classify and embed the
queries once, run every configured strategy on the same outputs, time a batch-1 serving path, report."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from snapsearch.catalog.shards import ShardMismatchError, ids_digest, iter_shards, read_plan, read_shard
from snapsearch.data.dataset import LabelMaps
from snapsearch.data.image_io import read_rgb
from snapsearch.data.manifest import category_at
from snapsearch.data.preprocess import Preprocess
from snapsearch.data.sources import load_manifest
from snapsearch.deploy.runtime import BundleRuntime, CascadeRuntime, SharedTrunkRuntime, TorchRuntime
from snapsearch.evaluation.classifier_metrics import classifier_metrics
from snapsearch.evaluation.inference import run_inference
from snapsearch.evaluation.latency import StageTimer
from snapsearch.evaluation.plots import confusion_matrix_figure, examples_figure
from snapsearch.evaluation.report import print_table, save_png, write_reports
from snapsearch.models.embedder import ProductEmbedder
from snapsearch.retrieval import (
    Conformal,
    GlobalSearch,
    Oracle,
    PartitionedIndex,
    average_improvement,
    em_prior_correction,
    relative_change,
    retrieval_metrics,
    routing_decomposition,
    run_strategy,
)

log = logging.getLogger(__name__)

PROTOCOLS = ("catalog", "extended_catalog")


def resolve_source(cfg: DictConfig) -> tuple[Path, DictConfig]:
    """The evaluated folder (run directory or bundle) and the training config it carries."""
    if (cfg.run_dir is None) == (cfg.bundle is None):
        raise ValueError("pass exactly one of run_dir=<train run directory> or bundle=<export bundle>")
    source = Path(cfg.bundle or cfg.run_dir).resolve()
    config = source / ("source_config.yaml" if cfg.bundle else "config.yaml")
    if not (source / "labels.json").is_file() or not config.is_file():
        kind = "an export bundle" if cfg.bundle else "a train run directory"
        raise FileNotFoundError(f"{source} is not {kind} (no labels.json / {config.name})")
    return source, OmegaConf.load(config)


def select_embedder(cfg: DictConfig, run_dir: Path) -> tuple[ProductEmbedder, Preprocess]:
    """The eager embedder ``embedder=`` names: the run's fine-tuned one, or the generic ImageNet trunk."""
    if cfg.embedder == "generic":
        g = cfg.generic_embedder
        return ProductEmbedder.build(OmegaConf.to_container(g.backbone), g.embedding_dim, g.gem_p)
    if cfg.embedder != "trained":
        raise ValueError(f"embedder={cfg.embedder!r}: use trained (the run's embedder), generic or shared")
    return ProductEmbedder.load(run_dir / "embedder")


def build_runtime(cfg: DictConfig, source: Path) -> CascadeRuntime:
    if cfg.bundle is not None:
        if cfg.embedder != "trained":
            raise ValueError("a bundle carries its own embedder; embedder=generic needs run_dir=")
        return BundleRuntime(source, cfg.runtime)
    if cfg.runtime != "torch":
        raise ValueError(f"runtime={cfg.runtime!r} runs an export bundle: pass bundle=DIR (python export.py makes one)")
    if cfg.embedder == "shared":
        return SharedTrunkRuntime.from_run_dir(source, device=cfg.device)
    embedder, pre = select_embedder(cfg, source)
    return TorchRuntime.from_run_dir(source, embedder=embedder, embedder_preprocess=pre, device=cfg.device)


FRAME_NAMES = ("test queries", "pool images", "calibration photos")


def _frames(manifest: pd.DataFrame, protocol: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(queries, pool, calibration photos) of a protocol (DESIGN.md §3)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol={protocol!r}; use one of {PROTOCOLS}")
    query = manifest["domain"] == "query"
    pool = manifest["domain"] == "catalog"
    if protocol == "extended_catalog":
        pool |= query & (manifest["split"] == "train")
    return (
        manifest[query & (manifest["split"] == "test")],
        manifest[pool],
        manifest[query & (manifest["split"] == "val")],
    )


def _known(frame: pd.DataFrame, labels: LabelMaps, what: str) -> pd.DataFrame:
    """Rows whose category and product the trained models know; the rest are dropped, counted and logged
    (a manifest evaluated against a run trained on another one)."""
    known = category_at(frame["category"], labels.partition_depth).isin(labels.categories) & frame["product_id"].isin(
        labels.products
    )
    if not known.all():
        log.warning(
            "dropping %d of %d %s: category or product unknown to the trained models (e.g. %s)",
            int((~known).sum()),
            len(frame),
            what,
            frame.loc[~known, "path"].iloc[0],
        )
    return frame[known]


def answerable(manifest: pd.DataFrame, protocol: str, labels: LabelMaps) -> tuple[pd.DataFrame, ...]:
    """(queries, pool, calibration photos) restricted to what can be scored: known labels, and queries
    whose product has an image in the pool (a product without one can never be found: counted, logged)."""
    queries, pool, calib = (_known(f, labels, w) for f, w in zip(_frames(manifest, protocol), FRAME_NAMES, strict=True))
    in_pool = queries["product_id"].isin(pool["product_id"])
    if not in_pool.all():
        log.warning(
            "dropping %d of %d test queries: their product has no image in the search pool (e.g. %s)",
            int((~in_pool).sum()),
            len(queries),
            queries.loc[~in_pool, "path"].iloc[0],
        )
    return queries[in_pool], pool, calib


def _indices(frame: pd.DataFrame, rows: np.ndarray, labels: LabelMaps) -> tuple[np.ndarray, np.ndarray]:
    """Partition and product indices of the given manifest rows."""
    sub = frame.loc[rows]
    cats = {c: i for i, c in enumerate(labels.categories)}
    prods = {p: i for i, p in enumerate(labels.products)}
    return (
        category_at(sub["category"], labels.partition_depth).map(cats).to_numpy(),
        sub["product_id"].map(prods).to_numpy(),
    )


def catalog_index(
    index_cfg: DictConfig,
    runtime: CascadeRuntime,
    pool: pd.DataFrame,
    manifest: pd.DataFrame,
    labels: LabelMaps,
    io: dict[str, Any],
) -> tuple[PartitionedIndex, int]:
    """Embed the pool and build its partitioned index (tagged with the embedder's fingerprint);
    also returns how many pool images were unreadable and skipped."""
    log.info("embedding %d pool images", len(pool))
    out = run_inference(runtime, pool, labels, classify=False, **io)
    return _index_items(index_cfg, runtime, lambda: [out.embeddings], out.rows, manifest, labels), out.skipped


def shards_index(
    index_cfg: DictConfig,
    runtime: CascadeRuntime,
    pool: pd.DataFrame,
    manifest: pd.DataFrame,
    labels: LabelMaps,
    folder: Path,
) -> tuple[PartitionedIndex, int]:
    """The pool's index built from ``python embed.py`` shards, read one shard at a time; refused when the
    shards are of another pool (order included) or another embedder than the runtime's."""
    plan = read_plan(folder)
    if plan.embedder_fingerprint != runtime.embedder_fingerprint:
        raise ShardMismatchError(f"{folder} was embedded by another embedder than embedder={runtime.name}'s")
    if plan.ids_sha256 != ids_digest(pool["image_id"].tolist()):
        raise ShardMismatchError(f"{folder} holds another pool than protocol's {len(pool)} images (or another order)")
    positions, skipped = [], 0
    for shard in range(plan.n_shards):
        s = read_shard(folder, shard, embeddings=False)
        positions.append(s.positions)
        skipped += s.n_skipped
    rows = pool.index.to_numpy()[np.concatenate(positions)]
    log.info("index from %d shards of %s (%d images, %d skipped)", plan.n_shards, folder, len(rows), skipped)
    chunks = lambda: (s.embeddings for s in iter_shards(folder, plan))  # noqa: E731
    return _index_items(index_cfg, runtime, chunks, rows, manifest, labels), skipped


def _index_items(
    index_cfg: DictConfig,
    runtime: CascadeRuntime,
    chunks: Callable[[], Iterable[np.ndarray]],
    rows: np.ndarray,
    manifest: pd.DataFrame,
    labels: LabelMaps,
) -> PartitionedIndex:
    """Index embeddings of manifest ``rows`` (in that order, as ``chunks`` yields them)."""
    item_part, item_prod = _indices(manifest, rows, labels)
    return PartitionedIndex.build_streaming(
        chunks,
        item_partition=item_part,
        item_product=item_prod,
        n_partitions=len(labels.categories),
        factory=index_cfg.factory,
        metric=index_cfg.metric,
        nprobe=index_cfg.nprobe,
        ef_search=index_cfg.ef_search,
        embedder_checksum=runtime.embedder_fingerprint,
        metadata={"image_id": manifest.loc[rows, "image_id"].to_numpy().astype(str)},
    )


def query_stream(true_partition: np.ndarray, n_categories: int, alpha: float | None, seed: int) -> np.ndarray:
    """Indices of the query stream: the test photos as they are, or (``alpha`` set) resampled with
    replacement to a category mix drawn from Dirichlet(alpha): a shop whose users photograph other things
    than the training data shows, for measuring prior correction."""
    if alpha is None:
        return np.arange(len(true_partition))
    rng = np.random.default_rng(seed)
    present = np.unique(true_partition)
    mix = np.zeros(n_categories)
    mix[present] = rng.dirichlet(np.full(len(present), float(alpha)))
    weights = mix[true_partition] / np.bincount(true_partition, minlength=n_categories)[true_partition]
    return rng.choice(len(true_partition), size=len(true_partition), replace=True, p=weights / weights.sum())


def _latency(
    cfg: DictConfig,
    runtime: CascadeRuntime,
    index: PartitionedIndex,
    strategies: dict[str, Any],
    paths: list[str],
    max_pixels: int,
) -> dict[str, Any]:
    """Batch-1 serving path per query: decode+preprocess, classify, embed, search (per strategy)."""
    timer = StageTimer()
    n = min(cfg.latency.n_queries, len(paths))
    pre_c, pre_e = runtime.classifier_preprocess.eval_transform(), runtime.embedder_preprocess.eval_transform()
    shared = runtime.classifier_preprocess == runtime.embedder_preprocess
    for i in range(-cfg.latency.warmup, n):
        path = paths[max(i, 0)]
        t0 = time.perf_counter()
        image = read_rgb(path, max_pixels=max_pixels)
        xe = pre_e(image=image)["image"].numpy()[None]
        xc = xe if shared else pre_c(image=image)["image"].numpy()[None]
        t1 = time.perf_counter()
        if isinstance(runtime, SharedTrunkRuntime):
            # one joint pass; the classify stage is what it costs beyond the embedding alone
            probs, emb = runtime.classify_and_embed(xe)
            t2 = time.perf_counter()
            runtime.embed(xe)
            embed_s = time.perf_counter() - t2
            classify_s = max(0.0, (t2 - t1) - embed_s)
        else:
            probs = runtime.classify(xc)
            t2 = time.perf_counter()
            emb = runtime.embed(xe)
            classify_s, embed_s = t2 - t1, time.perf_counter() - t2
        search = {}
        for name, strategy in strategies.items():
            s0 = time.perf_counter()
            run_strategy(
                strategy, index, emb, probs, cfg.k, true_partition=np.zeros(1, dtype=int), overfetch=cfg.overfetch
            )
            search[name] = time.perf_counter() - s0
        if i < 0:
            continue
        timer.add("preprocess", t1 - t0)
        timer.add("classify", classify_s)
        timer.add("embed", embed_s)
        for name, sec in search.items():
            timer.add(f"search/{name}", sec)
    stages = timer.summary()
    base = stages["preprocess"]["p50_ms"] + stages["embed"]["p50_ms"]
    global_ms = base + stages[f"search/{cfg.cascade.baseline}"]["p50_ms"]
    cascade_name = "top1" if "search/top1" in stages else next(iter(strategies))
    cascade_ms = base + stages["classify"]["p50_ms"] + stages[f"search/{cascade_name}"]["p50_ms"]
    return {
        "n_queries": n,
        "device": cfg.device,
        "stages": stages,
        "global_total_p50_ms": global_ms,
        "cascade_total_p50_ms": cascade_ms,
        "overhead_pct": 100.0 * (cascade_ms - global_ms) / global_ms,
    }


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    source, train_cfg = resolve_source(cfg)
    data_cfg = cfg.data if cfg.data is not None else train_cfg.data
    labels = LabelMaps.load(source / "labels.json")
    manifest = load_manifest(data_cfg)
    queries, pool, calib = answerable(manifest, cfg.protocol, labels)
    if queries.empty:
        raise ValueError(f"no test query of the manifest can be scored under protocol={cfg.protocol}; see the log")
    runtime = build_runtime(cfg, source)
    io = {
        "batch_size": cfg.batch_size,
        "workers": cfg.num_workers,
        "max_pixels": data_cfg.max_image_pixels,
        "draft": data_cfg.draft_decode,
    }

    out_dir = Path(cfg.paths.output_dir)
    index_dir = Path(cfg.index_path) if cfg.index_path else None
    if index_dir is None and cfg.bundle is not None and (source / "index").is_dir():
        index_dir = source / "index"  # the bundle ships the catalog's index
    if index_dir is not None:
        index = PartitionedIndex.load(
            index_dir, expected_embedder_checksum=runtime.embedder_fingerprint, expected_dim=runtime.embedding_dim
        )
        if index.n_items != len(pool):
            raise ValueError(
                f"index at {index_dir} holds {index.n_items} items, protocol {cfg.protocol!r} has "
                f"{len(pool)} pool images; drop index_path to build the index for this pool"
            )
        pool_skipped = 0
    else:
        if cfg.catalog_shards is not None:
            shards = Path(cfg.catalog_shards)
            index, pool_skipped = shards_index(cfg.index, runtime, pool, manifest, labels, shards)
        else:
            index, pool_skipped = catalog_index(cfg.index, runtime, pool, manifest, labels, io)
        if cfg.save_index:
            index.save(out_dir / "index")
    log.info("classifying + embedding %d queries", len(queries))
    q_out = run_inference(runtime, queries, labels, classify=True, **io)
    q_part, q_prod = _indices(manifest, q_out.rows, labels)
    item_prod = index.item_product
    probs = q_out.probs
    assert probs is not None
    stream = query_stream(q_part, len(labels.categories), cfg.stream.resample_alpha, cfg.stream.seed)
    q_emb, probs, q_part, q_prod, q_rows = (
        q_out.embeddings[stream],
        probs[stream],
        q_part[stream],
        q_prod[stream],
        q_out.rows[stream],
    )

    strategies = {name: instantiate(c) for name, c in cfg.cascade.strategies.items()}
    for strategy in strategies.values():
        if isinstance(strategy, Conformal):
            c_out = run_inference(runtime, calib, labels, classify=True, **io)
            strategy.fit(c_out.probs, _indices(manifest, c_out.rows, labels)[0])
    runs = {name: (strategy, probs) for name, strategy in strategies.items()}
    if cfg.prior_correction:
        # EM re-estimates the stream's category mix; every gate that reads probabilities runs again on it.
        train_rows = manifest.index[manifest["split"] == "train"].to_numpy()
        counts = np.bincount(_indices(manifest, train_rows, labels)[0], minlength=len(labels.categories))
        probs_em, _ = em_prior_correction(probs, counts / counts.sum())
        runs |= {
            f"{name}+em": (strategy, probs_em)
            for name, strategy in strategies.items()
            if not isinstance(strategy, GlobalSearch | Oracle)
        }

    results: dict[str, Any] = {"strategies": {}}
    ranked_by: dict[str, list[list[int]]] = {}
    for name, (strategy, gate) in runs.items():
        t0 = time.perf_counter()
        ranked, routed = run_strategy(
            strategy, index, q_emb, gate, cfg.k, true_partition=q_part, overfetch=cfg.overfetch
        )
        search_ms = 1e3 * (time.perf_counter() - t0) / len(q_prod)
        ranked_by[name] = ranked
        metrics = retrieval_metrics(ranked, q_prod.tolist(), ks=tuple(cfg.ks), map_k=cfg.k)
        found = np.array([q in r[: cfg.ks[0]] for q, r in zip(q_prod, ranked, strict=True)])
        routed_right, found_within = routing_decomposition(routed, q_part, found)
        n_parts = [len(labels.categories) if r is None else len(r) for r in routed]
        results["strategies"][name] = {
            "metrics": metrics,
            "routed_right": routed_right,
            "found_within": found_within,
            "mean_partitions": float(np.mean(n_parts)),
            "search_ms_p50": search_ms,
        }
    base = results["strategies"][cfg.cascade.baseline]["metrics"]
    for s in results["strategies"].values():
        s["relative"] = relative_change(s["metrics"], base)
        s["average_improvement"] = average_improvement(s["metrics"], base, keys=tuple(cfg.improvement_metrics))

    per_category: dict[str, dict[str, float]] = {}
    for c, cat in enumerate(labels.categories):
        mask = q_part == c
        if mask.any():
            per_category[cat] = {"n": int(mask.sum())} | {
                name: float(np.mean([q_prod[i] in ranked_by[name][i][:1] for i in np.flatnonzero(mask)]))
                for name in runs
            }
    results.update(
        protocol=cfg.protocol,
        source=str(source),
        embedder=cfg.embedder,
        runtime=runtime.name,
        index=OmegaConf.to_container(cfg.index),
        baseline=cfg.cascade.baseline,
        improvement_metrics=list(cfg.improvement_metrics),
        n_queries=len(q_prod),
        n_pool=index.n_items,
        n_products=len(set(item_prod.tolist())),
        n_partitions=len(labels.categories),
        skipped_images=pool_skipped + q_out.skipped,
        classifier=classifier_metrics(probs, q_part),
        per_category=per_category,
        latency=_latency(
            cfg, runtime, index, strategies, queries.loc[q_out.rows, "path"].tolist(), data_cfg.max_image_pixels
        ),
    )
    write_reports(results, out_dir)
    save_png(confusion_matrix_figure(probs, q_part, labels.categories), out_dir / "confusion_matrix.png")
    rng = np.random.default_rng(cfg.seed)
    picks = rng.choice(len(q_prod), size=min(cfg.report.n_examples, len(q_prod)), replace=False)
    shown = cfg.report.strategy
    catalog = pool[pool["domain"] == "catalog"].drop_duplicates("product_id")
    prod_index = {p: i for i, p in enumerate(labels.products)}
    product_image = {prod_index[p]: path for p, path in zip(catalog["product_id"], catalog["path"], strict=True)}
    save_png(
        examples_figure(
            queries.loc[q_rows[picks], "path"].tolist(),
            q_prod[picks].tolist(),
            [ranked_by[shown][i] for i in picks],
            product_image,
            labels.products,
            cfg.report.top,
        ),
        out_dir / "examples.png",
    )
    print_table(results)
    return results
