"""OmegaConf resolvers the configs use; registered once by each entry point before Hydra composes."""

from __future__ import annotations

import os

from omegaconf import OmegaConf

_DIRECTIONS = {"max": "maximize", "min": "minimize"}


def register_resolvers() -> None:
    """``${pid:}`` keeps run folders unique under parallel jobs; ``${optuna_direction:max}`` maps the
    single ``monitor.mode`` onto the Optuna sweeper's vocabulary."""
    if not OmegaConf.has_resolver("pid"):
        OmegaConf.register_new_resolver("pid", lambda: os.getpid())
    if not OmegaConf.has_resolver("optuna_direction"):
        OmegaConf.register_new_resolver("optuna_direction", lambda mode: _DIRECTIONS[mode])
