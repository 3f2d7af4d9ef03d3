"""The HTTP service around one :class:`~snapsearch.search.cascade.Cascade` and its live catalog: search a photo,
browse, add and remove products, and the page at ``/``. OpenAPI docs at ``/docs``.

``create_app`` assembles it: the routers (:mod:`snapsearch.serve.routes`), the error handlers
(:mod:`snapsearch.serve.errors`: every error a client causes is a 4xx with ``{"detail": "<what is wrong>"}``,
overload and a vector store that is down a 503), the body cap (:class:`~snapsearch.serve.body_limit.BodyLimit`:
413, chunked bodies included, nothing past the cap read or spooled to disk) and the batcher
(:class:`~snapsearch.serve.batcher.Batcher`), started and stopped with the app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from snapsearch.search.live import LiveCatalog
from snapsearch.serve import errors
from snapsearch.serve.batcher import Batcher, BatchOptions
from snapsearch.serve.body_limit import BodyLimit
from snapsearch.serve.routes import pages, products, search
from snapsearch.serve.state import MB, ServeState

__all__ = ["MB", "create_app"]


def create_app(
    live: LiveCatalog,
    *,
    name: str,
    source: dict[str, Any],
    max_upload_mb: float,
    batching: BatchOptions,
    max_images_per_product: int = 10,
) -> FastAPI:
    """The service for ``live``'s cascade. ``source`` describes what it serves (for ``/info``). Each uploaded
    file may hold ``max_upload_mb``, a request's whole body 1 MB more (the form's other fields, its framing)."""
    batcher = Batcher(live.cascade, batching)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        try:
            yield
        finally:
            batcher.stop()  # after the server has finished its requests

    app = FastAPI(
        title="snapsearch",
        summary="Snap a product, find it in the catalog",
        version=source["version"],
        lifespan=lifespan,
    )
    app.state.serve = ServeState(live, batcher, name, source, max_upload_mb, max_images_per_product)
    detail = f"request body larger than the {max_upload_mb:g} MB upload limit"
    app.add_middleware(BodyLimit, max_bytes=int(max_upload_mb * MB) + MB, detail=detail)
    errors.install(app)
    for router in (pages.router, search.router, products.router):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=pages.STATIC), name="static")
    return app
