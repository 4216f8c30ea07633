"""Numbers on the wire of the staff API: one rule for what an integer field accepts."""

from __future__ import annotations


def json_integer(value: object) -> object:
    """A JSON integer: ``5`` or ``5.0`` (JSON Schema's integers), never ``true`` or ``"5"``.

    Pydantic's lax ``int`` then refuses a fractional ``5.5``; strict mode would refuse ``5.0``,
    which every JSON Schema client may send for an integer.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be an integer")
    return value
