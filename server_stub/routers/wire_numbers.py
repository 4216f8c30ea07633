"""Numbers on the wire of the staff API: one rule for what an integer field accepts (its home
is the wire contract, :func:`agent.protocol.json_integer`)."""

from __future__ import annotations

from agent.protocol.core import json_integer

__all__ = ["json_integer"]
