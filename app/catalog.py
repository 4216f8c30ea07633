"""The translation catalogues without Qt, and reasons that carry their translation key.

A lower layer (settings validation, the recipients parser) must not import Qt, yet its reasons
reach the window, which shows them in the user's language. So such a reason is an
:class:`Explained` error: a key of ``resources/translations/<language>.json`` and its fields. Its
message (the CLI, the log, ``str()``) is the English text of the same key, so the English wording
lives once, in ``en.json``; the window formats the key in its own language
(:func:`app.viewmodels.errors.reason_text`).
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("tgflow.ui")


def N_(key: str) -> str:
    """Mark ``key`` as a translation key used indirectly; returns it unchanged."""
    return key


def resource_dir() -> Path:
    """``resources/`` of the repository, or of the PyInstaller bundle when frozen."""
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle is not None:
        return Path(bundle) / "resources"
    return Path(__file__).resolve().parents[1] / "resources"


def translations_dir() -> Path:
    return resource_dir() / "translations"


def load_catalog(language: str, directory: Path | None = None) -> dict[str, str]:
    """The ``key -> text`` table of ``language`` (empty, and logged, when it cannot be read)."""
    path = (directory or translations_dir()) / f"{language}.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.error("the translations %s cannot be read: %s", path, exc)
        return {}
    if not isinstance(raw, dict):
        log.error("the translations %s are not a JSON object", path)
        return {}
    return {str(k): str(v) for k, v in raw.items()}


@functools.cache
def _english() -> Mapping[str, str]:
    return load_catalog("en")


@dataclass(frozen=True)
class Reason:
    """Why something failed, in no language yet: a translation key and its fields.

    A field may itself be a :class:`Reason`; it is put into the text in the same language.
    ``str()`` is the English text.
    """

    key: str
    params: Mapping[str, object] = field(default_factory=dict)

    def __str__(self) -> str:
        return english(self.key, **self.params)


def format_text(catalog: Mapping[str, str], key: str, params: Mapping[str, object]) -> str | None:
    """``catalog[key]`` with its ``{fields}`` filled in (nested reasons from the same catalog);
    ``None`` when the key is missing."""
    text = catalog.get(key)
    if text is None or not params:
        return text
    values = {
        name: (format_text(catalog, value.key, value.params) or value.key)
        if isinstance(value, Reason)
        else value
        for name, value in params.items()
    }
    try:
        return text.format(**values)
    except (KeyError, IndexError, ValueError) as exc:
        log.warning("the translation of %r does not fit its fields: %s", key, exc)
        return text


def english(key: str, /, **params: object) -> str:
    """The English text of ``key`` (the key itself when it is missing)."""
    return format_text(_english(), key, params) or key


class Explained(Exception):
    """An error whose reason is a translation key and its fields (the message: English)."""

    def __init__(self, key: str, /, **params: object) -> None:
        self.why = Reason(key, params)
        super().__init__(str(self.why))

    @property
    def key(self) -> str:
        return self.why.key

    @property
    def params(self) -> Mapping[str, object]:
        return self.why.params

    @property
    def reason(self) -> str:
        return str(self.why)


def os_error_reason(exc: OSError) -> tuple[str, dict[str, object]]:
    """Why a file cannot be used, as a key and its fields (the OS's own text is English)."""
    if isinstance(exc, FileNotFoundError):
        return N_("oserror.not_found"), {}
    if isinstance(exc, PermissionError):
        return N_("oserror.permission"), {}
    if isinstance(exc, IsADirectoryError):
        return N_("oserror.is_directory"), {}
    if exc.errno == errno.ENOSPC:
        return N_("oserror.no_space"), {}
    return N_("oserror.other"), {"reason": exc.strerror or str(exc)}


#: The log record attribute that holds a story line's :class:`Reason` (``app/htmllog.py`` keeps
#: it in the session log, so that the Logs panel shows the line in the window's language).
STORY_ATTRIBUTE = "tgflow_story"


def story(
    logger: logging.Logger, key: str, /, *, level: int = logging.INFO, **params: object
) -> None:
    """Log a line of the session's story: its English text, with its key and fields kept.

    The fields are kept as text (they are written into the session log).
    """
    why = Reason(key, {name: _storable(value) for name, value in params.items()})
    logger.log(level, "%s", why, extra={STORY_ATTRIBUTE: why})


def _storable(value: object) -> object:
    return value if isinstance(value, Reason) else str(value)


def encode_params(params: Mapping[str, object]) -> str:
    """``params`` as JSON text (a nested :class:`Reason` as ``{"key": …, "params": …}``)."""

    def plain(value: object) -> object:
        if isinstance(value, Reason):
            return {"key": value.key, "params": {k: plain(v) for k, v in value.params.items()}}
        return str(value)

    return json.dumps({k: plain(v) for k, v in params.items()}, ensure_ascii=False)


def decode_params(text: str) -> dict[str, object] | None:
    """The fields :func:`encode_params` wrote (``None`` when ``text`` is not such JSON)."""

    def value(raw: object) -> object:
        if isinstance(raw, dict) and isinstance(raw.get("key"), str):
            nested = raw.get("params")
            fields = {k: value(v) for k, v in nested.items()} if isinstance(nested, dict) else {}
            return Reason(raw["key"], fields)
        return str(raw)

    try:
        raw = json.loads(text)
    except ValueError:
        return None
    if not isinstance(raw, dict):
        return None
    return {str(k): value(v) for k, v in raw.items()}
