"""The real entry point, run as a user runs it: fast_dev_run, a full smoke run, sweeps, wandb offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from snapsearch.models.classifier import CategoryClassifier
from snapsearch.models.embedder import ProductEmbedder

from .conftest import ROOT, TIMEOUT_S, run_train


def test_fast_dev_run_both_stages(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_train(tmp_path, "experiment=smoke", "debug=fdr", f"run_dir={run_dir}")
    assert (run_dir / "classifier" / "model.json").is_file()
    assert (run_dir / "embedder" / "model.json").is_file()
    assert json.loads((run_dir / "labels.json").read_text())["partition_depth"] == 2


def test_smoke_run_directory_is_self_describing(smoke_run: Path) -> None:
    for name in ("config.yaml", "labels.json", "augment_preview.png", "metrics.json", "config_tree.log"):
        assert (smoke_run / name).is_file(), name
    for stage in ("classifier", "embedder"):
        for name in ("best.ckpt", "last.ckpt", "model.pt", "model.json", "metrics.json"):
            assert (smoke_run / stage / name).is_file(), f"{stage}/{name}"
    assert (smoke_run / "classifier" / "confusion_matrix.png").is_file()
    # a run is one folder: Hydra's record and the log land beside the models, not under logs/
    assert (smoke_run / ".hydra" / "config.yaml").is_file() and (smoke_run / "train.log").is_file()
    # no terminal here, so training progress is log lines (Rich's bar would print nothing to the file)
    assert "epoch 0: batch" in (smoke_run / "train.log").read_text()


def test_smoke_models_reload_without_lightning(smoke_run: Path) -> None:
    classifier, pre = CategoryClassifier.load(smoke_run / "classifier")
    x = torch.randn(2, 3, pre.input_size, pre.input_size)
    probs = classifier.probabilities(x)
    assert torch.allclose(probs.sum(-1), torch.ones(2), atol=1e-5)
    assert float(classifier.temperature) > 0
    embedder, _ = ProductEmbedder.load(smoke_run / "embedder")
    emb = embedder(x)
    assert emb.shape == (2, 64) and torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-4)


def test_smoke_metrics_are_real(smoke_run: Path) -> None:
    metrics = json.loads((smoke_run / "metrics.json").read_text())
    for key in (
        "classifier/test/acc",
        "classifier/test/ece",
        "classifier/test/ece_uncalibrated",
        "classifier/temperature",
        "embedder/val/R@1",
    ):
        assert key in metrics, key
    n_categories = len(json.loads((smoke_run / "labels.json").read_text())["categories"])
    assert 0.0 <= metrics["classifier/test/acc"] <= 1.0
    assert metrics["classifier/test/acc"] > 1.0 / n_categories  # learnt something after 2 epochs


def test_wandb_offline_run_directory(smoke_run: Path) -> None:
    runs = list(smoke_run.rglob("offline-run-*"))  # inside the run directory
    assert runs, "wandb wrote no offline run"
    assert any(p.suffix == ".wandb" for r in runs for p in r.iterdir())


def test_resume_from_last_checkpoint(smoke_run: Path, tmp_path: Path) -> None:
    """ckpt_path=last continues the run's own classifier on top of the saved epochs."""
    last = smoke_run / "classifier" / "last.ckpt"
    before = torch.load(last, map_location="cpu", weights_only=True)
    run_train(
        tmp_path,
        "experiment=smoke",
        "logger=csv",
        f"run_dir={smoke_run}",
        "stages=[classifier]",
        "ckpt_path=last",
        f"trainer.max_epochs={before['epoch'] + 2}",
    )
    after = torch.load(last, map_location="cpu", weights_only=True)
    assert after["epoch"] > before["epoch"]
    assert after["global_step"] > before["global_step"]  # continued from the checkpoint, not restarted


def test_grid_sweep_runs_each_job_separately(tmp_path: Path) -> None:
    run_train(
        tmp_path, "experiment=smoke", "debug=fdr", "stages=[classifier]", "model.optimizer.lr=1e-3,3e-4", multirun=True
    )
    jobs = sorted((tmp_path / "logs").glob("debug/multiruns/*/[0-9]*"))
    assert len(jobs) == 2
    assert all((j / "classifier" / "model.json").is_file() for j in jobs)


def test_optuna_sweep(tmp_path: Path) -> None:
    run_train(
        tmp_path,
        "experiment=smoke",
        "debug=fdr",
        "stages=[classifier]",
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.sampler.n_startup_trials=2",
        multirun=True,
    )
    results = list((tmp_path / "logs").rglob("optimization_results.yaml"))
    assert results, "the Optuna sweeper wrote no results"
    assert "best_params" in results[0].read_text()


def test_unknown_stage_is_a_clear_error(tmp_path: Path) -> None:
    env = {**os.environ, "SNAPSEARCH_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            "experiment=smoke",
            "stages=[ranker]",
            f"paths.log_dir={tmp_path / 'logs'}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert proc.returncode != 0
    assert "unknown or empty stages ['ranker']" in proc.stderr + proc.stdout


def test_augmentation_preview_command(tmp_path: Path) -> None:
    env = {**os.environ, "SNAPSEARCH_CACHE_DIR": str(tmp_path / "cache")}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "snapsearch.data.preview",
            "augment=user_photo",
            "n_images=2",
            f"paths.log_dir={tmp_path / 'logs'}",
        ],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        timeout=TIMEOUT_S,
    )
    assert list((tmp_path / "logs").rglob("augment_preview.png"))
