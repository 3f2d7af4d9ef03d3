"""Training draws whose randomness is a pure function of (seed, epoch, position).

A resumed run only reproduces the uninterrupted one if every random choice it makes again comes out the
same. Global RNG streams do not survive a restart (and DataLoader workers each hold their own copy of the
augmentation pipeline), so instead of saving and restoring RNG states we make them irrelevant:

* the order of an epoch (shuffling, weighted or M-per-product sampling) is drawn from RNG streams forked
  and seeded with ``(seed, epoch)``, so the global streams are neither read nor advanced;
* every draw carries its own augmentation seed, ``(seed, epoch, position)``, which the dataset sets on the
  augmentation pipeline before transforming that one sample: independent of workers, their number and
  whether they persist.

Lightning calls :meth:`SeededDraws.set_epoch` before each epoch (also under DDP, where it wraps this
sampler in a distributed one), so resuming from a checkpoint at any epoch boundary replays the same epochs.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sized
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

_SEED_BITS = 32


def derive_seed(*parts: int) -> int:
    """A well-mixed 32-bit seed from integer parts (numpy's SeedSequence hashing)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


class SeededDraws(Sampler[tuple[int, int]]):
    """Wrap any sampler so an epoch yields ``(index, augmentation_seed)`` pairs reproducibly.

    The inner sampler may draw from the global torch, NumPy or Python streams (``RandomSampler``,
    ``WeightedRandomSampler`` and pytorch-metric-learning's ``MPerClassSampler`` do): its epoch is drawn
    inside a fork of all three, seeded from ``(seed, epoch)``.
    """

    def __init__(self, inner: Sampler[int], seed: int) -> None:
        self.inner = inner
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        assert isinstance(self.inner, Sized)
        return len(self.inner)

    def _epoch_order(self) -> list[int]:
        epoch_seed = derive_seed(self.seed, self.epoch)
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(epoch_seed)
                np.random.seed(epoch_seed)
                random.seed(epoch_seed)
                return [int(i) for i in self.inner]
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for position, index in enumerate(self._epoch_order()):
            yield index, derive_seed(self.seed, self.epoch, position)


def split_draw(draw: Any) -> tuple[int, int | None]:
    """``(index, seed)`` from a :class:`SeededDraws` draw, ``(index, None)`` from a plain index."""
    if isinstance(draw, tuple):
        index, seed = draw
        return int(index), int(seed) % (1 << _SEED_BITS)
    return int(draw), None
