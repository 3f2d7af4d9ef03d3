"""Serve the search page and API: ``python serve.py bundle=DIR [host=127.0.0.1 port=8000]`` (Hydra)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from snapsearch.serve.task import run_serve
from snapsearch.utils.resolvers import register_resolvers
from snapsearch.utils.run import task_wrapper

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="serve")
@task_wrapper
def main(cfg: DictConfig) -> None:
    run_serve(cfg)


if __name__ == "__main__":
    main()
