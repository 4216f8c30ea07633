"""CSV and XLSX in and out, for the portal's imports, exports and reports (seed 003, 3.5 and 4.4).

Reading gives each data row with its row number as a person sees it in a spreadsheet (the header
is row 1), and every problem is collected with that number, so an import can refuse the whole
file naming each bad row (:class:`ImportRejected`, a 422 whose ``errors`` list every row). Nothing
here knows what a client or a license is: the caller validates the cells and reports its own
issues through :class:`RowIssues`.

Exports are built in memory: the portal's tables are at most tens of thousands of rows (seed 003:
10,000 licenses), a few MB.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

from ..errors import ValidationFailed

Format = Literal["csv", "xlsx"]
#: Media types of the two formats.
MEDIA_TYPES: dict[Format, str] = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
#: An import larger than this is refused before it is parsed.
MAX_IMPORT_BYTES = 5 * 1024 * 1024
MAX_IMPORT_ROWS = 20_000
#: At most this many row issues are listed (the count says how many there were).
MAX_LISTED_ISSUES = 200
#: Cells that a spreadsheet would run as a formula are written with a leading quote
#: (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: What an import takes the export's quote off again before (a stripped cell has no tab or CR).
_IMPORT_FORMULA_START = ("=", "+", "-", "@")

Cell = str | int | None


@dataclass(frozen=True)
class SheetRow:
    """One data row: ``number`` as the spreadsheet shows it, cells by header name (stripped)."""

    number: int
    cells: dict[str, str]

    def get(self, column: str) -> str:
        return self.cells.get(column, "")

    def unquoted(self, column: str) -> str:
        """A cell with the quote an export puts before a formula-like text taken off again."""
        value = self.get(column)
        if value.startswith("'") and value[1:2] in _IMPORT_FORMULA_START:
            return value[1:]
        return value


@dataclass
class RowIssues:
    """Problems found in an import, each with its row number and column."""

    issues: list[tuple[int, str | None, str]] = field(default_factory=list)

    def add(self, row: int, column: str | None, message: str) -> None:
        self.issues.append((row, column, message))

    def __bool__(self) -> bool:
        return bool(self.issues)

    def raise_if_any(self, what: str) -> None:
        if self.issues:
            raise ImportRejected(what, self.issues)


class ImportRejected(ValidationFailed):
    """The file was refused as a whole; ``errors`` lists each row's problem (loc: row, column)."""

    def __init__(self, what: str, issues: Sequence[tuple[int, str | None, str]]):
        listed = [
            {
                "loc": ["row", row] + ([column] if column else []),
                "msg": message,
                "type": "import_row",
            }
            for row, column, message in sorted(issues, key=lambda i: i[0])[:MAX_LISTED_ISSUES]
        ]
        rows = sorted({row for row, _, _ in issues})
        shown = ", ".join(str(r) for r in rows[:10]) + (" …" if len(rows) > 10 else "")
        super().__init__(
            f"{what}: nothing was imported; {len(issues)} problem(s) in row(s) {shown}",
            errors=listed,
        )


def read_table(data: bytes, fmt: Format, *, required: Sequence[str]) -> list[SheetRow]:
    """The data rows of a CSV (UTF-8, with or without BOM) or XLSX (first sheet) file.

    Header names are matched case-insensitively and stripped; ``required`` columns must be
    there. Blank rows are skipped. Refuses (422) a file too large, unreadable or without the
    required columns.
    """
    if len(data) > MAX_IMPORT_BYTES:
        raise ValidationFailed(f"the file is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MB")
    raw = list(_csv_rows(data) if fmt == "csv" else _xlsx_rows(data))
    if not raw:
        raise ValidationFailed("the file is empty: row 1 must name the columns")
    header = [h.strip().lower() for h in raw[0]]
    missing = [c for c in required if c not in header]
    if missing:
        raise ValidationFailed(f"row 1 lacks the column(s): {', '.join(missing)}")
    dupes = sorted({h for h in header if h and header.count(h) > 1})
    if dupes:
        raise ValidationFailed(f"row 1 names a column twice: {', '.join(dupes)}")
    rows: list[SheetRow] = []
    for number, values in enumerate(raw[1:], start=2):
        if not any(v.strip() for v in values):
            continue
        if len(rows) >= MAX_IMPORT_ROWS:
            raise ValidationFailed(f"the file has more than {MAX_IMPORT_ROWS} rows")
        cells = {h: (values[i].strip() if i < len(values) else "") for i, h in enumerate(header)}
        rows.append(SheetRow(number, {h: v for h, v in cells.items() if h}))
    return rows


def _csv_rows(data: bytes) -> Iterator[list[str]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationFailed(f"the CSV file is not UTF-8 (byte {exc.start})") from None
    if "\x00" in text:
        raise ValidationFailed("the CSV file contains NUL characters")
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel()  # type: ignore[assignment]
    try:
        yield from csv.reader(io.StringIO(text, newline=""), dialect)
    except csv.Error as exc:
        raise ValidationFailed(f"the CSV file cannot be read: {exc}") from None


def _xlsx_rows(data: bytes) -> Iterator[list[str]]:
    # openpyxl is imported where a workbook is read or written: it costs every server process
    # about 5 MB of memory, and most never see a spreadsheet.
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, ValueError, OSError):
        raise ValidationFailed("the file is not an XLSX workbook") from None
    try:
        sheet = book.worksheets[0] if book.worksheets else None
        if sheet is None:
            return
        for values in sheet.iter_rows(values_only=True):
            yield [_cell_text(v) for v in values]
    finally:
        book.close()


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _safe(value: Cell) -> Cell:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def write_table(fmt: Format, header: Sequence[str], rows: Iterable[Sequence[Cell]]) -> bytes:
    """``rows`` under ``header`` as CSV (UTF-8 with BOM, so spreadsheets read Cyrillic) or XLSX.

    Text that a spreadsheet would evaluate as a formula is prefixed with ``'``.
    """
    if fmt == "csv":
        out = io.StringIO(newline="")
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(header)
        writer.writerows([_safe(c) for c in row] for row in rows)
        return ("\ufeff" + out.getvalue()).encode("utf-8")
    from openpyxl import Workbook  # imported here for the memory: see _xlsx_rows

    book = Workbook(write_only=True)
    sheet = book.create_sheet()
    sheet.append(list(header))
    for row in rows:
        sheet.append([_safe(c) for c in row])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()
