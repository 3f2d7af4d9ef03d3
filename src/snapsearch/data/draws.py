"""Training draws whose randomness is a pure function of (seed, epoch, position).

A resumed run only reproduces the uninterrupted one if every random choice it makes again comes out the
same. Global RNG streams do not survive a restart (and DataLoader workers each hold their own copy of the
augmentation pipeline), so instead of saving and restoring RNG states we make them irrelevant:

* the order of an epoch (shuffling, weighted or M-per-product sampling) is drawn from RNG streams forked
  and seeded with ``(seed, epoch)``, so the global streams are neither read nor advanced;
* every draw carries its own augmentation seed, ``(seed, epoch, position)``, which the dataset sets on the
  augmentation pipeline before transforming that one sample: independent of workers, their number and
  whether they persist.

Lightning calls :meth:`SeededDraws.set_epoch` before each epoch, so resuming from a checkpoint at any
epoch boundary replays the same epochs; inside an epoch, :class:`ResumableLoader` restores the position
(:meth:`SeededDraws.resume_at` skips the draws already trained on). Under DDP it is its own distributed
sampler: every rank draws the same epoch and takes every world_size-th block of ``block`` draws (a block is
a batch, so M-per-product batches stay whole); Lightning leaves a ``DistributedSampler`` as it is instead of
wrapping it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sized
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, Sampler

_SEED_BITS = 32


def derive_seed(*parts: int) -> int:
    """A well-mixed 32-bit seed from integer parts (numpy's SeedSequence hashing)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


class SeededDraws(DistributedSampler):
    """Wrap any sampler so an epoch yields ``(index, augmentation_seed)`` pairs reproducibly.

    The inner sampler may draw from the global torch, NumPy or Python streams (``RandomSampler``,
    ``WeightedRandomSampler`` and pytorch-metric-learning's ``MPerClassSampler`` do): its epoch is drawn
    inside a fork of all three, seeded from ``(seed, epoch)``. ``num_replicas`` / ``rank`` default to the
    initialised process group (1 / 0 without one).
    """

    def __init__(
        self,
        inner: Sampler[int],
        seed: int,
        block: int = 1,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        assert isinstance(inner, Sized)
        distributed = dist.is_available() and dist.is_initialized()
        world = num_replicas if num_replicas is not None else (dist.get_world_size() if distributed else 1)
        rank = rank if rank is not None else (dist.get_rank() if distributed else 0)
        super().__init__(inner, num_replicas=world, rank=rank, shuffle=False, seed=int(seed))  # type: ignore[arg-type]
        self.inner = inner
        self._resume: tuple[int, int] | None = None  # (epoch, draws to skip) for the next iteration
        self.block = max(1, int(block))
        if world > 1:  # every rank gets the same number of whole blocks; the epoch's first draws pad
            stride = self.block * world
            self.total_size = -(-len(inner) // stride) * stride
            self.num_samples = self.total_size // world
        else:
            self.total_size = self.num_samples = len(inner)

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

    def resume_at(self, epoch: int, draws_done: int) -> None:
        """Start the next iteration at ``epoch``, past its first ``draws_done`` draws (this rank's): what a
        mid-epoch checkpoint had consumed. One-shot; a later :meth:`set_epoch` to another epoch cancels it."""
        self.set_epoch(epoch)
        self._resume = (int(epoch), int(draws_done))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = self._epoch_order()
        positions = np.arange(self.total_size) % max(1, len(order))
        if self.num_replicas > 1:
            positions = positions.reshape(-1, self.block)[self.rank :: self.num_replicas].ravel()
        if self._resume is not None:
            epoch, done = self._resume
            self._resume = None
            positions = positions[done:] if epoch == self.epoch else positions
        for position in positions.tolist():
            yield order[position], derive_seed(self.seed, self.epoch, position)


def split_draw(draw: Any) -> tuple[int, int | None]:
    """``(index, seed)`` from a :class:`SeededDraws` draw, ``(index, None)`` from a plain index."""
    if isinstance(draw, tuple):
        index, seed = draw
        return int(index), int(seed) % (1 << _SEED_BITS)
    return int(draw), None


class ResumableLoader(DataLoader):
    """A training DataLoader over :class:`SeededDraws` that can resume inside an epoch.

    Its iterator starts drawing at the first batch asked for, not when it is created: Lightning creates the
    training iterator while configuring the optimisers (``estimated_stepping_batches``), before a checkpoint's
    state is restored, and with workers the sampler's order would be fixed there with the wrong epoch and no
    skip. :meth:`resume` (called by :class:`~snapsearch.training.loader_position.LoaderPosition` with the
    checkpoint's position) thus always reaches the draws of the resumed epoch.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.sampler, SeededDraws):
            raise TypeError("a ResumableLoader draws through SeededDraws (its sampler=)")

    def resume(self, epoch: int, batches_done: int) -> None:
        """The next iteration is ``epoch`` past its first ``batches_done`` batches."""
        assert isinstance(self.sampler, SeededDraws) and self.batch_size is not None
        self.sampler.resume_at(epoch, batches_done * self.batch_size)

    def __iter__(self) -> Iterator[Any]:
        return _Deferred(super().__iter__)


class _Deferred(Iterator[Any]):
    """An iterator created on the first ``next``."""

    def __init__(self, start: Callable[[], Iterator[Any]]) -> None:
        self._start = start
        self._it: Iterator[Any] | None = None

    def __next__(self) -> Any:
        if self._it is None:
            self._it = self._start()
        return next(self._it)
