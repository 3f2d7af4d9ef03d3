"""The train task: one run directory, the cascade's models trained stage by stage into it.

Run directory layout (what evaluate.py and export.py read):
    config.yaml          resolved config of the latest invocation (each stage folder keeps its own)
    labels.json          partitions, products and their categories (from the data, never typed)
    augment_preview.png  what the training pipeline feeds the model
    classifier/          best.ckpt, last.ckpt, model.pt + model.json (weights, label map, temperature,
                         preprocessing contract), metrics.json, confusion_matrix.png
    embedder/            best.ckpt, last.ckpt, model.pt + model.json (weights, embedding size,
                         preprocessing contract), metrics.json
    multitask/           (stages=[multitask]) one trunk with both heads: best.ckpt, last.ckpt, model.pt +
                         model.json (label map, temperature, embedding size, contract), metrics.json,
                         confusion_matrix.png
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import Logger, WandbLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from snapsearch.data.augment import build_augment
from snapsearch.data.datamodule import SnapDataModule
from snapsearch.data.preview import make_preview_grid, save_grid_png
from snapsearch.models.calibration import fit_temperature
from snapsearch.training.category_eval import CategoryEvaluation
from snapsearch.training.classifier_system import ClassifierSystem
from snapsearch.training.distributed import gather_unique
from snapsearch.training.embedder_system import EmbedderSystem
from snapsearch.training.multitask_system import MultiTaskSystem
from snapsearch.training.query_type_stage import train_query_type
from snapsearch.utils.atomic import atomic_save, atomic_write_text, ensure_writable_dir
from snapsearch.utils.layout import LAST_CHECKPOINT, METRICS, STEP_CHECKPOINT, RunDir
from snapsearch.utils.run import instantiate_callbacks, instantiate_loggers, print_config_tree

log = logging.getLogger(__name__)

PREVIEW_IMAGES = 6
PREVIEW_AUGMENTED = 5


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def resolve_ckpt_path(ckpt_path: str | None, stage_dir: Path) -> str | None:
    """``last`` means the stage's newest checkpoint in this run directory: the end-of-epoch ``last.ckpt`` or
    the mid-epoch ``step.ckpt``, whichever was written later."""
    if ckpt_path is None:
        return None
    if ckpt_path == "last":
        written = [p for p in (stage_dir / LAST_CHECKPOINT, stage_dir / STEP_CHECKPOINT) if p.is_file()]
        path = max(written, key=lambda p: p.stat().st_mtime_ns) if written else stage_dir / LAST_CHECKPOINT
    else:
        path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} does not exist; with ckpt_path=last also pass run_dir=<the run to resume>"
        )
    return str(path)


def log_image(loggers: list[Logger], key: str, image: np.ndarray) -> None:
    for lg in loggers:
        if isinstance(lg, WandbLogger):
            lg.log_image(key=key, images=[image])


def _save_figure(fig: plt.Figure, path: Path) -> np.ndarray:
    atomic_save(path, lambda p: fig.savefig(p, format="png", dpi=100, bbox_inches="tight"))
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return image


def _augment_preview(cfg: DictConfig, dm: SnapDataModule, run_dir: Path, loggers: list[Logger]) -> None:
    assert dm.preprocess is not None
    frame = dm.frame("catalog").head(PREVIEW_IMAGES)
    augment = build_augment(
        cfg.augment, dm.preprocess.input_size, dm.preprocess.resize_and_crop(), scenes=dm.scene_photos()
    )
    grid = make_preview_grid(
        frame["path"].tolist(), augment, PREVIEW_AUGMENTED, cfg.seed, max_pixels=cfg.data.max_image_pixels
    )
    save_grid_png(grid, RunDir(run_dir).augment_preview)
    log_image(loggers, "data/augmentations", grid)


def _make_trainer(cfg: DictConfig, stage: str, stage_dir: Path, loggers: list[Logger]) -> pl.Trainer:
    """The configured trainer with this stage's checkpoint folder, monitored metric and epoch budget."""
    monitor = {"monitor": cfg.monitor[stage].metric, "mode": cfg.monitor[stage].mode}
    callbacks = instantiate_callbacks(
        cfg.get("callbacks"),
        model_checkpoint={"dirpath": str(stage_dir), **monitor},
        last_checkpoint={"dirpath": str(stage_dir), "filename": Path(LAST_CHECKPOINT).stem},
        step_checkpoint={"dirpath": str(stage_dir), "filename": Path(STEP_CHECKPOINT).stem},
        early_stopping=monitor,
    )
    if not loggers and any(isinstance(c, LearningRateMonitor) for c in callbacks):
        log.info("logger=none: the learning-rate monitor has nothing to log to and is left out")
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    epochs = cfg.model.get(stage, {}).get("max_epochs")
    overrides = {"max_epochs": epochs} if epochs is not None else {}
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **overrides)


