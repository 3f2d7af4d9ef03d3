"""One factory for every backbone: a timm model from a name, its weights, and its preprocessing contract.

Weights come from the first of: a local checkpoint, an offline weight source, timm's download, and
otherwise random initialisation (loudly). The preprocessing contract is derived from the model's timm
config plus the weight source's overrides, so it is never written twice.
"""

from __future__ import annotations

import difflib
import logging

import timm
from timm.data import resolve_model_data_config
from torch import nn

from snapsearch.data.preprocess import Preprocess
from snapsearch.models.weights import (
    WEIGHT_SOURCES,
    WeightSource,
    get_weight_source,
    load_checkpoint,
    load_weight_source,
)

log = logging.getLogger(__name__)

_SUGGESTIONS = 5  # close model names offered for a typo


def _architecture(name: str) -> str:
    """``resnet50.a1_in1k`` -> ``resnet50``: timm names may carry a pretrained tag."""
    return name.partition(".")[0]


def _check_name(name: str) -> None:
    if timm.is_model(name):
        return
    close = difflib.get_close_matches(_architecture(name), timm.list_models(), n=_SUGGESTIONS)
    hint = f"did you mean {close}?" if close else f"search with timm.list_models('*{_architecture(name)}*')"
    raise ValueError(f"unknown timm model {name!r}; {hint}")


def _offline_options(name: str) -> str:
    """What works without internet for ``name``: its offline source if one fits, else a checkpoint."""
    fitting = [s.name for s in WEIGHT_SOURCES.values() if s.model_name == _architecture(name)]
    if fitting:
        return f"weights={fitting[0]!r} (offline, no download) or checkpoint=/path/to/file.pth (a local state dict)"
    offline = ", ".join(f"{s.model_name} with weights={s.name!r}" for s in WEIGHT_SOURCES.values())
    return f"checkpoint=/path/to/file.pth (a local state dict), or a model with offline weights: {offline}"


def _create_pretrained(name: str, num_classes: int, drop_rate: float) -> nn.Module:
    """timm's own download path, for machines with internet."""
    try:
        model = timm.create_model(name, pretrained=True, num_classes=num_classes, drop_rate=drop_rate)
    except Exception as err:  # the Hub client, requests/httpx and timm each raise their own types
        raise RuntimeError(
            f"could not get timm's pretrained weights for {name!r} ({type(err).__name__}: {err}). "
            f"Without internet, use {_offline_options(name)}; or pretrained=False to train from scratch."
        ) from err
    log.info("Loaded timm pretrained weights for %s", name)
    return model


def _contract(model: nn.Module, source: WeightSource | None, input_size: int | None) -> Preprocess:
    data_config = resolve_model_data_config(model)
    size = input_size or (source.input_size if source else None)
    native = int(data_config["input_size"][-1])
    if size and size != native and model.pretrained_cfg.get("fixed_input_size"):
        raise ValueError(f"{model.pretrained_cfg.get('architecture')} only takes {native}px inputs, not {size}")
    overrides = {"mean": source.mean, "std": source.std} if source else {}
    return Preprocess.from_timm_config(data_config, input_size=size, **overrides)


def build_architecture(name: str, *, num_classes: int, drop_rate: float = 0.0) -> nn.Module:
    """The network alone, randomly initialised: for loading a saved state dict into (no weight source)."""
    _check_name(name)
    return timm.create_model(name, num_classes=num_classes, drop_rate=drop_rate)


def create_backbone(
    name: str,
    *,
    pretrained: bool = False,
    weights: str | None = None,
    checkpoint: str | None = None,
    num_classes: int = 0,
    drop_rate: float = 0.0,
    input_size: int | None = None,
) -> tuple[nn.Module, Preprocess]:
    """Build a timm model with its weights and the preprocessing contract that goes with them.

    Args:
        name: any timm model name (``timm.list_models()``), e.g. ``tf_efficientnet_lite0``, ``resnet50``.
        pretrained: download timm's ImageNet weights (needs internet).
        weights: an offline weight source (``WEIGHT_SOURCES``), e.g. ``efficientnet_lite0``; it must fit
            ``name``. Its preprocessing (mean/std, native size) applies even when a checkpoint wins, since
            a checkpoint fine-tuned from it expects the same inputs.
        checkpoint: a local state dict file (.pth/.pt/.safetensors, possibly Lightning-wrapped).
        num_classes: classifier outputs; 0 = features only (``num_features`` wide). ImageNet weights
            keep their classifier only when this is 1000.
        drop_rate: dropout before the classifier.
        input_size: square input side; None = the weight source's native size, else the model's default.

    Returns:
        The model (train mode) and its ``Preprocess`` contract.
    """
    _check_name(name)
    source = get_weight_source(weights) if weights else None
    if source and source.model_name != _architecture(name):
        raise ValueError(
            f"weight source {source.name!r} fits timm model {source.model_name!r}, not {name!r}; "
            f"set the model name to {source.model_name!r} or choose another weight source"
        )
    if checkpoint:
        if source or pretrained:
            log.info("Checkpoint given: it takes precedence over weights=%s / pretrained=%s", weights, pretrained)
        model = timm.create_model(name, num_classes=num_classes, drop_rate=drop_rate)
        load_checkpoint(model, checkpoint)
    elif source:
        model = timm.create_model(name, num_classes=num_classes, drop_rate=drop_rate)
        load_weight_source(model, source)
    elif pretrained:
        model = _create_pretrained(name, num_classes, drop_rate)
    else:
        model = timm.create_model(name, num_classes=num_classes, drop_rate=drop_rate)
        log.warning(
            "%s: no checkpoint, weight source or pretrained weights given, training from scratch "
            "(random init). Pretrained options: %s",
            name,
            _offline_options(name),
        )
    return model, _contract(model, source, input_size)
