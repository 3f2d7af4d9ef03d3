"""Shared fixtures: repo paths, the Grocery root (skipped when absent), offline wandb."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"


def grocery_root() -> Path:
    data_dir = os.environ.get("SNAPSEARCH_DATA_DIR", str(ROOT.parent / "shared" / "datasets"))
    return Path(data_dir) / "GroceryStoreDataset"


@pytest.fixture(scope="session")
def grocery() -> Path:
    root = grocery_root()
    if not (root / "dataset" / "classes.csv").is_file():
        pytest.skip(f"Grocery Store dataset not at {root} (set SNAPSEARCH_DATA_DIR)")
    return root


@pytest.fixture(autouse=True)
def _offline_wandb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


TIMEOUT_S = 600


def run_entry(script: str, cwd: Path, *overrides: str, multirun: bool = False) -> subprocess.CompletedProcess:
    """Run an entry point as a user does; fail with its output tail when it fails."""
    env = {**os.environ, "SNAPSEARCH_CACHE_DIR": str(cwd.parent / "cache"), "WANDB_MODE": "offline"}
    cmd = [sys.executable, str(ROOT / script), *(["-m"] if multirun else []), *overrides]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def run_train(tmp_path: Path, *overrides: str, multirun: bool = False) -> subprocess.CompletedProcess:
    return run_entry("train.py", tmp_path, f"paths.log_dir={tmp_path / 'logs'}", *overrides, multirun=multirun)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real (tiny) training of both stages with wandb + CSV loggers, shared by the entry-point tests."""
    tmp = tmp_path_factory.mktemp("smoke")
    run_dir = tmp / "run"
    run_train(tmp, "experiment=smoke", "logger=many_loggers", f"run_dir={run_dir}", "trainer.max_epochs=2")
    return run_dir
