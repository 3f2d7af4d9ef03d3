"""Checkpoints written atomically: a crash or a full disk never leaves a truncated ``last.ckpt``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytorch_lightning.plugins.io import TorchCheckpointIO

from snapsearch.utils.atomic import atomic_save


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO, but the bytes go to a temporary sibling that is renamed over the
    checkpoint only once complete (Lightning itself writes straight into the final file). A failed write
    leaves the previous checkpoint of that name intact and names the file and the cause."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        path = Path(path)
        try:
            atomic_save(path, lambda tmp: super(AtomicCheckpointIO, self).save_checkpoint(checkpoint, tmp))
        except OSError as err:
            raise OSError(
                err.errno,
                f"could not write checkpoint {path} ({err.strerror or err}); any previous checkpoint under that "
                "name is intact: free disk space or point run_dir= at a writable folder, then resume with "
                "ckpt_path=last",
            ) from err
