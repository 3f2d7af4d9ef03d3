"""Catalog embeddings on disk, in shards: the unit of work that is dealt to ranks, skipped when already
done, and read back one at a time to build an index that never needs the whole pool in one array.

Folder layout::

    shards.json          what the shards are of: the ordered image ids (hash), embedder fingerprint, sizes
    shard-00000.npz      embeddings (n, dim) float32 and their positions in the ordered pool (0..n_rows-1);
    shard-00001.npz      unreadable images are absent, counted in ``n_skipped``
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from snapsearch.utils.atomic import atomic_save, atomic_write_text

PLAN_FILE = "shards.json"


class ShardMismatchError(ValueError):
    """Shards on disk were made from another pool, embedder or shard size than the one asked for."""


def ids_digest(image_ids: Sequence[str]) -> str:
    """sha256 of the ordered image ids: the same pool in the same order, or the shards mean nothing."""
    h = hashlib.sha256()
    for image_id in image_ids:
        h.update(str(image_id).encode())
        h.update(b"\0")
    return h.hexdigest()


@dataclass(frozen=True)
class ShardPlan:
    """How an ordered pool of ``n_rows`` images is cut into shards, and by which embedder."""

    n_rows: int
    shard_size: int
    ids_sha256: str
    embedder_fingerprint: str
    embedding_dim: int

    @property
    def n_shards(self) -> int:
        return -(-self.n_rows // self.shard_size)

    def bounds(self, shard: int) -> tuple[int, int]:
        start = shard * self.shard_size
        return start, min(start + self.shard_size, self.n_rows)


class Shard(NamedTuple):
    embeddings: np.ndarray
    positions: np.ndarray
    n_skipped: int


def shard_path(folder: Path, shard: int) -> Path:
    return folder / f"shard-{shard:05d}.npz"


def open_plan(folder: str | Path, plan: ShardPlan) -> Path:
    """Create the folder for ``plan``, or reopen it when it holds shards of the very same plan (resume).

    A folder of another plan is refused rather than mixed: embeddings of two embedders in one index
    return neighbours that look fine and mean nothing.
    """
    folder = Path(folder)
    existing = folder / PLAN_FILE
    if existing.is_file():
        found = json.loads(existing.read_text())
        wanted = asdict(plan)
        diff = sorted(k for k in wanted if found.get(k) != wanted[k])
        if diff:
            raise ShardMismatchError(
                f"{folder} holds shards of another plan (differs in {diff}): another catalog, embedder or "
                "shard size; delete the folder or choose another out="
            )
    else:
        atomic_write_text(existing, json.dumps(asdict(plan), indent=2))
    return folder


def read_plan(folder: str | Path) -> ShardPlan:
    path = Path(folder) / PLAN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no {PLAN_FILE}: not a shard folder (python embed.py writes one)")
    return ShardPlan(**json.loads(path.read_text()))


def pending_shards(folder: Path, plan: ShardPlan) -> list[int]:
    """Shards not on disk yet. A shard file only appears complete (atomic rename), so presence is enough."""
    return [s for s in range(plan.n_shards) if not shard_path(folder, s).is_file()]


def write_shard(folder: Path, shard: int, embeddings: np.ndarray, positions: np.ndarray, n_skipped: int) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                embeddings=embeddings.astype(np.float32),
                positions=positions.astype(np.int64),
                n_skipped=np.int64(n_skipped),
            )

    atomic_save(shard_path(folder, shard), write)


def read_shard(folder: Path, shard: int, *, embeddings: bool = True) -> Shard:
    """``embeddings=False`` reads only positions and counts (npz members load lazily): what mapping items
    to their metadata needs, without the vectors."""
    with np.load(shard_path(folder, shard)) as z:
        vectors = z["embeddings"] if embeddings else np.zeros((0, 0), np.float32)
        return Shard(vectors, z["positions"], int(z["n_skipped"]))


def iter_shards(folder: str | Path, plan: ShardPlan) -> Iterator[Shard]:
    """Every shard in pool order; refuses an incomplete folder (say which shards are missing)."""
    folder = Path(folder)
    missing = pending_shards(folder, plan)
    if missing:
        raise FileNotFoundError(
            f"{folder}: {len(missing)} of {plan.n_shards} shards missing (e.g. {missing[:5]}); "
            "run python embed.py again with the same arguments to finish them"
        )
    for s in range(plan.n_shards):
        yield read_shard(folder, s)
