"""Search the catalog for a photo: ``python search.py bundle=DIR image=photo.jpg [strategy=fusion] [k=5]`` (Hydra)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from snapsearch.search.task import run_search
from snapsearch.utils.resolvers import register_resolvers
from snapsearch.utils.run import task_wrapper

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="search")
@task_wrapper
def main(cfg: DictConfig) -> None:
    run_search(cfg)


if __name__ == "__main__":
    main()
