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
        re.compile(r"^Telegram refused the connection: (.*)$", re.S),
        lambda m, tr: tr.tr("telegram.reason.connection_refused", reason=telegram_text(m[1], tr)),
    ),
    (
        re.compile(r"^Telegram asks to wait (\d+) s before the next login attempt$"),
        lambda m, tr: tr.tr("telegram.login.wait", seconds=m[1]),
    ),
    (
        re.compile(r"^Telegram refused the login: (.*)$", re.S),
        lambda m, tr: tr.tr("telegram.login.refused", reason=telegram_text(m[1], tr)),
    ),
)

#: Fixed texts (and fixed beginnings, ending in ``…``) and their message.
_FIXED: Final = {
    "excluded by the user": N_("accounts.exclude.default_reason"),
    "timeout, delivery unknown…": N_("telegram.reason.timeout_unknown"),
    "unexpected error, delivery unknown…": N_("telegram.reason.unexpected_unknown"),
    "unexpected error…": N_("telegram.reason.unexpected"),
    "no answer from Telegram while connecting…": N_("telegram.reason.no_answer_connecting"),
    "no answer from Telegram…": N_("telegram.reason.no_answer"),
    "PeerFlood: check the account with @SpamBot": N_("notice.peer_flood"),
    # Login (app/transports/base.py login_error, and both transports).
    "wrong code": N_("telegram.login.wrong_code"),
    "wrong password": N_("telegram.login.wrong_password"),
    "the code has expired; request a new one": N_("telegram.login.code_expired"),
    "request a code first": N_("telegram.login.code_first"),
    "no password was asked for; enter the code first": N_("telegram.login.code_first"),
    "Telegram says this phone number is invalid": N_("telegram.login.phone_invalid"),
    "this phone number is banned by Telegram": N_("telegram.login.phone_banned"),
    "too many login attempts for this number; try again later": N_("telegram.login.too_many"),
    "this number has no Telegram account…": N_("telegram.login.no_account"),
}
#: A recipient's reason may be given as ``@name: reason``.
_RECIPIENT_PREFIX: Final = re.compile(r"^\S+: (?=timeout|no answer)")


def _fixed(text: str) -> str | None:
    text = _RECIPIENT_PREFIX.sub("", text)
    for form, key in _FIXED.items():
        if text == form or (form.endswith("…") and text.startswith(form[:-1])):
            return key
    return None


def telegram_text(reason: str, tr: Translator) -> str:
    """``reason`` (a Telegram error id or one of the workers' fixed forms) in the window's
    language; a text of no known form is returned as it is (the user's own words, say)."""
    text = reason.strip()
    key = _fixed(text)
    if key is not None:
        return tr.tr(key)
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
        ("no answer from Telegram while connecting", N_("broadcast.reason.connect_timeout")),
        ("Telegram refused", N_("broadcast.reason.telegram_refused")),
        ("text refused", N_("broadcast.reason.text_refused")),
        ("unexpected error", N_("broadcast.reason.unexpected")),
    )
    for prefix, key in prefixed:
        if detail.startswith(prefix):
            rest = detail[len(prefix) :].lstrip(":( ").rstrip(")")
            return tr.tr(key, reason=_inner(rest, tr) if rest else "—")
    return telegram_text(detail, tr)


def _inner(reason: str, tr: Translator) -> str:
    """A reason inside a sentence that already names Telegram: an id no rule knows stays bare."""
    match = _ERROR_ID.match(reason.strip())
    if match is not None and match[1] not in TELEGRAM_ERROR_KEYS:
        return match[1]
    return telegram_text(reason, tr)
