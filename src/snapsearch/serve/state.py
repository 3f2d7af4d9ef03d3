"""What the routes share, kept on ``app.state.serve`` and handed to them as a FastAPI dependency."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from snapsearch.search.cascade import Cascade
from snapsearch.search.live import LiveCatalog
from snapsearch.serve.batcher import Batcher

MB = 1 << 20


@dataclass(frozen=True)
class ServeState:
    """The live catalog and its cascade, the batcher, what the service describes itself as, and the limits
    on what a request may send."""

    live: LiveCatalog
    batcher: Batcher
    name: str
    source: dict[str, Any]
    max_upload_mb: float
    max_images_per_product: int

    @property
    def cascade(self) -> Cascade:
        return self.live.cascade

    @property
    def max_bytes(self) -> int:
        """One uploaded file's cap in bytes."""
        return int(self.max_upload_mb * MB)


def _state(request: Request) -> ServeState:
    return request.app.state.serve


State = Annotated[ServeState, Depends(_state)]
