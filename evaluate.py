"""Evaluate the cascade: ``python evaluate.py run_dir=DIR [protocol=...] [cascade=...] [index=...]`` (Hydra)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from snapsearch.evaluation.task import run_evaluation
from snapsearch.utils.resolvers import register_resolvers
from snapsearch.utils.run import task_wrapper

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
@task_wrapper
def main(cfg: DictConfig) -> None:
    run_evaluation(cfg)


if __name__ == "__main__":
    main()
