"""The window's Qt style sheet (``resources/style.qss``)."""

from __future__ import annotations

import logging

from app.catalog import resource_dir

log = logging.getLogger("tgflow.ui")


def load_style_sheet() -> str:
    """The style sheet's text; empty (the platform's look) when it cannot be read."""
    path = resource_dir() / "style.qss"
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        log.warning("the style sheet %s cannot be read: %s", path, exc)
        return ""
