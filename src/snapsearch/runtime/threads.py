"""The process's compute threads, set once at start from config (``serve.yaml``'s ``threads``).

Every library here keeps a process-wide thread pool (OpenCV, FAISS's OpenMP, torch), and onnxruntime takes
its threads per session: :func:`apply` sets the first three and records the onnxruntime options that every
session opened afterwards (:func:`snapsearch.runtime.models.load_runner`) is created with. Until then (the
evaluator, tests) sessions get onnxruntime's own defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_ort: ThreadSettings | None = None


@dataclass(frozen=True)
class ThreadSettings:
    """Thread counts (0: the library's own choice, usually one per core) and onnxruntime's spinning.

    Attributes:
        ort_intra_op: threads one onnxruntime operator runs on (the model pass).
        ort_inter_op: operators run in parallel (1: sequential execution).
        ort_spinning: let idle onnxruntime threads spin for work instead of sleeping (lower latency on an
            idle machine; it burns the cores other threads need under load).
        opencv: OpenCV's threads (resizing in preprocessing; 1 runs it on the calling thread).
        faiss: FAISS's OpenMP threads (the search stage).
        torch: torch's intra-op threads (tensor conversion in preprocessing; the eager runtime).
    """

    ort_intra_op: int
    ort_inter_op: int
    ort_spinning: bool
    opencv: int
    faiss: int
    torch: int

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> ThreadSettings:
        """From a config mapping with exactly these keys (a missing one is an error: no hidden default)."""
        return cls(
            ort_intra_op=int(cfg["ort_intra_op"]),
            ort_inter_op=int(cfg["ort_inter_op"]),
            ort_spinning=bool(cfg["ort_spinning"]),
            opencv=int(cfg["opencv"]),
            faiss=int(cfg["faiss"]),
            torch=int(cfg["torch"]),
        )


def apply(settings: ThreadSettings) -> None:
    """Set OpenCV's, FAISS's and torch's threads now, and onnxruntime's for the sessions opened from now on."""
    global _ort
    import cv2
    import faiss
    import torch

    cv2.setNumThreads(settings.opencv)
    if settings.faiss > 0:
        faiss.omp_set_num_threads(settings.faiss)
    if settings.torch > 0:
        torch.set_num_threads(settings.torch)
    _ort = settings


def session_options() -> Any:
    """onnxruntime ``SessionOptions`` under the applied settings (None before :func:`apply`: its defaults)."""
    if _ort is None:
        return None
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = _ort.ort_intra_op
    options.inter_op_num_threads = _ort.ort_inter_op
    options.execution_mode = (
        ort.ExecutionMode.ORT_PARALLEL if _ort.ort_inter_op > 1 else ort.ExecutionMode.ORT_SEQUENTIAL
    )
    spin = "1" if _ort.ort_spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    options.add_session_config_entry("session.inter_op.allow_spinning", spin)
    return options
