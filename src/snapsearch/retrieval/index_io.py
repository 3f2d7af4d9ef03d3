"""On-disk format of a partitioned index: one folder, written atomically, readable without pickle.

Layout: ``index.json`` (what built it and how to read the rest), one ``<name>.faiss`` per faiss index
(faiss.write_index), and ``ids.npz`` with the id maps. A half-written folder never appears under the
final name, and a folder built by another embedder is refused with a message that says what to do.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from snapsearch.utils.atomic import atomic_dir

FORMAT_VERSION = 1
MANIFEST_FILE = "index.json"
ARRAYS_FILE = "ids.npz"
FAISS_SUFFIX = ".faiss"
REQUIRED_KEYS = ("format_version", "dim", "factory", "metric", "n_items", "n_partitions", "indexes", "arrays")
REBUILD_HINT = "rebuild the index with the current embedder: python evaluate.py run_dir=<run> save_index=true"


class IndexMismatchError(ValueError):
    """The index was built for other embeddings (another embedder checksum or dimension) than it is used with."""


class IndexFormatError(ValueError):
    """The folder is not a readable partitioned index (missing, corrupt or from an unknown format version)."""


def write_index_dir(
    path: str | Path,
    manifest: Mapping[str, Any],
    indexes: Mapping[str, faiss.Index],
    arrays: Mapping[str, np.ndarray],
) -> None:
    """Write the folder in one atomic step; ``manifest`` gains the format version and the file lists."""
    stored = {name: _pickle_free(name, arr) for name, arr in arrays.items()}
    full = {
        **manifest,
        "format_version": FORMAT_VERSION,
        "faiss_version": faiss.__version__,
        "indexes": sorted(indexes),
        "arrays": sorted(stored),
    }
    with atomic_dir(path) as tmp:
        for name, index in indexes.items():
            faiss.write_index(index, str(tmp / f"{name}{FAISS_SUFFIX}"))
        np.savez(tmp / ARRAYS_FILE, **stored)  # type: ignore[arg-type]  # numpy stubs type **kwds as bool
        (tmp / MANIFEST_FILE).write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The parsed ``index.json``; FileNotFoundError / IndexFormatError say what is wrong with the folder."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no index folder at {path}; build one first ({REBUILD_HINT})")
    manifest_path = path / MANIFEST_FILE
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError as err:
        raise IndexFormatError(f"{path} is not a partitioned index: {MANIFEST_FILE} is missing") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise IndexFormatError(f"{manifest_path} is corrupt ({err}); {REBUILD_HINT}") from err
    missing = [k for k in REQUIRED_KEYS if not isinstance(manifest, dict) or k not in manifest]
    if missing:
        raise IndexFormatError(f"{manifest_path} lacks {missing}; {REBUILD_HINT}")
    if manifest["format_version"] != FORMAT_VERSION:
        raise IndexFormatError(
            f"{path} has index format {manifest['format_version']}, this code reads {FORMAT_VERSION}; {REBUILD_HINT}"
        )
    return manifest


def read_index_dir(path: str | Path) -> tuple[dict[str, Any], dict[str, faiss.Index], dict[str, np.ndarray]]:
    """(manifest, faiss indexes by name, arrays by name) of a folder written by :func:`write_index_dir`."""
    path = Path(path)
    manifest = read_manifest(path)
    indexes = {}
    for name in manifest["indexes"]:
        file = path / f"{name}{FAISS_SUFFIX}"
        if not file.is_file():
            raise IndexFormatError(f"{path} is incomplete: {file.name} is missing; {REBUILD_HINT}")
        try:
            indexes[name] = faiss.read_index(str(file))
        except RuntimeError as err:
            raise IndexFormatError(f"{file} is corrupt ({str(err).strip()[:200]}); {REBUILD_HINT}") from err
    try:
        with np.load(path / ARRAYS_FILE, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in manifest["arrays"]}
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
        raise IndexFormatError(f"{path / ARRAYS_FILE} is missing or corrupt ({err}); {REBUILD_HINT}") from err
    return manifest, indexes, arrays


def check_compatible(
    manifest: Mapping[str, Any],
    path: str | Path,
    expected_embedder_checksum: str | None,
    expected_dim: int | None,
) -> None:
    """Refuse an index built for other embeddings: their neighbours would be silently meaningless."""
    built_with = manifest.get("embedder_checksum")
    if expected_embedder_checksum is not None and built_with != expected_embedder_checksum:
        raise IndexMismatchError(
            f"index at {path} was built with embedder checksum {built_with or '<none recorded>'}, "
            f"your query embedder is {expected_embedder_checksum}; {REBUILD_HINT}"
        )
    if expected_dim is not None and int(manifest["dim"]) != int(expected_dim):
        raise IndexMismatchError(
            f"index at {path} holds {manifest['dim']}-d embeddings, your query embedder makes {expected_dim}-d ones; "
            f"{REBUILD_HINT}"
        )


def _pickle_free(name: str, array: np.ndarray) -> np.ndarray:
    """The array in a dtype npz stores without pickle (strings become fixed-width unicode)."""
    array = np.asarray(array)
    if array.dtype != object:
        return array
    values = array.tolist()
    if all(isinstance(v, str) for v in values):
        return np.asarray(values, dtype=str)
    kinds = sorted({type(v).__name__ for v in values})
    raise TypeError(f"cannot save {name!r} without pickle: its values are {kinds}; use ints or strings")
