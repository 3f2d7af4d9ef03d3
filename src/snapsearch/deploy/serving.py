"""What export calibrates for the service, so that ``search.py`` answers in about a second and ``serve.py``
starts without the dataset: the default strategy (the best R@1 on the run's validation photos, scored with
the exported models; never a test photo), the conformal thresholds (fitted on those photos in the same pass)
and the rejection thresholds of the run's latest evaluation (when it ran the rejection study)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from snapsearch.data.dataset import LabelMaps
from snapsearch.deploy.export import INT8
from snapsearch.models.artifact import META_FILE
from snapsearch.retrieval import Conformal
from snapsearch.runtime.batch import BatchIO
from snapsearch.search.calibration import CHOSEN_BY, calibrate_and_score, choose_default, conformal_record, unfitted
from snapsearch.search.cascade import Cascade
from snapsearch.search.catalog_index import IndexSpec
from snapsearch.search.hubness import HubnessOptions
from snapsearch.search.novelty import NoveltyOptions, applied_slope
from snapsearch.search.sources import calibration_photos
from snapsearch.utils.layout import RunDir

log = logging.getLogger(__name__)


def evaluated_rejection(run: RunDir, strategies: list[str]) -> tuple[dict[str, float], str | None]:
    """The rejection thresholds of the run's newest photo -> catalog evaluation of its trained models that
    ran the rejection study (chosen there on validation photos), and that evaluation's folder; none when no
    such evaluation is newer than the models."""
    models_written = max((run.stage(s) / META_FILE).stat().st_mtime for s in run.cascade_stages())
    reports = sorted(run.evaluations.glob("*/report.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in reports:
        if path.stat().st_mtime < models_written:
            break  # older than the models: another training's thresholds
        report = json.loads(path.read_text())
        if report.get("protocol") != "catalog" or report.get("embedder") != "trained":
            continue
        found = ((report.get("rejection") or {}).get("strategies")) or {}
        thresholds = {n: float(v["threshold"]) for n, v in found.items() if n in strategies and "threshold" in v}
        if thresholds:
            return thresholds, str(path.parent)
    return {}, None


def _recalls(scores: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    return {m: {n: s[m] for n, s in scores.items()} for m in ("R@1", "R@5")}


def serving_calibration(
    cfg: DictConfig, run: RunDir, manifest: pd.DataFrame, labels: LabelMaps, max_pixels: int, draft: bool
) -> Callable[[Path], dict[str, Any]]:
    """The bundle's serving record, computed on the complete, unpublished bundle (``export_bundle``'s
    ``serving``): ``default_strategy``, ``validation`` (each strategy's R@1/R@5 on the validation photos)
    and ``calibration`` (conformal thresholds, rejection thresholds and where they came from)."""

    def calibrate(folder: Path) -> dict[str, Any]:
        strategies = {n: instantiate(c) for n, c in cfg.cascade.strategies.items() if c is not None}
        pending: dict[str, Conformal] = {n: strategies.pop(n) for n in unfitted(strategies)}
        runtime = str(cfg.formats[0])

        def open_cascade(runtime: str) -> Cascade:
            return Cascade.from_bundle(
                folder,
                runtime=runtime,
                index=IndexSpec.from_config(OmegaConf.to_container(cfg.index)),
                strategies=strategies,
                default_strategy=next(iter(strategies)),
                rejection={},
                query_types=False,
                hubness=HubnessOptions.from_config(cfg.get("hubness")),
                novelty=NoveltyOptions.from_config(cfg.get("novelty")),
                batch_size=cfg.batch_size,
                num_workers=cfg.num_workers,
            )

        cascade = open_cascade(runtime)
        io = BatchIO(cfg.batch_size, cfg.num_workers, max_pixels, draft)
        rejection, rejection_from = evaluated_rejection(run, [*strategies, *pending])
        photos = calibration_photos(manifest, labels)
        if photos.empty:
            log.warning("no validation photos: the bundle records no default strategy and no conformal threshold")
            fitted: dict[str, Conformal] = {}
            scores: dict[str, dict[str, float]] = {}
            default, n_photos = None, 0
        else:
            fitted, scores, n_photos = calibrate_and_score(cascade, pending, photos, labels, io)
            default = choose_default(scores)
            log.info("default strategy %r (%s): %s", default, CHOSEN_BY, scores)
        validation = {
            "chosen_by": CHOSEN_BY,
            "split": "val",
            "runtime": runtime,
            "n_photos": n_photos,
            "n_catalog_images": cascade.index.n_items,
            **_recalls(scores),
        }
        if cfg.quantize_int8 and n_photos:
            # what the int8 models cost on the same photos (same thresholds): a shop chooses runtime=onnx_int8
            # for throughput knowing this, before any test photo is read
            strategies.update(fitted)
            _, int8_scores, _ = calibrate_and_score(open_cascade(INT8), {}, photos, labels, io)
            validation[INT8] = _recalls(int8_scores)
            log.info("%s on the validation photos: %s", INT8, int8_scores)
        return {
            "default_strategy": default,
            "validation": validation,
            "calibration": {
                "conformal": conformal_record(fitted),
                "rejection": rejection,
                "rejection_from": rejection_from,
                "novelty_temperature_slope": applied_slope(cascade.runtime),
            },
        }

    return calibrate
