"""Exceptions into short messages a user can act on (a widget never shows a traceback)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from app.i18n import N_, Translator

if TYPE_CHECKING:
    from app.config import SettingsError

log = logging.getLogger("tgflow.ui")

#: Longest reason quoted from an exception; the log keeps the whole of it.
_MAX_REASON = 300


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    text = " ".join(str(text).split())
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 1] + "…"


#: A message for each problem-details ``code`` (agent/protocol.py ErrorCode; a test keeps them
#: in step). Keyed by the code's text so that this module need not import the protocol.
PROBLEM_KEYS: Final = {
    "validation_error": N_("problem.validation_error"),
    "invalid_credentials": N_("problem.invalid_credentials"),
    "token_invalid": N_("problem.token_invalid"),
    "token_expired": N_("problem.token_expired"),
    "forbidden": N_("problem.forbidden"),
    "device_limit": N_("problem.device_limit"),
    "license_inactive": N_("problem.license_inactive"),
    "not_found": N_("problem.not_found"),
    "method_not_allowed": N_("problem.method_not_allowed"),
    "already_exists": N_("problem.already_exists"),
    "idempotency_conflict": N_("problem.idempotency_conflict"),
    "reservation_conflict": N_("problem.reservation_conflict"),
    "reservation_expired": N_("problem.reservation_expired"),
    "quota_exceeded": N_("problem.quota_exceeded"),
    "payload_too_large": N_("problem.payload_too_large"),
    "rate_limited": N_("problem.rate_limited"),
    "service_unavailable": N_("problem.service_unavailable"),
    "internal_error": N_("problem.internal_error"),
}


def problem_code(exc: BaseException) -> str | None:
    """The problem-details ``code`` a server's refusal carried, when there was one."""
    code = getattr(exc, "problem_code", None) or getattr(type(exc), "code", None)
    return str(code) if code else None


def problem_text(exc: BaseException, tr: Translator) -> str:
    """Why a server refused, in the window's language, from the problem's stable ``code``.

    The problem's ``detail`` is the server's English; it goes to the log, not to the window.
    """
    code = problem_code(exc)
    if code in PROBLEM_KEYS:
        return tr.tr(PROBLEM_KEYS[code])
    status = getattr(exc, "status", None)
    if code is not None:
        return tr.tr("problem.unknown_code", code=code)
    if status:
        return tr.tr("problem.http_status", status=status)
    return tr.tr("problem.unreadable")


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
    from app.recipients import RecipientFileError
    from app.transports import base as transport

    if isinstance(exc, SettingsError_):
        return describe_settings_error(exc, tr)
    if isinstance(exc, RecipientFileError):
        return tr.tr(
            "error.recipients_file", file=exc.path.name, reason=tr.tr(exc.key, **exc.params)
        )
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
    if isinstance(exc, core.BroadcastBusy):
        return tr.tr("error.broadcast_busy", reason=tr.reason(exc.why))
    if isinstance(exc, core.LicenseUnusable):
        return tr.tr("error.license_unusable", reason=tr.reason(exc.why))
    if isinstance(exc, transport.LoginEmailRequired):
        return tr.tr("error.telegram_login_email")
    if isinstance(exc, transport.TextRejected):
        return tr.tr("error.telegram_text", reason=_reason(exc))
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
