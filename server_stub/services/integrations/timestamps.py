"""The one text form of an instant in what integrations read and store."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_text(when: datetime) -> str:
    """RFC 3339 in UTC with ``Z`` (microseconds only when there are some)."""
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")
