"""Train the cascade's models: ``python train.py [experiment=NAME] [key=value ...]`` (Hydra)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from snapsearch.training.task import train
from snapsearch.utils.resolvers import register_resolvers
from snapsearch.utils.run import task_wrapper

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
@task_wrapper
def main(cfg: DictConfig) -> float | None:
    """Returns the monitored metric, which Hydra sweepers (Optuna) optimise."""
    metrics = train(cfg)
    return metrics.get(f"{cfg.monitor.objective}/{cfg.monitor[cfg.monitor.objective].metric}")


if __name__ == "__main__":
    main()
