"""Exceptions into short messages a user can act on (a widget never shows a traceback)."""

from __future__ import annotations

import logging

from app.i18n import Translator

log = logging.getLogger("tgflow.ui")

#: Longest reason quoted from an exception; the log keeps the whole of it.
_MAX_REASON = 300


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    text = " ".join(str(text).split())
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 1] + "…"


def describe_error(exc: BaseException, tr: Translator, *, what: str = "") -> str:
    """A one-paragraph message for ``exc`` in the window's language."""
    # Imported here: the error types pull in the agent and the core, which the window does not
    # need to be shown.
    from agent import errors as agent_errors
    from app import core
    from app.config import SettingsError
    from app.recipients import RecipientFileError
    from app.transports import base as transport

    if isinstance(exc, SettingsError):
        # Its text names the file, the [section] key and the reason: exactly what to show.
        return str(exc)
    if isinstance(exc, RecipientFileError):
        return tr.tr("error.recipients_file", file=exc.path.name, reason=exc.reason)
    if isinstance(exc, agent_errors.InvalidCredentials):
        return tr.tr("error.invalid_credentials")
    if isinstance(exc, agent_errors.DeviceLimit):
        return tr.tr("error.device_limit")
    if isinstance(exc, agent_errors.TamperDetected):
        return tr.tr("error.tamper", reason=_reason(exc))
    if isinstance(exc, agent_errors.Offline):
        return tr.tr("error.offline")
    if isinstance(exc, agent_errors.LicenseInactive):
        return tr.tr("error.license_inactive")
    if isinstance(exc, agent_errors.QuotaExceeded):
        return tr.tr("error.quota_exceeded")
    # A pin problem is a settings problem: "sign in again" would never help.
    if isinstance(exc, agent_errors.UnpinnedKey):
        return tr.tr("error.key_not_pinned", kid=exc.kid, pin=exc.pin)
    if isinstance(exc, agent_errors.UntrustedKey):
        return tr.tr("error.key_unknown")
    if isinstance(exc, agent_errors.TokenRejected):
        return tr.tr("error.session_rejected")
    if isinstance(exc, agent_errors.LicenseError):
        return tr.tr("error.license", reason=_reason(exc))
    if isinstance(exc, core.NotSignedIn):
        return tr.tr("error.not_signed_in")
    if isinstance(exc, core.BroadcastBusy):
        return tr.tr("error.broadcast_busy", reason=_reason(exc))
    if isinstance(exc, core.LicenseUnusable):
        return tr.tr("error.license_unusable", reason=_reason(exc))
    if isinstance(exc, transport.LoginError):
        return tr.tr("error.telegram_login", reason=_reason(exc))
    if isinstance(exc, transport.TransportError):
        return tr.tr("error.telegram", reason=_reason(exc))
    if isinstance(exc, OSError):
        return tr.tr("error.file", reason=exc.strerror or _reason(exc))
    if isinstance(exc, KeyError):
        return tr.tr("error.not_found")
    if isinstance(exc, ValueError | RuntimeError):
        return tr.tr("error.generic", reason=_reason(exc))
    log.error("%s failed unexpectedly", what or "a task", exc_info=exc)
    return tr.tr("error.unexpected", kind=type(exc).__name__)
