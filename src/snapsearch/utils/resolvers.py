"""OmegaConf resolvers the configs use; registered once by each entry point before Hydra composes."""

from __future__ import annotations

import os

from omegaconf import OmegaConf

_DIRECTIONS = {"max": "maximize", "min": "minimize"}


def register_resolvers() -> None:
    """``${pid:}`` keeps run folders unique under parallel jobs; ``${coalesce:a,b}`` is the first non-null
    value; ``${optuna_direction:max}`` maps the single ``monitor.mode`` onto the Optuna sweeper's vocabulary."""
    if not OmegaConf.has_resolver("pid"):
        OmegaConf.register_new_resolver("pid", lambda: os.getpid())
    if not OmegaConf.has_resolver("coalesce"):
        OmegaConf.register_new_resolver("coalesce", lambda *values: next((v for v in values if v is not None), None))
    if not OmegaConf.has_resolver("optuna_direction"):
        OmegaConf.register_new_resolver("optuna_direction", lambda mode: _DIRECTIONS[mode])
