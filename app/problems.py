"""A server's refusal as a reason in any language, by its stable problem-details ``code``.

The problem's ``detail`` is the server's English; the window and the session log show the code's
own message instead (``problem.<code>`` in the translations), and the detail goes to the log.
"""

from __future__ import annotations

from typing import Final

from app.catalog import N_, Reason

#: A message for each problem-details ``code`` (agent.protocol ErrorCode; a test keeps them
#: in step). Keyed by the code's text so that this module need not import the protocol.
PROBLEM_KEYS: Final = {
    "validation_error": N_("problem.validation_error"),
    "invalid_credentials": N_("problem.invalid_credentials"),
    "totp_required": N_("problem.totp_required"),
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
    "insufficient_points": N_("problem.insufficient_points"),
    "payload_too_large": N_("problem.payload_too_large"),
    "rate_limited": N_("problem.rate_limited"),
    "service_unavailable": N_("problem.service_unavailable"),
    "internal_error": N_("problem.internal_error"),
}


def problem_code(exc: BaseException) -> str | None:
    """The problem-details ``code`` a server's refusal carried, when there was one."""
    code = getattr(exc, "problem_code", None) or getattr(type(exc), "code", None)
    return str(code) if code else None


def problem_reason(exc: BaseException) -> Reason:
    """Why the server refused, from the problem's code (or the HTTP status without one)."""
    code = problem_code(exc)
    if code in PROBLEM_KEYS:
        return Reason(PROBLEM_KEYS[code])
    if code is not None:
        return Reason(N_("problem.unknown_code"), {"code": code})
    status = getattr(exc, "status", None)
    if status:
        return Reason(N_("problem.http_status"), {"status": status})
    return Reason(N_("problem.unreadable"))
