"""Export a train run for deployment: ``python export.py run_dir=DIR [quantize_int8=true]`` (Hydra)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from snapsearch.deploy.task import run_export
from snapsearch.utils.resolvers import register_resolvers
from snapsearch.utils.run import task_wrapper

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
@task_wrapper
def main(cfg: DictConfig) -> None:
    run_export(cfg)


if __name__ == "__main__":
    main()
