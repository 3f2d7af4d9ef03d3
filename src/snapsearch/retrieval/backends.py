"""Vector-store backends by name, in one registry, so the next engine is one module and one config:
``retrieval/<name>_store.py`` calls :func:`register`, ``conf/index/<name>.yaml`` says ``backend: <name>``
and holds that backend's keys. Building, loading a saved store, making it mutable and excluding items all
dispatch here; nothing above ``retrieval/`` names a backend."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from snapsearch.retrieval.store import MutableVectorStore, VectorStore

MODULE_SUFFIX = "_store"  # retrieval modules named so are imported to find every backend
COMMON_KEYS = ("backend", "factory", "metric", "nprobe", "ef_search")


@dataclass(frozen=True)
class Items:
    """What a backend indexes: the pool's embeddings (re-readable chunks, in item order) and per-item facts."""

    chunks: Callable[[], Iterable[np.ndarray]]
    item_partition: np.ndarray
    item_product: np.ndarray
    categories: Sequence[str]
    embedder_checksum: str | None
    metadata: Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Backend:
    """One engine: how its config keys are read, how it builds, reopens, takes changes and hides items.

    ``pointer``: the file a saved store of this backend holds (None: the default, a FAISS index folder).
    ``types``: the store classes it returns (how :func:`backend_of` finds the backend of a store).
    """

    name: str
    options: type
    build: Callable[[IndexSpec, Items], VectorStore]
    load: Callable[[Path, str | None, int | None], VectorStore]
    types: tuple[type, ...]
    mutable: Callable[[Any], MutableVectorStore]  # takes a store of ``types``
    excluding: Callable[[Any, np.ndarray], VectorStore]
    pointer: str | None = None
    check: Callable[[IndexSpec], None] | None = None


_REGISTRY: dict[str, Backend] = {}
_discovered = False


def register(backend: Backend) -> Backend:
    """Make ``backend`` selectable as ``index.backend=<name>`` (called by its module on import)."""
    if not is_dataclass(backend.options):
        raise TypeError(f"backend {backend.name!r}: options must be a dataclass of its config keys")
    _REGISTRY[backend.name] = backend
    return backend


def _discover() -> None:
    """Import every ``snapsearch.retrieval.*_store`` module once (each registers its backend; their engines'
    client libraries are imported only when a store is built or opened)."""
    global _discovered
    if _discovered:
        return
    package = importlib.import_module("snapsearch.retrieval")
    for module in pkgutil.iter_modules(package.__path__):
        if module.name.endswith(MODULE_SUFFIX):
            importlib.import_module(f"snapsearch.retrieval.{module.name}")
    _discovered = True


def backends() -> dict[str, Backend]:
    _discover()
    return dict(_REGISTRY)


def backend(name: str) -> Backend:
    known = backends()
    if name not in known:
        raise ValueError(f"index.backend={name!r}; use one of {sorted(known)}")
    return known[name]


def backend_of(store: VectorStore) -> Backend:
    """The backend a store object belongs to (the most specific class wins: a LiveIndex is FAISS's)."""
    for b in backends().values():
        if isinstance(store, b.types):
            return b
    raise TypeError(f"{type(store).__name__} is no registered store type")


@dataclass(frozen=True)
class IndexSpec:
    """How to build the index (``conf/index/``): the backend; for FAISS a factory string, the metric and
    search parameters; every other key is the backend's own (its ``options`` dataclass, flat in the config)."""

    backend: str = "faiss"
    factory: str | None = "Flat"
    metric: str = "ip"
    nprobe: int | None = None
    ef_search: int | None = None
    options: Any = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        b = backend(self.backend)
        if self.options is None:
            object.__setattr__(self, "options", b.options(**self.extra))
        if b.check is not None:
            b.check(self)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> IndexSpec:
        """From an ``index`` config node: the common keys, then the backend's own beside them."""
        cfg = dict(cfg)
        b = backend(str(cfg.get("backend", "faiss")))
        own = {f.name for f in fields(b.options)}
        unknown = set(cfg) - own - set(COMMON_KEYS)
        if unknown:
            keys = sorted(own)
            raise ValueError(f"index keys {sorted(unknown)} mean nothing to backend {b.name!r} (its keys: {keys})")
        common = {k: cfg[k] for k in COMMON_KEYS if k in cfg}
        return cls(**common, extra={k: v for k, v in cfg.items() if k in own})

    def build(self, items: Items) -> VectorStore:
        return backend(self.backend).build(self, items)


def load_saved(path: str | Path, expected_embedder_checksum: str | None, expected_dim: int | None) -> VectorStore:
    """A saved store: the backend whose pointer file the folder holds, else a FAISS index folder."""
    path = Path(path)
    known = backends().values()
    for b in known:
        if b.pointer is not None and (path / b.pointer).is_file():
            return b.load(path, expected_embedder_checksum, expected_dim)
    default = next(b for b in known if b.pointer is None)
    return default.load(path, expected_embedder_checksum, expected_dim)
