"""CSV and XLSX files for the import tests, built and read back the way a spreadsheet would."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

import httpx
from openpyxl import Workbook, load_workbook

CSV_TYPE = "text/csv; charset=utf-8"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def table_file(fmt: str, rows: Sequence[Sequence[Any]], header: Sequence[str]) -> bytes:
    """``rows`` under ``header`` as a CSV (UTF-8) or XLSX file."""
    if fmt == "csv":
        out = io.StringIO()
        csv.writer(out).writerows([header, *rows])
        return out.getvalue().encode("utf-8")
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in [header, *rows]:
        sheet.append(list(row))
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def read_file(fmt: str, data: bytes) -> list[dict[str, str]]:
    """The data rows of an exported file, by header name (every cell as text, "" when empty)."""
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    sheet = load_workbook(io.BytesIO(data)).worksheets[0]
    values = [
        ["" if v is None else str(v) for v in row] for row in sheet.iter_rows(values_only=True)
    ]
    return [dict(zip(values[0], row, strict=True)) for row in values[1:]]


def post_file(
    client: httpx.Client, headers: dict[str, str], path: str, data: bytes, fmt: str
) -> httpx.Response:
    """Upload a CSV or XLSX file as the request body."""
    content_type = CSV_TYPE if fmt == "csv" else XLSX_TYPE
    return client.post(path, headers={**headers, "Content-Type": content_type}, content=data)
