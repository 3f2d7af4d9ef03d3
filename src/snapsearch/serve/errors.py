"""The service's errors, each mapped once to its status and a ``{"detail": "<what is wrong>"}`` body."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from snapsearch.data.image_io import ImageReadError
from snapsearch.retrieval.store import StoreUnavailable
from snapsearch.search.cascade import SearchError
from snapsearch.search.live import CatalogChangeError
from snapsearch.serve.batcher import Shed


async def _invalid_request(request: Request, err: RequestValidationError) -> JSONResponse:
    """One readable sentence instead of FastAPI's list of error objects."""
    parts = [f"{'.'.join(str(x) for x in e['loc'][1:]) or e['loc'][0]}: {e['msg']}" for e in err.errors()]
    return JSONResponse({"detail": "; ".join(parts)}, 422)


async def _bad_search(request: Request, err: SearchError) -> JSONResponse:
    return JSONResponse({"detail": str(err)}, 400)


async def _bad_image(request: Request, err: ImageReadError) -> JSONResponse:
    """413 for an image too large to decode, 400 for anything else unusable."""
    status = 413 if err.reason.startswith("image too large") else 400
    return JSONResponse({"detail": f"{err.path}: {err.reason}"}, status)


async def _bad_change(request: Request, err: CatalogChangeError) -> JSONResponse:
    return JSONResponse({"detail": str(err)}, err.status)


async def _shed(request: Request, err: Shed) -> JSONResponse:
    """Overload (admission full, deadline passed) or a client gone: 503, come back after ``Retry-After``."""
    return JSONResponse({"detail": err.detail}, 503, headers={"Retry-After": str(err.retry_after_s)})


async def _store_down(request: Request, err: StoreUnavailable) -> JSONResponse:
    """The vector store's server is down or refused the call: never a wrong or empty answer, a 503."""
    return JSONResponse({"detail": f"the vector store is unavailable: {err}; retry later"}, 503)


def install(app: FastAPI) -> None:
    """Register every handler on ``app``."""
    app.add_exception_handler(RequestValidationError, _invalid_request)  # type: ignore[arg-type]
    app.add_exception_handler(SearchError, _bad_search)  # type: ignore[arg-type]
    app.add_exception_handler(ImageReadError, _bad_image)  # type: ignore[arg-type]
    app.add_exception_handler(CatalogChangeError, _bad_change)  # type: ignore[arg-type]
    app.add_exception_handler(Shed, _shed)  # type: ignore[arg-type]
    app.add_exception_handler(StoreUnavailable, _store_down)  # type: ignore[arg-type]
