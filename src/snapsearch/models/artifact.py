"""A model folder: ``model.pt`` (a state dict, loadable with ``weights_only=True``) plus ``model.json``
(everything needed to rebuild the module: backbone spec, label map, preprocessing contract). This is what
evaluation and export read, with no Lightning and nothing unpickled."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from snapsearch.utils.atomic import atomic_save, atomic_write_text
from snapsearch.utils.layout import MODEL_FILE

WEIGHTS_FILE = "model.pt"
META_FILE = MODEL_FILE


def save_model(folder: str | Path, module: nn.Module, meta: dict[str, Any]) -> None:
    """Weights first, description last: a folder whose ``model.json`` exists is complete."""
    folder = Path(folder)
    atomic_save(folder / WEIGHTS_FILE, lambda p: torch.save(module.state_dict(), p))
    atomic_write_text(folder / META_FILE, json.dumps(meta, indent=2))


def read_model(folder: str | Path, kind: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The state dict and description of a saved ``kind`` (``classifier`` / ``embedder``) model."""
    folder = Path(folder)
    if not (folder / META_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(
            f"{folder} holds no saved {kind} ({META_FILE} + {WEIGHTS_FILE}); pass the run directory of a "
            f"finished train run whose stages included {kind}"
        )
    meta = json.loads((folder / META_FILE).read_text())
    if meta.get("kind") != kind:
        raise ValueError(f"{folder} holds a {meta.get('kind')!r} model, not a {kind!r}")
    return torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True), meta


def fingerprint(module: nn.Module) -> str:
    """sha256 over a module's parameters and buffers: identifies an embedder across runtimes and files,
    so an index built with one embedder refuses queries from another."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
