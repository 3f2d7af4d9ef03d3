"""Shared fixtures: repo paths, the Grocery root (skipped when absent), offline wandb."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
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


@pytest.fixture(scope="session")
def smoke_bundle(smoke_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The smoke run exported (ONNX, TorchScript, int8 ONNX, the catalog index) into a verified bundle."""
    out = tmp_path_factory.mktemp("export") / "bundle"
    run_entry(
        "export.py",
        out.parent,
        f"run_dir={smoke_run}",
        f"output={out}",
        "quantize_int8=true",
        "verify.n_images=8",
        "include_index=true",
    )
    return out


def run_manifest(run_dir: Path):
    """A run's own manifest (the data its config names)."""
    from omegaconf import OmegaConf

    from snapsearch.data.sources import load_manifest

    return load_manifest(OmegaConf.load(run_dir / "config.yaml").data)


@pytest.fixture(scope="session")
def query_photo(smoke_run: Path) -> Path:
    """A real test photo of the synthetic shop (a user-photo-like JPEG)."""
    m = run_manifest(smoke_run)
    return Path(m[(m["domain"] == "query") & (m["split"] == "test")]["path"].iloc[0])


# A strategy that reads the gate: its answer lists the top categories, whichever strategy the bundle's validation
# photos made the default (a default of `global` answers without them; which one wins on the tiny smoke model
# differs between CPUs).
GATED = "top1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVER_START_S = 180


@pytest.fixture(scope="session")
def serve_url(smoke_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python serve.py`` on the smoke bundle as a real uvicorn process on 127.0.0.1."""
    tmp = tmp_path_factory.mktemp("serve")
    port = free_port()
    env = {**os.environ, "SNAPSEARCH_CACHE_DIR": str(smoke_bundle.parent.parent / "cache")}
    cmd = [
        sys.executable,
        str(ROOT / "serve.py"),
        f"bundle={smoke_bundle}",
        f"port={port}",
        f"catalog_changes={tmp / 'changes'}",
        "log_level=warning",
    ]
    log = open(tmp / "serve.log", "w")  # noqa: SIM115  (closed below, after the process)
    proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_S
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve.py did not come up: {(tmp / 'serve.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
