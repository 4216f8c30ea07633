"""Telegram's and the worker's reasons in the window's language.

The transport, the anti-spam worker and the broadcast worker give their reasons as text: a
Telegram error id (``USERNAME_NOT_OCCUPIED``), an id with an English explanation
(``USER_RESTRICTED: …``), or one of a few fixed English forms (``FloodWait 42 s``). Those texts
are also stored (``accounts.json``, the broadcast store) and logged, so they stay as they are;
the window maps them here, by their stable part (the error id, the form), to its own language.
A Telegram error id the table does not know is shown as the id, inside a sentence of the
window's language: it is Telegram's stable code, and what support asks for.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from app.i18n import N_, Translator

#: Telegram error ids with a message of their own (``telegram.error.<id>``).
TELEGRAM_ERROR_KEYS: Final = {
    "AUTH_KEY_UNREGISTERED": N_("telegram.error.AUTH_KEY_UNREGISTERED"),
    "CHAT_WRITE_FORBIDDEN": N_("telegram.error.CHAT_WRITE_FORBIDDEN"),
    "INPUT_USER_DEACTIVATED": N_("telegram.error.INPUT_USER_DEACTIVATED"),
    "MESSAGE_EMPTY": N_("telegram.error.MESSAGE_EMPTY"),
    "MESSAGE_TOO_LONG": N_("telegram.error.MESSAGE_TOO_LONG"),
    "NO_SESSION": N_("telegram.error.NO_SESSION"),
    "PEER_FLOOD": N_("telegram.error.PEER_FLOOD"),
    "PEER_ID_INVALID": N_("telegram.error.PEER_ID_INVALID"),
    "PHONE_NUMBER_BANNED": N_("telegram.error.PHONE_NUMBER_BANNED"),
    "SESSION_REVOKED": N_("telegram.error.SESSION_REVOKED"),
    "SESSION_UNREADABLE": N_("telegram.error.SESSION_UNREADABLE"),
    "USERNAME_INVALID": N_("telegram.error.USERNAME_INVALID"),
    "USERNAME_NOT_OCCUPIED": N_("telegram.error.USERNAME_NOT_OCCUPIED"),
    "USER_BANNED_IN_CHANNEL": N_("telegram.error.USER_BANNED_IN_CHANNEL"),
    "USER_DEACTIVATED": N_("telegram.error.USER_DEACTIVATED"),
    "USER_DEACTIVATED_BAN": N_("telegram.error.USER_DEACTIVATED_BAN"),
    "USER_IS_BLOCKED": N_("telegram.error.USER_IS_BLOCKED"),
    "USER_PRIVACY_RESTRICTED": N_("telegram.error.USER_PRIVACY_RESTRICTED"),
    "USER_RESTRICTED": N_("telegram.error.USER_RESTRICTED"),
    "YOU_BLOCKED_USER": N_("telegram.error.YOU_BLOCKED_USER"),
}

_ERROR_ID: Final = re.compile(r"^([A-Z0-9][A-Z0-9_]{2,})(?::\s.*|\s+without .*)?$", re.S)
_Rule = tuple[re.Pattern[str], Callable[[re.Match[str], Translator], str]]


def _wait_kind(kind: str) -> str:
    return "FloodWait" if kind in ("FLOOD_WAIT", "FloodWait") else kind


#: The fixed English forms of app/antispam.py, app/broadcast.py and app/transports/base.py.
_RULES: Final[tuple[_Rule, ...]] = (
    (
        re.compile(r"^(\w+) (\d+) s$"),
        lambda m, tr: tr.tr("telegram.reason.wait", kind=_wait_kind(m[1]), seconds=m[2]),
    ),
    (
        re.compile(r"^(\w+) \((\d+) of (\d+) in a row\): backing off (\d+) s$"),
        lambda m, tr: tr.tr(
            "telegram.reason.backoff", kind=m[1], errors=m[2], limit=m[3], seconds=m[4]
        ),
    ),
    (
        re.compile(r"^PeerFlood \((\d+) consecutive errors\)"),
        lambda m, tr: tr.tr("telegram.reason.excluded_peer_flood", errors=m[1]),
    ),
    (
        re.compile(r"^(\d+) consecutive errors, the last a timeout"),
        lambda m, tr: tr.tr("telegram.reason.excluded_timeouts", errors=m[1]),
    ),
    (
        re.compile(r"^excluded by the user$"),
        lambda m, tr: tr.tr("accounts.exclude.default_reason"),
    ),
    (
        re.compile(r"^(?:\S+: )?timeout, delivery unknown"),
        lambda m, tr: tr.tr("telegram.reason.timeout_unknown"),
    ),
    (
        re.compile(r"^unexpected error, delivery unknown"),
        lambda m, tr: tr.tr("telegram.reason.unexpected_unknown"),
    ),
    (
        re.compile(r"^unexpected error"),
        lambda m, tr: tr.tr("telegram.reason.unexpected"),
    ),
    (
        re.compile(r"^no answer from Telegram while connecting"),
        lambda m, tr: tr.tr("telegram.reason.no_answer_connecting"),
    ),
    (
        re.compile(r"^(?:\S+: )?no answer from Telegram"),
        lambda m, tr: tr.tr("telegram.reason.no_answer"),
    ),
    (
        re.compile(r"^Telegram refused the connection: (.*)$", re.S),
        lambda m, tr: tr.tr("telegram.reason.connection_refused", reason=telegram_text(m[1], tr)),
    ),
    (
        re.compile(r"^PeerFlood: check the account with @SpamBot$"),
        lambda m, tr: tr.tr("notice.peer_flood"),
    ),
    # Login (app/transports/base.py login_error, and both transports).
    (
        re.compile(r"^Telegram asks to wait (\d+) s before the next login attempt$"),
        lambda m, tr: tr.tr("telegram.login.wait", seconds=m[1]),
    ),
    (
        re.compile(r"^no answer from Telegram; check the connection and try again$"),
        lambda m, tr: tr.tr("telegram.reason.no_answer"),
    ),
    (
        re.compile(r"^Telegram refused the login: (.*)$", re.S),
        lambda m, tr: tr.tr("telegram.login.refused", reason=telegram_text(m[1], tr)),
    ),
    (re.compile(r"^wrong code$"), lambda m, tr: tr.tr("telegram.login.wrong_code")),
    (re.compile(r"^wrong password$"), lambda m, tr: tr.tr("telegram.login.wrong_password")),
    (
        re.compile(r"^the code has expired; request a new one$"),
        lambda m, tr: tr.tr("telegram.login.code_expired"),
    ),
    (re.compile(r"^request a code first$"), lambda m, tr: tr.tr("telegram.login.code_first")),
    (
        re.compile(r"^no password was asked for; enter the code first$"),
        lambda m, tr: tr.tr("telegram.login.code_first"),
    ),
    (
        re.compile(r"^Telegram says this phone number is invalid$"),
        lambda m, tr: tr.tr("telegram.login.phone_invalid"),
    ),
    (
        re.compile(r"^this phone number is banned by Telegram$"),
        lambda m, tr: tr.tr("telegram.login.phone_banned"),
    ),
    (
        re.compile(r"^too many login attempts for this number; try again later$"),
        lambda m, tr: tr.tr("telegram.login.too_many"),
    ),
    (
        re.compile(r"^this number has no Telegram account"),
        lambda m, tr: tr.tr("telegram.login.no_account"),
    ),
)


def telegram_text(reason: str, tr: Translator) -> str:
    """``reason`` (a Telegram error id or one of the workers' fixed forms) in the window's
    language; a text of no known form is returned as it is (the user's own words, say)."""
    text = reason.strip()
    for pattern, render in _RULES:
        match = pattern.match(text)
        if match is not None:
            return render(match, tr)
    match = _ERROR_ID.match(text)
    if match is not None:
        error_id = match[1]
        key = TELEGRAM_ERROR_KEYS.get(error_id)
        if key is not None:
            return tr.tr(key, id=error_id)
        return tr.tr("telegram.error.other", id=error_id)
    return reason


def stop_reason_text(detail: str, tr: Translator) -> str:
    """Why a broadcast stopped or waits (the broadcast worker's English detail), translated."""
    plain = {
        "stopped": N_("broadcast.reason.user"),
        "interrupted": N_("broadcast.reason.interrupted"),
    }
    if detail in plain:
        return tr.tr(plain[detail])
    prefixed = (
        ("quota exhausted", N_("broadcast.reason.quota")),
        ("license not active", N_("broadcast.reason.license_inactive")),
        ("the license server cannot be reached", N_("broadcast.reason.offline")),
        ("account excluded", N_("broadcast.reason.excluded")),
        ("PeerFlood", N_("broadcast.reason.peer_flood")),
        ("account unusable", N_("broadcast.reason.unusable")),
        ("usage not settled", N_("broadcast.reason.unsettled")),
    )
    for prefix, key in prefixed:
        if detail.startswith(prefix):
            rest = detail[len(prefix) :].lstrip(":( ").rstrip(")")
            return tr.tr(key, reason=telegram_text(rest, tr) if rest else "—")
    return telegram_text(detail, tr)
