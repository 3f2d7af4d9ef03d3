"""OmegaConf resolvers the configs use; registered once by each entry point before Hydra composes."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

from snapsearch.utils.layout import BundleDir, RunDir

_DIRECTIONS = {"max": "maximize", "min": "minimize"}


def evaluations_dir(run_dir: str | None, bundle: str | None) -> str:
    """Where evaluate.py reports go: inside the evaluated run directory, or beside a bundle (never inside
    it: a bundle's files are checksummed and must stay as exported)."""
    if run_dir is not None:
        return str(RunDir(Path(run_dir)).evaluations)
    if bundle is not None:
        return str(BundleDir(Path(bundle)).evaluations)
    raise ValueError("pass run_dir=<train run directory> or bundle=<export bundle>")


def register_resolvers() -> None:
    """``${pid:}`` keeps run folders unique under parallel jobs; ``${evaluations_dir:run,bundle}`` places
    evaluation reports; ``${or_else:value,default}`` picks the default for a null value (a train run's
    folder); ``${optuna_direction:max}`` maps ``monitor.mode`` onto the Optuna sweeper's words."""
    if not OmegaConf.has_resolver("pid"):
        OmegaConf.register_new_resolver("pid", lambda: os.getpid())
    if not OmegaConf.has_resolver("evaluations_dir"):
        OmegaConf.register_new_resolver("evaluations_dir", evaluations_dir)
    if not OmegaConf.has_resolver("or_else"):
        OmegaConf.register_new_resolver("or_else", lambda value, default: default if value is None else value)
    if not OmegaConf.has_resolver("optuna_direction"):
        OmegaConf.register_new_resolver("optuna_direction", lambda mode: _DIRECTIONS[mode])
