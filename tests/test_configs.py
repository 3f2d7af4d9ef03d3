"""Every config composes and resolves: each experiment, each group option, each debug preset."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from snapsearch.training.task import STAGES
from snapsearch.utils.resolvers import register_resolvers

from .conftest import CONF_DIR

register_resolvers()


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def _compose(overrides: list[str], config_name: str = "train"):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides, return_hydra_config=True)


def _resolve(cfg) -> dict:
    """Resolve every interpolation of the job config (``hydra:`` runtime values only exist inside a job,
    so the output dir is pinned and the hydra node left out)."""
    job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    job.paths.output_dir = "/tmp/out"
    return OmegaConf.to_container(job, resolve=True)


@pytest.mark.parametrize("experiment", _options("experiment"))
def test_every_experiment_composes(experiment: str) -> None:
    cfg = _compose([f"experiment={experiment}"])
    resolved = _resolve(cfg)
    assert resolved["model"]["backbone"]["name"]
    assert set(resolved["stages"]) <= set(STAGES)


@pytest.mark.parametrize("group", ["data", "model", "augment", "trainer", "logger", "callbacks", "debug", "loss"])
def test_every_group_option_composes(group: str) -> None:
    for option in _options(group):
        _resolve(_compose([f"{group}={option}"]))


def test_monitor_is_named_once() -> None:
    """Callbacks get their monitored metric from the task; no config repeats a metric name."""
    for path in CONF_DIR.rglob("*.yaml"):
        text = path.read_text()
        if path.name != "train.yaml":
            assert "val/acc" not in text and "val/R@1" not in text, path


def test_optuna_direction_follows_monitor_mode() -> None:
    cfg = _compose(["hparams_search=optuna"])
    assert cfg.hydra.sweeper.direction == "maximize"
    cfg = _compose(["hparams_search=optuna", "monitor.classifier.mode=min"])
    assert cfg.hydra.sweeper.direction == "minimize"


def test_run_dirs_are_unique_per_process() -> None:
    cfg = _compose([])
    run_dir = OmegaConf.to_container(cfg.hydra.run, resolve=False)["dir"]
    assert "%f" in run_dir and "${pid:}" in run_dir


def test_loss_group_packages_into_embedder() -> None:
    cfg = _compose(["loss=multi_similarity"])
    assert cfg.model.embedder.loss._target_.endswith("MultiSimilarityLoss")
    assert cfg.model.embedder.miner._target_.endswith("MultiSimilarityMiner")
    assert Path(CONF_DIR / "loss" / "arcface.yaml").is_file()


def test_embed_config_places_shards_in_the_run() -> None:
    cfg = _compose(["run_dir=/runs/r1", "embedder=generic"], config_name="embed")
    resolved = _resolve(cfg)
    assert resolved["out"] == "/runs/r1/catalog_shards/catalog_generic"
    assert resolved["trainer"]["use_distributed_sampler"] is False  # shards are dealt by the task
    assert resolved["generic_embedder"]["backbone"]["name"] == "tf_efficientnet_lite0"


@pytest.mark.parametrize("option", _options("text"))
def test_every_text_option_builds_its_encoder(option: str) -> None:
    """search.py / serve.py text=...: each option's encoder instantiates with exactly its own arguments."""
    from snapsearch.search.config import text_options

    options = text_options(_compose([f"text={option}"], config_name="search").text)
    if option == "none":
        assert options is None
    else:
        assert options is not None and 0.0 <= options.weight <= 1.0
        options.encoder.fit(["Arla Standard Milk", "Oatly Oat Milk"])
        assert options.encoder.encode(["oat milk"]).shape[0] == 1
