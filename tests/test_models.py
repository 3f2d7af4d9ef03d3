"""The plain models: classifier calibration, embedder pooling/normalisation, every configured loss."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from snapsearch.models.calibration import T_MAX, fit_temperature
from snapsearch.models.classifier import CategoryClassifier
from snapsearch.models.embedder import GeM, ProductEmbedder
from snapsearch.training.embedder_system import build_loss

from .conftest import CONF_DIR

TINY = {
    "name": "test_efficientnet",
    "pretrained": False,
    "weights": None,
    "checkpoint": None,
    "drop_rate": 0.0,
    "input_size": 64,
}


def test_gem_interpolates_between_average_and_max() -> None:
    x = torch.rand(2, 8, 5, 5)
    assert torch.allclose(GeM(1.0)(x), x.mean(dim=(-2, -1)), atol=1e-5)
    high = GeM(50.0)(x)
    assert torch.all(high <= x.amax(dim=(-2, -1)) + 1e-4) and torch.all(high > x.mean(dim=(-2, -1)))


def test_embedder_outputs_unit_vectors_and_round_trips(tmp_path: Path) -> None:
    model, pre = ProductEmbedder.build(TINY, embedding_dim=32, gem_p=3.0)
    x = torch.randn(3, 3, 64, 64)
    emb = model.eval()(x)
    assert emb.shape == (3, 32) and torch.allclose(emb.norm(dim=-1), torch.ones(3), atol=1e-5)
    model.save(tmp_path, backbone=TINY, preprocess=pre, gem_p=3.0)
    loaded, pre2 = ProductEmbedder.load(tmp_path)
    assert pre2 == pre and torch.allclose(loaded(x), emb, atol=1e-6)


def test_generic_embedder_keeps_trunk_features() -> None:
    model, _ = ProductEmbedder.build(TINY, embedding_dim=None, gem_p=1.0)
    assert model.embedding_dim == model.trunk.num_features
    assert not model.pool.p.requires_grad  # the generic embedder does not learn its pooling


def test_wrong_kind_of_model_folder_is_refused(tmp_path: Path) -> None:
    model, pre = ProductEmbedder.build(TINY, embedding_dim=16, gem_p=3.0)
    model.save(tmp_path, backbone=TINY, preprocess=pre, gem_p=3.0)
    with pytest.raises(ValueError, match="holds a 'embedder' model, not a 'classifier'"):
        CategoryClassifier.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="holds no saved classifier"):
        CategoryClassifier.load(tmp_path / "nothing")


@pytest.mark.parametrize("loss_name", sorted(p.stem for p in (CONF_DIR / "loss").glob("*.yaml")))
def test_every_configured_loss_trains(loss_name: str) -> None:
    """Each loss config builds with sizes from data and model, and its gradient reaches the embeddings."""
    cfg = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "loss" / f"{loss_name}.yaml"))
    loss = build_loss(cfg["loss"], num_classes=5, embedding_size=16)
    miner = None
    if cfg["miner"]:
        from hydra.utils import instantiate

        miner = instantiate(cfg["miner"])
    emb = torch.nn.functional.normalize(torch.randn(20, 16), dim=-1).requires_grad_()
    labels = torch.arange(5).repeat_interleave(4)
    value = loss(emb, labels, miner(emb, labels) if miner else None)
    value.backward()
    assert torch.isfinite(value) and emb.grad is not None and emb.grad.abs().sum() > 0


def test_temperature_recovers_a_known_scale() -> None:
    """Logits made over-confident by a factor 3 are calibrated back by T close to 3."""
    torch.manual_seed(0)
    true_logits = torch.randn(4000, 6)
    labels = torch.distributions.Categorical(logits=true_logits).sample()
    assert fit_temperature(3.0 * true_logits, labels) == pytest.approx(3.0, rel=0.1)
    assert fit_temperature(torch.randn(50, 4) * 0, torch.zeros(50, dtype=torch.long)) <= T_MAX
    with pytest.raises(ValueError, match="N x C logits"):
        fit_temperature(torch.randn(5), torch.zeros(5))
