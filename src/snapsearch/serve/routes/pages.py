"""The page at ``/``, ``/healthz`` and ``/info``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse

from snapsearch.retrieval.store import StoreUnavailable
from snapsearch.serve.state import State

STATIC = Path(__file__).parents[1] / "static"
router = APIRouter()


@router.get("/", include_in_schema=False)
def page() -> FileResponse:
    return FileResponse(STATIC / "index.html")


@router.get("/healthz", responses={503: {"description": "the vector store is unavailable"}})
def healthz(state: State) -> Any:
    """``{"status": "ok"}``, with the vector store's own report when it has one.

    The store contract: a store with a server (Milvus, a Qdrant cluster) may define ``health() ->
    Mapping[str, Any]``, a JSON-ready description of its connection (cheap: a ping, no search), and raise
    :class:`~snapsearch.retrieval.store.StoreUnavailable` when the server cannot be reached. Then this
    answers ``{"status": "ok", "store": <that mapping>}``, or 503 ``{"status": "unavailable", "detail": ...}``.
    An in-process store (FAISS) has no ``health``: ``{"status": "ok"}``."""
    health = getattr(state.cascade.index, "health", None)
    if not callable(health):
        return {"status": "ok"}
    try:
        return {"status": "ok", "store": dict(health())}
    except StoreUnavailable as err:
        return JSONResponse({"status": "unavailable", "detail": f"the vector store is unavailable: {err}"}, 503)


@router.get("/info")
def info(state: State) -> dict[str, Any]:
    return {
        "name": state.name,
        "source": state.source,
        "catalog_changes": state.live.n_changes,
        **state.cascade.info(),
        "batching": state.batcher.stats(),
    }
