"""The rules for the portal's client and contract fields, shared by the HTTP edge (pydantic
constraints built from these constants) and the CSV/XLSX import (which checks cells with the
same functions), so a value is valid or not whichever way it arrives."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Final

from email_validator import EmailNotValidError, validate_email

from ...portal_models import CLIENT_STATUSES, DEPLOYMENTS
from .inn import inn_problem

LEGAL_NAME_MAX: Final = 300
#: A segment is a short code the UI labels (``enterprise``, ``smb``, ``government``…).
SEGMENT_PATTERN: Final = r"^[a-z0-9][a-z0-9_-]{0,63}$"
PHONE_PATTERN: Final = r"^\+?[0-9][0-9 ()-]{4,30}$"
CONTACT_NAME_MAX: Final = 200
CONTACT_POSITION_MAX: Final = 200
EMAIL_MAX: Final = 320
MAX_CONTACTS: Final = 20
CURRENCY_PATTERN: Final = r"^[A-Z]{3}$"
#: Largest amount in minor units: 10¹³ roubles or dollars, far below the 64-bit column's limit
#: and exact as a JSON number (a double holds integers exactly up to 2⁵³).
MAX_AMOUNT_MINOR: Final = 10**15
CONTRACT_NUMBER_MAX: Final = 64
SLA_MAX: Final = 200
DOCUMENT_TITLE_MAX: Final = 200
DOCUMENT_URL_MAX: Final = 2000
MAX_DOCUMENTS: Final = 20
#: Statuses staff set on a contract, in the order a contract moves through them. ``paid`` (a
#: value of the column too) is a payment's business, see ``contracts.py``.
STAFF_CONTRACT_STATUSES: Final = ("draft", "signed", "closed")

#: The same rules as patterns, for the request schemas (so a client knows them up front):
#: one line without control characters (Unicode category Cc: U+0000–001F, U+007F–009F)…
_CC = r"\x00-\x1f\x7f-\x9f"
LINE_PATTERN: Final = rf"^[^{_CC}]*$"
#: …and with at least one character that is not a space (a name, a number, a title);
NAME_PATTERN: Final = rf"^[^{_CC}]*[^\s{_CC}][^{_CC}]*$"
#: text over several lines (a note): tabs and line breaks allowed.
_CC_BUT_LINES = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
TEXT_PATTERN: Final = rf"^[^{_CC_BUT_LINES}]*[^\s{_CC}][^{_CC_BUT_LINES}]*$"
#: A link to a document: https, a host, no user name or password, no spaces or controls.
HTTPS_URL_PATTERN: Final = rf"^https://[^\s/@{_CC}]+(/[^\s{_CC}]*)?$"

_SEGMENT = re.compile(SEGMENT_PATTERN)
_PHONE = re.compile(PHONE_PATTERN)


def search_key(text: str) -> str:
    """What a name is searched by: NFKC, casefolded, ``ё`` as ``е``.

    SQLite's ``lower()`` folds ASCII only, so the key is computed here and stored
    (``clients.search_name``); both databases then compare it the same way.
    """
    return unicodedata.normalize("NFKC", text).casefold().replace("ё", "е")


def clean_text(text: str) -> str:
    """Whitespace runs collapsed, ends stripped (names arrive from spreadsheets)."""
    return " ".join(text.split())


def has_control_characters(text: str) -> bool:
    """Whether ``text`` holds a C0/C1 control character (what the patterns above refuse)."""
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def legal_name_problem(name: str) -> str | None:
    if not name:
        return "the legal name is empty"
    if len(name) > LEGAL_NAME_MAX:
        return f"the legal name is longer than {LEGAL_NAME_MAX} characters"
    if has_control_characters(name):
        return "the legal name contains control characters"
    return None


def segment_problem(segment: str) -> str | None:
    if not _SEGMENT.fullmatch(segment):
        return "a segment is a code of lowercase letters, digits, _ and - (at most 64)"
    return None


def deployment_problem(deployment: str) -> str | None:
    if deployment not in DEPLOYMENTS:
        return f"deployment is one of {', '.join(DEPLOYMENTS)}"
    return None


def status_problem(status: str) -> str | None:
    if status not in CLIENT_STATUSES:
        return f"status is one of {', '.join(CLIENT_STATUSES)}"
    return None


def normal_email(email: str) -> str:
    """``email`` checked for syntax (no DNS) and normalised; ValueError when it is no address."""
    if len(email) > EMAIL_MAX:
        raise ValueError("the e-mail address is too long")
    try:
        return validate_email(email, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"not an e-mail address: {exc}") from None


@dataclass(frozen=True)
class Contact:
    """A contact person of a client (stored as JSON in ``clients.contacts``)."""

    name: str
    email: str | None = None
    phone: str | None = None
    position: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "email": self.email,
            "phone": self.phone,
            "position": self.position,
        }


def contact_problems(contact: Contact) -> list[tuple[str, str]]:
    """(field, problem) for each field of ``contact`` that is not valid."""
    problems: list[tuple[str, str]] = []
    if not contact.name or len(contact.name) > CONTACT_NAME_MAX:
        problems.append(("name", f"a contact's name is 1 to {CONTACT_NAME_MAX} characters"))
    elif has_control_characters(contact.name):
        problems.append(("name", "a contact's name contains control characters"))
    if contact.email is not None:
        try:
            normal_email(contact.email)
        except ValueError as exc:
            problems.append(("email", str(exc)))
    if contact.phone is not None and not _PHONE.fullmatch(contact.phone):
        problems.append(("phone", "a phone number is digits, spaces, ( ) and -, + in front"))
    if contact.position is not None and (
        len(contact.position) > CONTACT_POSITION_MAX or has_control_characters(contact.position)
    ):
        problems.append(("position", f"a position is at most {CONTACT_POSITION_MAX} characters"))
    return problems


def normal_contact(contact: Contact) -> Contact:
    """``contact`` with its e-mail normalised (it must be valid, see :func:`contact_problems`)."""
    email = normal_email(contact.email) if contact.email is not None else None
    return Contact(contact.name, email, contact.phone, contact.position)


__all__ = [
    "Contact",
    "contact_problems",
    "inn_problem",
    "normal_contact",
    "search_key",
]
