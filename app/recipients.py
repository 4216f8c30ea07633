"""Recipients the user supplies: from a CSV file or pasted text, checked and normalised.

A recipient is a Telegram ``@username`` (also written as a bare ``name`` or a ``t.me/name``
link), a phone number ``+`` and 7 to 15 digits, or a numeric user id. Each is reduced to one
normal form (``@username`` in lower case, ``+digits``, or the id's digits) so that the same person
written twice is counted once. Nothing here raises on bad input: every value that is not a
recipient becomes a :class:`RecipientProblem` naming its line, and the import goes on.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from app.catalog import N_, Explained, english, os_error_reason
from app.transports.base import MAX_USER_ID

#: At most this many recipients are imported; the rest of the input is refused with a problem.
MAX_RECIPIENTS: Final = 100_000
#: At most this many problems are listed; the others are only counted.
MAX_LISTED_PROBLEMS: Final = 1000
#: A larger file is refused before it is read.
MAX_FILE_BYTES: Final = 64 * 1024 * 1024
#: Longer values are shortened in problems (the reader needs to recognise them, not all of them).
_SHOWN_CHARS: Final = 100
#: The largest user id accepted: the largest kurigram can address (2^40 − 1; above it kurigram
#: cannot tell a user from a chat and raises a bare ValueError mid-run).
_MAX_USER_ID: Final = MAX_USER_ID

_USERNAME_CHARS = re.compile(r"[A-Za-z0-9_]+")
_PHONE_CHARS = re.compile(r"[0-9\s()\-.]+")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# Characters that copying from a chat or a web page leaves around a name.
_INVISIBLE = str.maketrans(dict.fromkeys("\u200b\u200c\u200d\u200e\u200f\u2060\ufeff"))
_LINK_PREFIXES: Final = ("t.me/", "telegram.me/")
# Header names of the column holding the recipients, in order of preference: an ``id`` column
# is often a row number, so a ``username`` or ``phone`` column beside it is taken first.
_COLUMN_NAMES: Final = (
    "recipient",
    "recipients",
    "username",
    "phone",
    "phone_number",
    "user",
    "user_id",
    "id",
)
_PHONE_COLUMNS: Final = frozenset({"phone", "phone_number"})
# The opt-out convention of a CSV with a header: a column ``opt_out`` (or ``opted_out``,
# ``unsubscribed``) holding a yes-value, or a column ``status`` holding an opt-out word, marks
# the row's recipient as opted out: not imported, and put on the suppression list.
_OPT_OUT_COLUMNS: Final = ("opt_out", "opted_out", "optout", "unsubscribed")
_STATUS_COLUMNS: Final = ("status",)
_YES: Final = frozenset({"1", "yes", "y", "true", "x", "да", "д"})
_OPT_OUT_STATUSES: Final = frozenset(
    {"opt_out", "opted_out", "opt-out", "opted-out", "optout", "unsubscribed", "stop", "blocked"}
)


@dataclass(frozen=True)
class RecipientProblem:
    """A value that was not imported: its line in the source (1-based), the value and why.

    ``reason`` is English; ``key`` and ``params`` give it in any language (``app/catalog.py``).
    """

    line: int
    value: str
    key: str
    params: Mapping[str, object] = field(default_factory=dict)

    @property
    def reason(self) -> str:
        return english(self.key, **self.params)

    def __str__(self) -> str:
        return f"line {self.line}: {self.value!r}: {self.reason}"


@dataclass(frozen=True)
class RecipientImport:
    """The outcome of an import.

    ``recipients`` are normalised and unique, in the order first seen; ``duplicates`` counts the
    values dropped because they repeat one already imported; ``errors`` lists the values that are
    not recipients (at most :data:`MAX_LISTED_PROBLEMS`; ``unlisted_errors`` counts the rest).
    """

    recipients: tuple[str, ...]
    duplicates: int
    errors: tuple[RecipientProblem, ...]
    unlisted_errors: int = 0
    #: Recipients a CSV marked as opted out (its ``opt_out`` or ``status`` column): never in
    #: :attr:`recipients`, to be put on the suppression list.
    opted_out: tuple[str, ...] = ()


class RecipientFileError(Explained):
    """A recipients file cannot be read as text: the file, and why (a translation key)."""

    def __init__(self, path: Path, key: str, /, **params: object) -> None:
        """Name ``path`` and why it cannot be used."""
        super().__init__(key, **params)
        self.path = path

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class InvalidRecipient(Explained, ValueError):
    """A value that is not a recipient; ``str()`` says why in English, ``key`` in any language."""


# --- one value ----------------------------------------------------------------------------------


def _username(name: str) -> str:
    if not _USERNAME_CHARS.fullmatch(name):
        raise InvalidRecipient(N_("recipients.reason.username_chars"))
    if not 5 <= len(name) <= 32:
        raise InvalidRecipient(N_("recipients.reason.username_length"), length=len(name))
    if not name[0].isalpha():
        raise InvalidRecipient(N_("recipients.reason.username_start"))
    if name.endswith("_"):
        raise InvalidRecipient(N_("recipients.reason.username_end"))
    if "__" in name:
        raise InvalidRecipient(N_("recipients.reason.username_underscores"))
    return "@" + name.lower()


def _phone(number: str) -> str:
    digits = re.sub(r"[\s()\-.]", "", number)
    if not (digits.isascii() and digits.isdigit() and 7 <= len(digits) <= 15):
        raise InvalidRecipient(N_("recipients.reason.phone"))
    return "+" + digits


def _link_target(value: str) -> str | None:
    """The path of a ``t.me`` link, or ``None`` when ``value`` is not one."""
    lowered = value.lower()
    for scheme in ("https://", "http://"):
        if lowered.startswith(scheme):
            value, lowered = value[len(scheme) :], lowered[len(scheme) :]
            break
    if lowered.startswith("www."):
        value, lowered = value[4:], lowered[4:]
    for prefix in _LINK_PREFIXES:
        if lowered.startswith(prefix):
            return re.split(r"[?#]", value[len(prefix) :], maxsplit=1)[0].rstrip("/")
    return None


def normalise_recipient(value: str, *, phone_column: bool = False) -> str:
    """The normal form of one recipient; raise :class:`InvalidRecipient` saying why not.

    ``phone_column``: the value comes from a CSV column named ``phone``, where a number written
    without its ``+`` is taken as a phone number rather than as a user id.
    """
    text = value.translate(_INVISIBLE).strip()
    if not text:
        raise InvalidRecipient(N_("recipients.reason.empty"))
    if text.startswith("+"):
        return _phone(text[1:])
    if text.startswith("@"):
        return _username(text[1:])
    if phone_column and _PHONE_CHARS.fullmatch(text):
        return _phone(text)
    target = _link_target(text)
    if target is not None:
        if target.startswith("+") and target[1:].isdigit():
            return _phone(target[1:])
        if target.startswith(("+", "joinchat/")):
            raise InvalidRecipient(N_("recipients.reason.invite_link"))
        if "/" in target or not target:
            raise InvalidRecipient(N_("recipients.reason.not_profile_link"))
        return _username(target)
    if text.isascii() and text.isdigit():
        user_id = int(text)
        if not 0 < user_id <= _MAX_USER_ID:
            raise InvalidRecipient(N_("recipients.reason.user_id"), max=_MAX_USER_ID)
        return str(user_id)
    if text.startswith("-") and text[1:].isascii() and text[1:].isdigit():
        raise InvalidRecipient(N_("recipients.reason.negative_id"))
    if _PHONE_CHARS.fullmatch(text) and sum(c.isdigit() for c in text) >= 7:
        raise InvalidRecipient(N_("recipients.reason.phone_without_plus"))
    if _USERNAME_CHARS.fullmatch(text):
        return _username(text)
    raise InvalidRecipient(N_("recipients.reason.unknown"))


# --- collecting ---------------------------------------------------------------------------------


@dataclass
class _Collector:
    seen: dict[str, None] = field(default_factory=dict)
    duplicates: int = 0
    errors: list[RecipientProblem] = field(default_factory=list)
    unlisted_errors: int = 0
    full: bool = False
    opted_out: dict[str, None] = field(default_factory=dict)

    def problem(self, line: int, value: str, key: str, **params: object) -> None:
        if len(self.errors) < MAX_LISTED_PROBLEMS:
            shown = value if len(value) <= _SHOWN_CHARS else value[: _SHOWN_CHARS - 1] + "…"
            self.errors.append(RecipientProblem(line, shown, key, params))
        else:
            self.unlisted_errors += 1

    def add(
        self, line: int, value: str, *, phone_column: bool = False, opted_out: bool = False
    ) -> None:
        """Import ``value`` found on ``line``; sets :attr:`full` once the cap is passed."""
        try:
            recipient = normalise_recipient(value, phone_column=phone_column)
        except InvalidRecipient as exc:
            self.problem(line, value.strip(), exc.key, **exc.params)
            return
        if opted_out or recipient in self.opted_out:
            # An opt-out anywhere in the list wins over the same person listed as a recipient.
            self.opted_out[recipient] = None
            self.seen.pop(recipient, None)
        elif recipient in self.seen:
            self.duplicates += 1
        elif len(self.seen) >= MAX_RECIPIENTS:
            self.problem(
                line, value.strip(), N_("recipients.reason.too_many"), limit=MAX_RECIPIENTS
            )
            self.full = True
        else:
            self.seen[recipient] = None

    def result(self) -> RecipientImport:
        return RecipientImport(
            recipients=tuple(self.seen),
            duplicates=self.duplicates,
            errors=tuple(self.errors),
            unlisted_errors=self.unlisted_errors,
            opted_out=tuple(self.opted_out),
        )


# --- pasted text --------------------------------------------------------------------------------


def _line_values(line: str) -> Iterator[str]:
    for piece in re.split(r"[,;]", line):
        piece = piece.translate(_INVISIBLE).strip()
        if not piece:
            continue
        # "+7 (999) 123-45-67" is one phone number, not four values; so is "8 (999) 123-45-67",
        # which is then reported as a phone number without its country code.
        digits_only = _PHONE_CHARS.fullmatch(piece.removeprefix("+"))
        if digits_only and (piece.startswith("+") or re.search(r"[()]|\d-\d", piece)):
            yield piece
        else:
            yield from piece.split()


def parse_recipients_text(text: str) -> RecipientImport:
    """Recipients pasted by the user: one per line, or separated by commas or spaces."""
    collector = _Collector()
    for number, line in enumerate(_LINE_BREAK.split(text.removeprefix("\ufeff")), start=1):
        for value in _line_values(line):
            collector.add(number, value)
            if collector.full:
                return collector.result()
    return collector.result()


# --- CSV ----------------------------------------------------------------------------------------


def _delimiter(text: str) -> str:
    sample = text[: 64 * 1024]
    if len(sample) < len(text) and "\n" in sample:
        sample = sample[: sample.rindex("\n")]
    try:
        sniffed = csv.Sniffer().sniff(sample, delimiters=",;\t").delimiter
    except csv.Error:
        sniffed = ""
    if sniffed in (",", ";", "\t"):
        return sniffed
    first = next((line for line in _LINE_BREAK.split(sample) if line.strip()), "")
    counts = {delimiter: first.count(delimiter) for delimiter in (";", "\t", ",")}
    best = max(counts, key=lambda delimiter: counts[delimiter])
    return best if counts[best] else ","


def _header_column(row: list[str]) -> int | None:
    names = [cell.translate(_INVISIBLE).strip().lower() for cell in row]
    for name in _COLUMN_NAMES:
        if name in names:
            return names.index(name)
    return None


def _NEVER_OPTED_OUT(_row: list[str]) -> bool:
    return False


def _opt_out_test(row: list[str]) -> Callable[[list[str]], bool]:
    """From a header row: whether a data row marks its recipient as opted out."""
    names = [cell.translate(_INVISIBLE).strip().lower() for cell in row]

    def cell(data: list[str], index: int) -> str:
        return data[index].strip().lower() if index < len(data) else ""

    flags = [names.index(n) for n in _OPT_OUT_COLUMNS if n in names]
    statuses = [names.index(n) for n in _STATUS_COLUMNS if n in names]
    return lambda data: (
        any(cell(data, i) in _YES for i in flags)
        or any(cell(data, i) in _OPT_OUT_STATUSES for i in statuses)
    )


def parse_recipients_csv(text: str) -> RecipientImport:
    """Recipients from CSV text, one per row.

    The delimiter (``,``, ``;`` or tab) is sniffed. If the first row names a column
    ``recipient``, ``username``, ``phone``, ``user`` or ``id`` (any case), it is a header and that
    column is read; otherwise every row is data and the first column is read. Blank rows are
    skipped; a row whose recipient cell is empty is reported. With a header, a row whose
    ``opt_out`` column says yes (``1``, ``yes``, ``true``, ``x``, ``да``) or whose ``status``
    column says ``opted_out``/``unsubscribed``/``stop``/``blocked`` is an opt-out
    (:attr:`RecipientImport.opted_out`).
    """
    text = text.removeprefix("\ufeff")
    delimiter = _delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    collector = _Collector()
    column: int | None = None
    column_name: str | None = None
    phone_column = False
    opted_out: Callable[[list[str]], bool] = _NEVER_OPTED_OUT
    previous_end = 0
    while True:
        start = previous_end + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            collector.problem(start, "", N_("recipients.reason.bad_csv"), detail=str(exc))
            if reader.line_num <= previous_end:
                break  # the reader made no progress; what follows cannot be read
            previous_end = reader.line_num
            continue
        previous_end = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if column is None:
            header = _header_column(row)
            column = header if header is not None else 0
            if header is not None:
                column_name = row[header].strip()
                phone_column = column_name.lower() in _PHONE_COLUMNS
                opted_out = _opt_out_test(row)
                continue
        if column >= len(row) or not row[column].strip():
            if column_name is None:
                collector.problem(start, delimiter.join(row), N_("recipients.reason.empty_first"))
            else:
                collector.problem(
                    start,
                    delimiter.join(row),
                    N_("recipients.reason.empty_column"),
                    column=column_name,
                )
            continue
        collector.add(start, row[column], phone_column=phone_column, opted_out=opted_out(row))
        if collector.full:
            break
    return collector.result()


# --- files --------------------------------------------------------------------------------------


def _decode(data: bytes, path: Path) -> str:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"  # Excel's "Unicode text"
    else:
        encoding = "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise RecipientFileError(
            path,
            N_("recipients.file.not_text"),
            encoding=encoding.upper().removesuffix("-SIG"),
            byte=f"{data[exc.start]:#04x}",
            offset=exc.start,
        ) from None


def load_recipients_file(
    path: Path, *, kind: Literal["auto", "csv", "text"] = "auto"
) -> RecipientImport:
    """Recipients from the file at ``path``: CSV (``kind="csv"``, or a ``.csv``/``.tsv`` name
    when ``"auto"``) or text. The file is UTF-8 with or without a BOM (or UTF-16 with a BOM).

    Raises :class:`RecipientFileError` naming the file when it cannot be read or decoded.
    """
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        key, params = os_error_reason(exc)
        raise RecipientFileError(path, key, **params) from None
    if len(data) > MAX_FILE_BYTES:
        raise RecipientFileError(
            path, N_("recipients.file.too_large"), mib=MAX_FILE_BYTES // (1024 * 1024)
        )
    text = _decode(data, path)
    if kind == "csv" or (kind == "auto" and path.suffix.lower() in (".csv", ".tsv")):
        return parse_recipients_csv(text)
    return parse_recipients_text(text)
