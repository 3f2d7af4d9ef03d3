"""The learning-rate schedule: hand-computed points, and a trunk that warms up only once it unfreezes."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from snapsearch.training.optim import START_EPOCH, configure_optimization, warmup_cosine

OPTIMIZER = {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-3}


def test_warmup_then_cosine_to_the_floor() -> None:
    f = warmup_cosine(total_steps=10, warmup_steps=2, min_ratio=0.1)
    assert [f(0), f(1), f(2)] == [0.5, 1.0, 1.0]
    assert f(6) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way through the 8 decay steps
    assert f(10) == pytest.approx(0.1)
    assert f(50) == pytest.approx(0.1)  # stays at the floor


def test_late_group_is_still_then_warms_up_from_its_start() -> None:
    f = warmup_cosine(total_steps=12, warmup_steps=2, min_ratio=0.0, start_step=4)
    assert [f(s) for s in range(4)] == [0.0] * 4
    assert [f(4), f(5), f(6)] == [0.5, 1.0, 1.0]
    assert f(9) == pytest.approx(0.5)  # half-way through its own 6 decay steps
    assert f(12) == pytest.approx(0.0)


def test_frozen_trunk_group_starts_at_zero_and_warms_up_after_unfreezing() -> None:
    head, trunk = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    trainer = SimpleNamespace(estimated_stepping_batches=40, max_epochs=4)  # 10 steps an epoch
    groups = [
        {"params": list(head.parameters()), "lr": 1e-3},
        {"params": list(trunk.parameters()), "lr": 1e-4, START_EPOCH: 1},
    ]
    opt = configure_optimization(trainer, OPTIMIZER, {"warmup_epochs": 1, "min_lr_ratio": 0.01}, groups)
    optimizer, scheduler = opt["optimizer"], opt["lr_scheduler"]["scheduler"]
    assert all(START_EPOCH not in g for g in optimizer.param_groups)
    lrs = []
    for _ in range(12):
        lrs.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx([1e-4, 0.0])  # head warming up, trunk still
    assert lrs[9] == pytest.approx([1e-3, 0.0])  # head at its peak at the end of the frozen epoch
    assert lrs[10][1] == pytest.approx(1e-5)  # the trunk's first step: a tenth of its rate, not all of it
    assert lrs[11][1] == pytest.approx(2e-5)
