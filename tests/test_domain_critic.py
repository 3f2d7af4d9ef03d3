"""What selects and trains for products without shopper photos: the domain-invariance term (the reversal flips
gradients, the critics stay silent on one-domain batches, training through the reversal really hides the domain
from a fresh probe while a task signal survives), and validation scoring the selection fold apart."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from snapsearch.training.domain_critic import DomainCritics, reversal_scale, reverse_gradient
from snapsearch.training.multitask_system import MultiTaskSystem
from snapsearch.training.retrieval_validation import POOL_LOADER, QUERY_LOADER, RetrievalValidation


def test_reversal_is_identity_forward_and_negated_scaled_gradient_backward() -> None:
    x = torch.randn(5, 3, requires_grad=True)
    y = reverse_gradient(x, 0.7)
    torch.testing.assert_close(y, x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.full((5, 3), -0.7))


def test_schedule_ramps_from_zero_to_nearly_one() -> None:
    assert reversal_scale(0.0, 10.0) == 0.0
    assert 0.4 < reversal_scale(0.1, 10.0) < 0.5 < reversal_scale(0.5, 10.0) < 0.99 < reversal_scale(1.0, 10.0)
    assert reversal_scale(2.0, 10.0) == reversal_scale(1.0, 10.0)  # clipped past the end


def test_one_domain_batch_gives_zero_loss_and_no_gradient() -> None:
    critics = DomainCritics({"embedding": 4}, hidden=8, gamma=10.0)
    feats = torch.randn(6, 4, requires_grad=True)
    loss, acc = critics.loss({"embedding": feats}, torch.ones(6, dtype=torch.long), progress=0.5)
    loss.backward()
    assert loss.item() == 0.0 and acc.item() == 0.5 and feats.grad is None


def _probe_domain_accuracy(feats: torch.Tensor, domain: torch.Tensor) -> float:
    """A fresh logistic probe's training accuracy at telling the domains apart from ``feats``."""
    probe = nn.Linear(feats.shape[1], 1)
    opt = torch.optim.Adam(probe.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        nn.functional.binary_cross_entropy_with_logits(probe(feats).squeeze(-1), domain.float()).backward()
        opt.step()
    return float(((probe(feats).squeeze(-1) > 0).long() == domain).float().mean())


def _train_encoder(critic_weight: float) -> tuple[float, float]:
    """An encoder on inputs whose 2nd coordinate gives the domain away: trained for a task on the 1st (a
    class) plus, optionally, the critics. Returns (probe's domain accuracy, task accuracy) on its features."""
    gen = torch.Generator().manual_seed(0)
    n = 512
    cls = torch.randint(0, 2, (n,), generator=gen)
    domain = torch.randint(0, 2, (n,), generator=gen)
    x = torch.stack([cls.float() * 2 - 1, domain.float() * 2 - 1], 1) + 0.2 * torch.randn(n, 2, generator=gen)
    x = torch.cat([x, 0.2 * torch.randn(n, 6, generator=gen)], 1)
    torch.manual_seed(0)
    encoder, head = nn.Linear(8, 4), nn.Linear(4, 2)
    critics = DomainCritics({"embedding": 4}, hidden=16, gamma=10.0)
    opt = torch.optim.Adam([*encoder.parameters(), *head.parameters(), *critics.parameters()], lr=0.02)
    steps = 400
    for step in range(steps):
        opt.zero_grad()
        feats = encoder(x)
        loss = nn.functional.cross_entropy(head(feats), cls)
        if critic_weight:
            domain_loss, _ = critics.loss({"embedding": feats}, domain, progress=step / steps)
            loss = loss + critic_weight * domain_loss
        loss.backward()
        opt.step()
    with torch.no_grad():
        feats = encoder(x)
        task = float((head(feats).argmax(1) == cls).float().mean())
    return _probe_domain_accuracy(feats.detach(), domain), task


def test_training_through_the_reversal_hides_the_domain_and_keeps_the_task() -> None:
    leaky_domain, leaky_task = _train_encoder(critic_weight=0.0)
    hidden_domain, hidden_task = _train_encoder(critic_weight=1.0)
    assert leaky_domain > 0.95  # without the term the features carry the domain
    assert hidden_domain < 0.75  # with it a fresh probe can hardly tell (chance is 0.5)
    assert leaky_task > 0.95 and hidden_task > 0.95


def test_retrieval_validation_scores_the_selection_fold_apart() -> None:
    """Fold products' photos give ``fold/...`` metrics; the rest keep the plain names."""
    pool = torch.eye(4)  # products 0..3, one catalog image each
    queries = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 0.1, 1.0], [0, 0, 0, 1.0]])
    products = torch.tensor([0, 1, 2, 3])
    val = RetrievalValidation(4, (1,), fold_products=(2, 3))
    val.add(QUERY_LOADER, queries, products, torch.arange(4))
    val.add(POOL_LOADER, pool, torch.arange(4), torch.arange(4))
    metrics = val.compute()
    assert metrics is not None and metrics["R@1"] == 1.0 and metrics["fold/R@1"] == 0.5


class _RecordingLoss(nn.Module):
    """Stands in for the metric loss: remembers which products it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.products: list[int] = []

    def forward(self, emb: torch.Tensor, products: torch.Tensor, _pairs: object) -> torch.Tensor:
        self.products += products.tolist()
        return emb.sum() * 0


@pytest.mark.parametrize(("scope", "seen_by_metric_loss"), [("all", [0, 0, 1, 1]), ("photographed", [0, 0])])
def test_metric_loss_leaves_photo_less_products_to_the_category_head(scope: str, seen_by_metric_loss: list) -> None:
    """``multitask.embedding_products=photographed``: a product trained from its catalog images alone (index 1
    here) reaches the category loss but never the metric loss."""
    backbone = {"name": "test_efficientnet", "pretrained": False, "weights": None, "checkpoint": None,
                "drop_rate": 0.0, "input_size": 64}  # fmt: skip
    embedder = {
        "embedding_dim": 16,
        "gem_p": 3.0,
        "loss": {"_target_": "pytorch_metric_learning.losses.ContrastiveLoss"},
    }
    multitask = {"category_weight": 1.0, "embedding_weight": 1.0, "freeze_backbone_epochs": 0,
                 "backbone_lr_scale": 1.0, "embedding_products": scope,
                 "domain_invariance": {"weight": 0.0}}  # fmt: skip
    system = MultiTaskSystem(backbone, ["a", "b"], ["p0", "p1", "p2"], embedder, multitask, 0.0, {}, {}, False,
                             photo_less=(1,))  # fmt: skip
    system.metric_loss = _RecordingLoss()
    batch = {"image": torch.randn(4, 3, 64, 64), "label": torch.tensor([0, 0, 1, 1]),
             "product": torch.tensor([0, 0, 1, 1]), "photo": torch.tensor([1, 0, 0, 0]), "n_skipped": 0}  # fmt: skip
    loss = system.training_step(batch, 0)
    assert system.metric_loss.products == seen_by_metric_loss and loss is not None and torch.isfinite(loss)