def _checkpointer(trainer: pl.Trainer) -> ModelCheckpoint | None:
    """The checkpoint callback that tracks the monitored best (not the every-epoch ``last`` one)."""
    return next((c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint) and c.monitor), None)


def _restore_best(cfg: DictConfig, stage: str, trainer: pl.Trainer, system: pl.LightningModule) -> dict[str, float]:
    """Load the best checkpoint's weights (``weights_only``: nothing from the file is unpickled) and
    return the monitored metric: its best value, or its last one when nothing was checkpointed
    (fast_dev_run), so that sweepers always get a number."""
    monitored = cfg.monitor[stage].metric
    ckpt = _checkpointer(trainer)
    if ckpt is not None and ckpt.best_model_path:
        state = torch.load(ckpt.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
        system.load_state_dict(state)
        return {monitored: float(ckpt.best_model_score)}
    last = trainer.callback_metrics.get(monitored)
    return {} if last is None else {monitored: float(last)}


def _finish_stage(
    stage: str, trainer: pl.Trainer, stage_dir: Path, loggers: list[Logger], metrics: dict[str, float]
) -> dict[str, float]:
    """Record the stage's metrics and log its best checkpoint to wandb as an artifact."""
    ckpt = _checkpointer(trainer)
    best = (ckpt.best_model_path or None) if ckpt is not None else None
    atomic_write_text(stage_dir / METRICS, json.dumps({"best_checkpoint": best, **metrics}, indent=2))
    for lg in loggers:
        if isinstance(lg, WandbLogger) and best:
            import wandb

            artifact = wandb.Artifact(f"{stage}-{lg.experiment.id}", type="model")
            artifact.add_file(best)
            lg.experiment.log_artifact(artifact)
    return {f"{stage}/{k}": v for k, v in metrics.items()}


def _calibrate_and_test(
    cfg: DictConfig,
    dm: SnapDataModule,
    trainer: pl.Trainer,
    system: CategoryEvaluation,
    stage_dir: Path,
    loggers: list[Logger],
) -> dict[str, float]:
    """Temperature scaling of the category head on the validation photos, then its test metrics and
    confusion matrix (every rank takes part: collectives; files are written by rank 0 alone)."""
    metrics: dict[str, float] = {}
    if cfg.calibrate:
        outputs = trainer.predict(system, dataloaders=dm.val_dataloader())
        rows, logits, labels = (torch.cat([o[k] for o in outputs]).numpy() for k in ("row", "logits", "label"))
        logits, labels = (torch.from_numpy(a) for a in gather_unique(rows, logits, labels))
        system.model.temperature.fill_(fit_temperature(logits, labels))
        log.info("temperature on %d validation photos: T = %.3f", len(labels), float(system.model.temperature))
    if cfg.test:
        tested = trainer.test(system, dataloaders=dm.test_dataloader())
        metrics.update({k: float(v) for k, v in tested[0].items()} if tested else {})
        confusion = system.test_confusion.compute()  # a collective under DDP: every rank computes it
        if trainer.is_global_zero:
            n = len(dm.labels.categories)
            fig, _ = system.test_confusion.plot(val=confusion, labels=dm.labels.categories)
            fig.set_size_inches(max(6, n * 0.3), max(6, n * 0.3))
            log_image(loggers, "test/confusion_matrix", _save_figure(fig, stage_dir / "confusion_matrix.png"))
    return metrics


def train_classifier(cfg: DictConfig, dm: SnapDataModule, run_dir: Path, loggers: list[Logger]) -> dict[str, float]:
    """Stage 1: the in-domain category classifier, calibrated by temperature scaling on validation photos."""
    stage_dir = RunDir(run_dir).stage("classifier")
    system = ClassifierSystem(
        backbone=_plain(cfg.model.backbone),
        categories=dm.labels.categories,
        classifier=_plain(cfg.model.classifier),
        optimizer=_plain(cfg.model.optimizer),
        scheduler=_plain(cfg.model.scheduler),
        channels_last=cfg.model.channels_last,
    )
    dm.attach_preprocess(system.preprocess)
    _augment_preview(cfg, dm, run_dir, loggers)
    trainer = _make_trainer(cfg, "classifier", stage_dir, loggers)
    trainer.fit(system, datamodule=dm, ckpt_path=resolve_ckpt_path(cfg.ckpt_path, stage_dir), weights_only=True)
    metrics = _restore_best(cfg, "classifier", trainer, system)
    metrics |= _calibrate_and_test(cfg, dm, trainer, system, stage_dir, loggers)
    if not trainer.is_global_zero:
        return {}
    metrics["temperature"] = float(system.model.temperature)
    system.model.save(stage_dir, backbone=_plain(cfg.model.backbone), preprocess=system.preprocess)
    return _finish_stage("classifier", trainer, stage_dir, loggers, metrics)


def _fit_on_product_batches(
    cfg: DictConfig, dm: SnapDataModule, trainer: pl.Trainer, system: pl.LightningModule, stage_dir: Path
) -> None:
    """Fit on M-per-product batches, validated by photo -> catalog retrieval (the embedder and multitask
    stages)."""
    emb_cfg = cfg.model.embedder
    trainer.fit(
        system,
        train_dataloaders=dm.embedder_train_dataloader(emb_cfg.m_per_class, emb_cfg.catalog_oversample),
        val_dataloaders=[dm.val_dataloader(), dm.catalog_dataloader()],
        ckpt_path=resolve_ckpt_path(cfg.ckpt_path, stage_dir),
        weights_only=True,
    )


def train_embedder(cfg: DictConfig, dm: SnapDataModule, run_dir: Path, loggers: list[Logger]) -> dict[str, float]:
    """Stage 2: the metric-learning embedder, selected on validation photo -> catalog retrieval."""
    stage_dir = RunDir(run_dir).stage("embedder")
    emb_cfg = _plain(cfg.model.embedder)
    system = EmbedderSystem(
        backbone=_plain(cfg.model.backbone),
        products=dm.labels.products,
        embedder=emb_cfg,
        selection_fold=dm.labels.fold_indices(),
        optimizer=_plain(cfg.model.optimizer),
        scheduler=_plain(cfg.model.scheduler),
        channels_last=cfg.model.channels_last,
    )
    dm.attach_preprocess(system.preprocess)
    trainer = _make_trainer(cfg, "embedder", stage_dir, loggers)
    _fit_on_product_batches(cfg, dm, trainer, system, stage_dir)
    metrics = _restore_best(cfg, "embedder", trainer, system)
    if not trainer.is_global_zero:
        return {}
    system.model.save(
        stage_dir, backbone=_plain(cfg.model.backbone), preprocess=system.preprocess, gem_p=emb_cfg["gem_p"]
    )
    return _finish_stage("embedder", trainer, stage_dir, loggers, metrics)


def train_multitask(cfg: DictConfig, dm: SnapDataModule, run_dir: Path, loggers: list[Logger]) -> dict[str, float]:
    """One trunk, two heads: the gate and the embedder trained together on M-per-product batches, selected on
    validation photos (gate accuracy and photo -> catalog R@1), then calibrated and tested like the gate."""
    stage_dir = RunDir(run_dir).stage("multitask")
    system = MultiTaskSystem(
        backbone=_plain(cfg.model.backbone),
        categories=dm.labels.categories,
        products=dm.labels.products,
        embedder=_plain(cfg.model.embedder),
        selection_fold=dm.labels.fold_indices(),
        photo_less=dm.labels.photo_less_indices(),
        multitask=_plain(cfg.multitask),
        label_smoothing=cfg.model.classifier.label_smoothing,
        optimizer=_plain(cfg.model.optimizer),
        scheduler=_plain(cfg.model.scheduler),
        channels_last=cfg.model.channels_last,
    )
    dm.attach_preprocess(system.preprocess)
    _augment_preview(cfg, dm, run_dir, loggers)
    trainer = _make_trainer(cfg, "multitask", stage_dir, loggers)
    _fit_on_product_batches(cfg, dm, trainer, system, stage_dir)
    metrics = _restore_best(cfg, "multitask", trainer, system)
    metrics |= _calibrate_and_test(cfg, dm, trainer, system, stage_dir, loggers)
    if not trainer.is_global_zero:
        return {}
    metrics["temperature"] = float(system.model.temperature)
    system.model.save(stage_dir, backbone=_plain(cfg.model.backbone), preprocess=system.preprocess)
    return _finish_stage("multitask", trainer, stage_dir, loggers, metrics)


STAGES: dict[str, Callable[[DictConfig, SnapDataModule, Path, list[Logger]], dict[str, float]]] = {
    "classifier": train_classifier,
    "embedder": train_embedder,
    "multitask": train_multitask,
    "query_type": train_query_type,
}


def check_config(cfg: DictConfig) -> None:
    """Refuse config combinations that would fail later, deep inside a library, with the fix in the message."""
    stages = list(cfg.stages)
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        raise ValueError(f"unknown or empty stages {unknown or stages}; choose from {list(STAGES)}")
    if {"embedder", "multitask"} & set(stages) and cfg.model.embedder.m_per_class > cfg.data.batch_size:
        raise ValueError(
            f"model.embedder.m_per_class={cfg.model.embedder.m_per_class} exceeds data.batch_size="
            f"{cfg.data.batch_size}: a batch must hold at least one product's m_per_class samples"
        )
    if cfg.ckpt_path == "last" and not cfg.run_dir:
        raise ValueError("ckpt_path=last resumes a run directory: also pass run_dir=<the run to resume>")


def train(cfg: DictConfig) -> dict[str, float]:
    """Train every requested stage into one self-describing run directory; return the metrics."""
    check_config(cfg)
    run_dir = ensure_writable_dir(Path(cfg.run_dir or cfg.paths.output_dir).resolve(), "run directory")
    print_config_tree(cfg, save_to=RunDir(run_dir).config_tree)
    run = RunDir(run_dir)
    atomic_write_text(run.config, OmegaConf.to_yaml(cfg, resolve=True))
    pl.seed_everything(cfg.seed, workers=True)
    dm = SnapDataModule(cfg.data, cfg.augment, cfg.seed)
    dm.labels.save(run.labels)
    loggers = instantiate_loggers(cfg.get("logger"))
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    metrics: dict[str, float] = {}
    for stage in cfg.stages:
        # the stage keeps the config that trained it; the top-level copy is the latest invocation's
        atomic_write_text(run.stage_config(stage), OmegaConf.to_yaml(cfg, resolve=True))
        try:
            metrics.update(STAGES[stage](cfg, dm, run_dir, loggers))
        except SIGTERMException as err:  # Lightning stops at the end of the batch; say how to go on
            raise SystemExit(
                f"terminated by SIGTERM while training the {stage}; the last checkpoint is {run_dir / stage}/"
                f"last.ckpt: resume with the same command plus run_dir={run_dir} ckpt_path=last"
            ) from err
    if rank_zero_only.rank == 0:
        atomic_write_text(run.metrics, json.dumps(metrics, indent=2))
        log.info("run directory: %s", run_dir)
    return metrics
