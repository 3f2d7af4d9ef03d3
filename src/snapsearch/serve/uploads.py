"""Uploaded files read under the per-file cap: 400 when missing or empty, 413 when over it."""

from __future__ import annotations

from fastapi import HTTPException
from starlette.datastructures import UploadFile  # what both FastAPI parameters and request.form() hold

from snapsearch.serve.state import MB


def _checked(data: bytes, upload: UploadFile, max_bytes: int, field: str) -> bytes:
    if len(data) > max_bytes:
        raise HTTPException(413, f"{upload.filename or field}: larger than the {max_bytes // MB} MB upload limit")
    if not data:
        raise HTTPException(400, f"{upload.filename or field}: empty file")
    return data


def _present(upload: object, field: str) -> UploadFile:
    if not isinstance(upload, UploadFile):
        raise HTTPException(400, f"no image: send the photo as the multipart form field {field!r}")
    return upload


def read_upload(upload: object, max_bytes: int, field: str) -> bytes:
    """The file's bytes (a sync handler, in FastAPI's thread pool); at most ``max_bytes`` + 1 are read."""
    upload = _present(upload, field)
    return _checked(upload.file.read(max_bytes + 1), upload, max_bytes, field)


async def read_upload_async(upload: object, max_bytes: int, field: str) -> bytes:
    """As :func:`read_upload`, from an async handler."""
    upload = _present(upload, field)
    return _checked(await upload.read(max_bytes + 1), upload, max_bytes, field)
