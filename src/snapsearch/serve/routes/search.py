"""``POST /search``: a photo in, ranked products out, through the batcher (admission first, then the body)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from snapsearch.serve.state import State
from snapsearch.serve.uploads import read_upload_async

router = APIRouter()

# The photo is read from the form by hand (after admission, so an overloaded service refuses at once,
# before the upload is parsed); this describes the form for /docs.
PHOTO_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"image": {"type": "string", "format": "binary", "description": "the photo"}},
                    "required": ["image"],
                }
            }
        },
    }
}


async def _disconnected(request: Request) -> None:
    """Completes when the client has gone (the body is read by then: the next message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


@router.post(
    "/search",
    openapi_extra=PHOTO_FORM,
    responses={503: {"description": "overloaded (see Retry-After) or the vector store is down"}},
)
async def search(
    request: Request,
    state: State,
    k: Annotated[int, Query(description="products to return")] = 10,
    strategy: Annotated[str | None, Query(description="routing strategy; default: the service's")] = None,
) -> dict[str, Any]:
    state.cascade.check_request(k, strategy)  # 400 before anything is read
    with state.batcher.admit() as ticket:  # 503 + Retry-After at once when full
        async with request.form(max_files=1) as form:
            data = await read_upload_async(form.get("image"), state.max_bytes, "image")
        result = await state.batcher.search(data, k, strategy, ticket, lambda: _disconnected(request))
    out = result.to_dict()
    for hit in out["products"]:
        hit["image_url"] = f"/products/{hit['product_id']}/image"
    return out
