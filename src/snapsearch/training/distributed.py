"""Whole-set results from a distributed run: each rank saw a padded slice of an evaluation set."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch.distributed as dist


def gather_unique(rows: np.ndarray, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """``arrays`` (aligned with the manifest ``rows`` they came from) from every rank, each row once.

    The distributed sampler repeats a few samples to even the ranks out; counting them twice would bias
    set-level results (temperature, retrieval recall). Without a process group the local arrays return.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return arrays
    every: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(every, (rows, *arrays))
    merged = [np.concatenate(parts) for parts in zip(*every, strict=True)]
    _, first = np.unique(merged[0], return_index=True)
    return tuple(a[first] for a in merged[1:])
