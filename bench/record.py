"""What every bench script writes: its results as JSON, atomically, with the machine they were measured on."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

from snapsearch.utils.atomic import atomic_write_text


def save_results(path: str | Path, payload: dict[str, Any], **machine: Any) -> None:
    """``machine`` adds library facts (versions, thread counts) to the CPU count and platform."""
    out = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), **machine}, **payload}
    atomic_write_text(path, json.dumps(out, indent=2))
