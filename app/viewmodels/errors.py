"""Exceptions into short messages a user can act on (a widget never shows a traceback)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from app.i18n import Translator

if TYPE_CHECKING:
    from app.config import SettingsError

log = logging.getLogger("tgflow.ui")

#: Longest reason quoted from an exception; the log keeps the whole of it.
_MAX_REASON = 300


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    text = " ".join(str(text).split())
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 1] + "…"


def problem_text(exc: BaseException, tr: Translator) -> str:
    """Why a server refused, in the window's language (see :func:`app.problems.problem_reason`)."""
    from app.problems import problem_reason

    return tr.reason(problem_reason(exc))


def describe_settings_error(exc: SettingsError, tr: Translator) -> str:
    """Each problem: its file, line and ``[section] key``, and why, in the window's language."""
    lines = [
        tr.tr("settings.problems.one")
        if len(exc.problems) == 1
        else tr.tr("settings.problems.many", count=len(exc.problems))
    ]
    for problem in exc.problems:
        where = tr.tr("settings.problems.no_file") if problem.file is None else str(problem.file)
        if problem.line is not None:
            where += tr.tr("settings.problems.line", line=problem.line)
        if problem.section is not None:
            where += f": [{problem.section}]"
            if problem.key is not None:
                where += f" {problem.key}"
        lines.append(f"  {where}: {tr.reason(problem.why)}")
    return "\n".join(lines)


def describe_error(exc: BaseException, tr: Translator, *, what: str = "") -> str:
    """A one-paragraph message for ``exc`` in the window's language."""
    # Imported here: the error types pull in the agent and the core, which the window does not
    # need to be shown.
    from agent import errors as agent_errors
    from app import core
    from app.config import SettingsError as SettingsError_
    from app.license_file import LicenseFileRefused
    from app.recipients import RecipientFileError
    from app.transports import base as transport

    from .telegram_text import telegram_text

    if isinstance(exc, SettingsError_):
        return describe_settings_error(exc, tr)
    if isinstance(exc, RecipientFileError):
        return tr.tr(
            "error.recipients_file", file=exc.path.name, reason=tr.tr(exc.key, **exc.params)
        )
    if isinstance(exc, LicenseFileRefused):
        return tr.reason(exc.why)
    if isinstance(exc, agent_errors.InvalidCredentials):
        return tr.tr("error.invalid_credentials")
    if isinstance(exc, agent_errors.DeviceLimit):
        return tr.tr("error.device_limit")
    if isinstance(exc, agent_errors.TamperDetected):
        log.warning("the license data cannot be trusted: %s", exc)
        return tr.tr("error.tamper")
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
        log.warning("the license server refused: %s", exc)
        return tr.tr("error.license", reason=problem_text(exc, tr))
    if isinstance(exc, core.NotSignedIn):
        return tr.tr("error.not_signed_in")
    if isinstance(exc, core.PurchaseRefused):
        return tr.reason(exc.why)
    if isinstance(exc, core.BroadcastBusy):
        return tr.tr("error.broadcast_busy", reason=tr.reason(exc.why))
    if isinstance(exc, core.LicenseUnusable):
        return tr.tr("error.license_unusable", reason=tr.reason(exc.why))
    # Our own format check: Telegram was never asked, so "Telegram refused" would be untrue.
    if isinstance(exc, transport.InvalidPhone):
        return tr.tr("error.phone_invalid")
    if isinstance(exc, transport.LoginEmailRequired):
        return tr.tr("error.telegram_login_email")
    if isinstance(exc, transport.TextRejected):
        return tr.tr("error.telegram_text", reason=telegram_text(_reason(exc), tr))
    if isinstance(exc, transport.LoginError):
        return tr.tr("error.telegram_login", reason=telegram_text(_reason(exc), tr))
    if isinstance(exc, transport.TransportError):
        return tr.tr("error.telegram", reason=telegram_text(_reason(exc), tr))
    if isinstance(exc, OSError):
        return tr.tr("error.file", reason=exc.strerror or _reason(exc))
    if isinstance(exc, KeyError):
        return tr.tr("error.not_found")
    if isinstance(exc, ValueError | RuntimeError):
        return tr.tr("error.generic", reason=_reason(exc))
    log.error("%s failed unexpectedly", what or "a task", exc_info=exc)
    return tr.tr("error.unexpected", kind=type(exc).__name__)
