"""Scale-out paths on one CPU machine: catalog embedding in resumable shards, DDP over 2 CPU processes
(training and embedding), the index built from shards, and cluster launch configs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from snapsearch.catalog.predict import ShardWriter
from snapsearch.retrieval.shards import ShardPlan, read_plan, read_shard, shard_path

from .conftest import CONF_DIR, run_entry, run_train

DDP_CPU = ("trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp")


def _embed(tmp: Path, run_dir: Path, out: Path, *overrides: str):
    return run_entry(
        "embed.py",
        tmp,
        f"run_dir={run_dir}",
        f"out={out}",
        "shard_size=8",
        "num_workers=0",
        f"paths.log_dir={tmp / 'logs'}",
        *overrides,
    )


def _shards(folder: Path) -> list:
    return [read_shard(folder, s) for s in range(read_plan(folder).n_shards)]


def test_writer_cuts_batches_into_shards_and_counts_unreadable(tmp_path: Path) -> None:
    plan = ShardPlan(n_rows=12, shard_size=8, ids_sha256="x", embedder_fingerprint="f", embedding_dim=2)
    writer = ShardWriter(tmp_path, plan)
    batches = [np.arange(0, 6), np.arange(6, 10), np.arange(10, 12)]  # the second batch crosses a shard
    unreadable = {7}
    for positions in batches:
        readable = np.array([p not in unreadable for p in positions])
        emb = np.stack([positions[readable], -positions[readable]], 1).astype(np.float32)
        writer.write_on_batch_end(None, None, {"embedding": emb, "position": positions, "readable": readable},
                                  None, None, 0, 0)  # fmt: skip
        if positions[0] == 6:  # shard 0 is complete (8 positions seen) the moment position 7 is
            assert shard_path(tmp_path, 0).is_file() and not shard_path(tmp_path, 1).is_file()
    first, second = read_shard(tmp_path, 0), read_shard(tmp_path, 1)
    assert first.positions.tolist() == [0, 1, 2, 3, 4, 5, 6] and first.n_skipped == 1
    assert np.array_equal(first.embeddings[:, 0], first.positions) and second.positions.tolist() == [8, 9, 10, 11]
    assert writer.buffers == {} and writer.written == [0, 1]


@pytest.mark.slow
def test_embed_resumes_only_missing_shards_and_refuses_another_plan(smoke_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "shards"
    _embed(tmp_path, smoke_run, out)
    plan = read_plan(out)
    assert plan.n_shards == 4 and plan.n_rows == 30  # the synthetic catalog: 30 products, 1 image each
    before = _shards(out)
    stamps = {s: shard_path(out, s).stat().st_mtime_ns for s in range(plan.n_shards)}
    shard_path(out, 2).unlink()

    rerun = _embed(tmp_path, smoke_run, out)
    assert "1 of 4 shards to embed" in rerun.stdout + rerun.stderr
    assert all(shard_path(out, s).stat().st_mtime_ns == stamps[s] for s in (0, 1, 3))
    again = read_shard(out, 2)
    assert np.array_equal(again.positions, before[2].positions)
    assert np.allclose(again.embeddings, before[2].embeddings, atol=1e-6)

    with pytest.raises(AssertionError, match=r"another plan .*shard_size"):
        _embed(tmp_path, smoke_run, out, "shard_size=16")


@pytest.mark.slow
def test_evaluate_from_shards_matches_in_memory_index(smoke_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "shards"
    _embed(tmp_path, smoke_run, out)
    reports = {}
    for name, extra in {"memory": (), "shards": (f"catalog_shards={out}",)}.items():
        run_entry(
            "evaluate.py", tmp_path, f"run_dir={smoke_run}", "logger=none", "latency.n_queries=3",
            f"hydra.run.dir={tmp_path / name}", *extra,
        )  # fmt: skip
        reports[name] = json.loads((tmp_path / name / "report.json").read_text())
    strategies = reports["memory"]["strategies"]
    assert strategies.keys() == reports["shards"]["strategies"].keys()
    for name, result in strategies.items():
        assert reports["shards"]["strategies"][name]["metrics"] == pytest.approx(result["metrics"], abs=1e-6)


@pytest.mark.slow  # 35 s: two training processes; CI runs it (pytest -m slow)
def test_ddp_on_two_cpu_processes_trains_and_embeds(smoke_run: Path, tmp_path: Path) -> None:
    """Both stages under DDP (gloo, 2 processes): distributed seeded draws, synced metrics, whole-set
    calibration and validation retrieval, files written once; then the catalog embedded by both ranks."""
    run_dir = tmp_path / "ddp"
    proc = run_train(
        tmp_path, "experiment=smoke", "logger=none", "trainer=ddp", *DDP_CPU[:2], "trainer.precision=32-true",
        "trainer.sync_batchnorm=false", "trainer.max_epochs=1", f"run_dir={run_dir}",
    )  # fmt: skip
    log = proc.stdout + proc.stderr
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in log
    n_val = log.count("temperature on 60 validation photos")  # every val photo once, on both ranks
    assert n_val == 2
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"classifier/test/acc", "classifier/temperature", "embedder/val/R@1"} <= metrics.keys()
    for stage in ("classifier", "embedder"):
        assert torch.load(run_dir / stage / "model.pt", weights_only=True)

    single, ddp = tmp_path / "single", tmp_path / "ddp_shards"
    _embed(tmp_path, smoke_run, single)
    proc = _embed(tmp_path, smoke_run, ddp, *DDP_CPU)
    assert "rank 0 wrote 2 shards" in proc.stdout + proc.stderr
    assert "rank 1 wrote 2 shards" in proc.stdout + proc.stderr
    for a, b in zip(_shards(single), _shards(ddp), strict=True):
        assert np.array_equal(a.positions, b.positions)
        assert np.allclose(a.embeddings, b.embeddings, atol=1e-5)


def test_slurm_launcher_is_sized_from_the_trainer() -> None:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=8", "trainer.num_nodes=2"],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.nodes, launcher.gpus_per_node, launcher.tasks_per_node) == (2, 8, 8)


@pytest.mark.slow  # 20 s: a sweep of real jobs; CI runs it (pytest -m slow)
def test_submitit_sweep_runs_jobs_in_one_sweep_folder(tmp_path: Path) -> None:
    """The cluster launcher end to end, with submitit's local executor standing in for SLURM."""
    run_train(
        tmp_path, "hydra/launcher=submitit_local", "experiment=smoke", "logger=none",
        "+trainer.fast_dev_run=true", "seed=1,2", multirun=True,
    )  # fmt: skip
    sweeps = list((tmp_path / "logs" / "train" / "multiruns").iterdir())
    assert len(sweeps) == 1, sweeps  # every job resolved the same sweep folder
    assert sorted(p.name for p in sweeps[0].iterdir() if p.is_dir() and p.name.isdigit()) == ["0", "1"]
    assert all((sweeps[0] / job / "train.log").is_file() for job in ("0", "1"))
