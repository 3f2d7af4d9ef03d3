"""Data sources. Each is a function named in ``cfg.data.manifest._target_`` that returns a manifest."""

from __future__ import annotations

import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig

from snapsearch.data.manifest import validate_manifest


def load_manifest(data_cfg: DictConfig) -> pd.DataFrame:
    """Instantiate the configured source and validate what it returns."""
    return validate_manifest(instantiate(data_cfg.manifest))
