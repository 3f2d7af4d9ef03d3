"""The feature-preservation term: its similarity disagreement is zero for an embedding that orders neighbours as
the teacher does and large for one that does not; the teacher is a frozen, eval-mode copy of the pretrained
trunk that gradients never reach; and a multi-task training step with it trains the student alone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from snapsearch.models.backbone import build_architecture
from snapsearch.training.feature_preservation import FeaturePreservation, similarity_disagreement
from snapsearch.training.multitask_system import MultiTaskSystem

BACKBONE = {"name": "test_efficientnet", "pretrained": False, "weights": None, "checkpoint": None,
            "drop_rate": 0.0, "input_size": 64}  # fmt: skip


def test_disagreement_is_zero_for_the_same_neighbour_order_and_large_for_another() -> None:
    gen = torch.Generator().manual_seed(0)
    reference = torch.randn(16, 32, generator=gen)
    # a rotation keeps every cosine similarity, so every neighbour order
    rotation, _ = torch.linalg.qr(torch.randn(32, 32, generator=gen))
    assert similarity_disagreement(reference @ rotation, reference).item() == pytest.approx(0.0, abs=1e-5)
    unrelated = torch.randn(16, 32, generator=gen)
    assert similarity_disagreement(unrelated, reference).item() > 0.6  # ~1 for independent features
    nearly = similarity_disagreement(reference + 0.3 * torch.randn(16, 32, generator=gen), reference)
    assert 0.0 < nearly.item() < 0.3  # a little noise reorders a few neighbours only


def test_within_domains_only_same_domain_neighbours_count() -> None:
    """Each domain rotated its own way: every within-domain similarity is the reference's, the cross-domain ones
    are not. Only the comparison without domains sees a disagreement."""
    gen = torch.Generator().manual_seed(1)
    reference = torch.randn(8, 16, generator=gen)
    domains = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0])
    embedding = torch.empty_like(reference)
    for d in (0, 1):
        rotation, _ = torch.linalg.qr(torch.randn(16, 16, generator=gen))
        embedding[domains == d] = reference[domains == d] @ rotation
    assert similarity_disagreement(embedding, reference, domains).item() == pytest.approx(0.0, abs=1e-5)
    assert similarity_disagreement(embedding, reference).item() > 0.2


def test_disagreement_needs_three_rows_and_passes_gradient_to_the_embedding() -> None:
    two = torch.randn(2, 8, requires_grad=True)
    assert similarity_disagreement(two, torch.randn(2, 8)).item() == 0.0
    emb = torch.randn(8, 8, requires_grad=True)
    similarity_disagreement(emb, torch.randn(8, 8)).backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0


def test_teacher_is_a_frozen_eval_copy_that_gradients_never_reach() -> None:
    trunk = build_architecture(BACKBONE["name"], num_classes=0).eval()  # BatchNorm as the teacher runs it
    term = FeaturePreservation(trunk, ["similarities", "features"], within_domain=True).train()
    assert not term.teacher.training and all(not p.requires_grad for p in term.teacher.parameters())
    images = torch.randn(4, 3, 64, 64)
    pooled = trunk.forward_head(trunk.forward_features(images), pre_logits=True)
    # the student as loaded: its pooled features are the teacher's, so the features target is zero
    assert term.loss(images, pooled, pooled, torch.tensor([1, 1, 0, 0])).item() == pytest.approx(0.0, abs=1e-5)
    with torch.no_grad():
        next(trunk.parameters()).add_(1.0)  # the student moves; the copy does not
    pooled = trunk.forward_head(trunk.forward_features(images), pre_logits=True)
    loss = term.loss(images, pooled, pooled, torch.tensor([1, 1, 0, 0]))
    loss.backward()
    assert loss.item() > 0 and all(p.grad is None for p in term.teacher.parameters())


def test_unknown_target_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="choose one or more of"):
        FeaturePreservation(nn.Identity(), ["pixels"], within_domain=True)


def test_training_step_adds_the_term_and_only_the_student_learns() -> None:
    embedder = {"embedding_dim": 16, "gem_p": 3.0,
                "loss": {"_target_": "pytorch_metric_learning.losses.ContrastiveLoss"}}  # fmt: skip
    multitask = {"category_weight": 1.0, "embedding_weight": 1.0, "freeze_backbone_epochs": 0,
                 "backbone_lr_scale": 1.0, "domain_invariance": {"weight": 0.0},
                 "feature_preservation": {"weight": 2.0, "targets": ["similarities"],
                                          "within_domain": True}}  # fmt: skip
    system = MultiTaskSystem(BACKBONE, ["a", "b"], ["p0", "p1", "p2"], embedder, multitask, 0.0, {}, {}, False)
    assert system.preservation is not None
    system.log = lambda *args, **kwargs: None  # type: ignore[method-assign]  # no trainer to log to
    batch = {"image": torch.randn(6, 3, 64, 64), "label": torch.tensor([0, 0, 1, 1, 0, 1]),
             "product": torch.tensor([0, 0, 1, 1, 2, 2]), "photo": torch.tensor([1, 1, 1, 0, 0, 0]),
             "n_skipped": 0}  # fmt: skip
    system.train()
    loss = system.training_step(batch, 0)
    assert loss is not None and torch.isfinite(loss)
    loss.backward()
    assert any(p.grad is not None for p in system.model.trunk.parameters())
    assert all(p.grad is None for p in system.preservation.teacher.parameters())
    assert not system.preservation.teacher.training
