"""What the CSV/XLSX imports and exports share at the edge: reading the uploaded file from the
request body, answering with a file, and how both appear in the OpenAPI document."""

from __future__ import annotations

from typing import Any, Final

from fastapi import Request, Response

from ..errors import ValidationFailed
from ..services.tabular import MEDIA_TYPES, Format

_XLSX: Final = MEDIA_TYPES["xlsx"]
_FORMATS: Final[dict[str, Format]] = {"text/csv": "csv", _XLSX: "xlsx"}
_CONTENT: Final = {
    "text/csv": {"schema": {"type": "string"}},
    _XLSX: {"schema": {"type": "string", "format": "binary"}},
}
#: ``openapi_extra`` of an import: the file is the raw request body.
UPLOAD_OPENAPI: Final[dict[str, Any]] = {"requestBody": {"required": True, "content": _CONTENT}}
#: ``responses`` of an export.
DOWNLOAD_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "description": "The file",
        "content": {MEDIA_TYPES["csv"]: _CONTENT["text/csv"], _XLSX: _CONTENT[_XLSX]},
    }
}


async def read_upload(request: Request) -> tuple[bytes, Format]:
    """The uploaded file and its format, by the request's Content-Type (else 422)."""
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    fmt = _FORMATS.get(media)
    if fmt is None:
        raise ValidationFailed(
            f"send the file as the request body with Content-Type text/csv or {_XLSX}"
        )
    return await request.body(), fmt


def file_response(data: bytes, fmt: Format, name: str) -> Response:
    return Response(
        data,
        media_type=MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'},
    )
