"""Embed a catalog into resumable shards: ``python embed.py run_dir=DIR [key=value ...]`` (Hydra)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from snapsearch.catalog.task import run_embed
from snapsearch.utils.resolvers import register_resolvers
from snapsearch.utils.run import task_wrapper

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="embed")
@task_wrapper
def main(cfg: DictConfig) -> None:
    run_embed(cfg)


if __name__ == "__main__":
    main()
