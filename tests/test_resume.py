"""Faults during training, tried for real on subprocesses: a kill mid-epoch, SIGTERM, a disk that fills up.

The claims: a training killed at any point resumes from its newest checkpoint (``last.ckpt`` at an epoch's
end, ``step.ckpt`` inside one) with ``ckpt_path=last`` and, in deterministic mode, ends with the very weights
of an uninterrupted run; a checkpoint that cannot be
written never replaces the previous one with a truncated file.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .conftest import ROOT, TIMEOUT_S, run_train

# Each test trains in subprocesses and kills them: CI runs them with -m slow.
pytestmark = pytest.mark.slow

COMMON = (
    "experiment=smoke",
    "stages=[classifier]",
    "logger=none",
    "trainer.deterministic=true",
    "trainer.max_epochs=2",
)
STEPS_PER_EPOCH = 14  # 210 synthetic training images in batches of 16
KILL_STEP = 20  # mid-way through the second (last) epoch


def _train_subprocess(tmp: Path, *overrides: str, fsize_limit: int | None = None) -> subprocess.CompletedProcess:
    """train.py as a user runs it, expected to fail; ``fsize_limit`` caps the bytes any file may hold
    (RLIMIT_FSIZE: the kernel refuses further writes, the way a full disk does)."""

    def limit() -> None:
        if fsize_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_limit, fsize_limit))

    env = {**os.environ, "SNAPSEARCH_CACHE_DIR": str(tmp.parent / "cache")}
    cmd = [sys.executable, str(ROOT / "train.py"), f"paths.log_dir={tmp / 'logs'}", *overrides]
    return subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, preexec_fn=limit)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "classifier" / "model.pt", map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("resume")
    run_train(tmp, *COMMON, f"run_dir={tmp / 'run'}")
    return tmp / "run"


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM"])
def test_killed_mid_epoch_resumes_to_identical_weights(uninterrupted: Path, tmp_path: Path, sig: str) -> None:
    run_dir = tmp_path / "run"
    fault = ("+callbacks.fault._target_=tests.faults.SignalAtStep", f"+callbacks.fault.step={KILL_STEP}")
    killed = _train_subprocess(tmp_path, *COMMON, f"run_dir={run_dir}", *fault, f"+callbacks.fault.signal={sig}")
    assert killed.returncode != 0
    if sig == "SIGTERM":  # Lightning finishes the batch, then we stop with the command that resumes
        assert "ckpt_path=last" in killed.stderr
    last = torch.load(run_dir / "classifier" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == STEPS_PER_EPOCH < KILL_STEP  # killed mid-epoch, after one full epoch
    assert not (run_dir / "metrics.json").exists()

    resumed = run_train(tmp_path, *COMMON, f"run_dir={run_dir}", "ckpt_path=last")
    assert "Restored all states from the checkpoint" in resumed.stdout + resumed.stderr
    expected, got = _weights(uninterrupted), _weights(run_dir)
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert json.loads((run_dir / "metrics.json").read_text()) == json.loads(
        (uninterrupted / "metrics.json").read_text()
    )


STEP_EVERY = 5  # mid-epoch checkpoints: step.ckpt after every 5 optimizer steps


def test_killed_after_a_mid_epoch_checkpoint_resumes_at_that_batch(uninterrupted: Path, tmp_path: Path) -> None:
    """A checkpoint inside an epoch (step.ckpt) resumes at the very batch it was written after, with loader
    workers prefetching ahead (num_workers=2), and ends with the weights of the uninterrupted run."""
    run_dir = tmp_path / "run"
    mid_epoch = (f"callbacks.step_checkpoint.every_n_train_steps={STEP_EVERY}", "data.num_workers=2")
    fault = ("+callbacks.fault._target_=tests.faults.SignalAtStep", f"+callbacks.fault.step={KILL_STEP}")
    killed = _train_subprocess(
        tmp_path, *COMMON, *mid_epoch, f"run_dir={run_dir}", *fault, "+callbacks.fault.signal=SIGKILL"
    )
    assert killed.returncode != 0
    stage = run_dir / "classifier"
    step = torch.load(stage / "step.ckpt", map_location="cpu", weights_only=True)
    assert step["global_step"] == KILL_STEP > STEPS_PER_EPOCH  # written inside the second epoch
    done = KILL_STEP - STEPS_PER_EPOCH
    assert step["callbacks"]["LoaderPosition"] == {"epoch": 1, "batches_done": done}
    assert torch.load(stage / "last.ckpt", map_location="cpu", weights_only=True)["global_step"] == STEPS_PER_EPOCH

    resumed = run_train(tmp_path, *COMMON, *mid_epoch, f"run_dir={run_dir}", "ckpt_path=last")
    assert f"Restored all states from the checkpoint at {stage / 'step.ckpt'}" in resumed.stdout + resumed.stderr
    expected, got = _weights(uninterrupted), _weights(run_dir)
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_another_seed_trains_other_weights(uninterrupted: Path, tmp_path: Path) -> None:
    """The determinism above is not vacuous: the weights do depend on the seeded randomness."""
    run_train(tmp_path, *COMMON, f"run_dir={tmp_path / 'run'}", "seed=7")
    expected, got = _weights(uninterrupted), _weights(tmp_path / "run")
    assert not all(torch.equal(expected[k], got[k]) for k in expected)


def test_full_disk_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_train(tmp_path, *COMMON, f"run_dir={run_dir}", "trainer.max_epochs=1", "test=false")
    last = run_dir / "classifier" / "last.ckpt"
    before = hashlib.sha256(last.read_bytes()).hexdigest()

    # The next epoch's checkpoint is the only file larger than the cap: its write fails half-way.
    cap = last.stat().st_size // 2
    failed = _train_subprocess(
        tmp_path, *COMMON, f"run_dir={run_dir}", "ckpt_path=last", "trainer.max_epochs=2", fsize_limit=cap
    )
    assert failed.returncode != 0
    assert "could not write checkpoint" in failed.stderr and "File too large" in failed.stderr
    assert hashlib.sha256(last.read_bytes()).hexdigest() == before
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 0
    assert not list(run_dir.rglob("*.tmp"))
