"""The text of a notification, in the setting's one language (Russian by default).

A message names the client, the license key's last four characters only (a full key would let
whoever reads a mailbox or a chat activate it), and the dates. The outbox row's ``payload`` may
add ``limit`` (limit_exceeded) and ``reason`` (revoked); nothing else from it is shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from .targets import Language

#: What the test message announces (``POST /staff/notifications/test``).
TEST_KIND: Final = "test"
_MAX_FIELD = 200


@dataclass(frozen=True)
class LicenseFacts:
    """What a message may say of its license."""

    license_id: str
    client: str
    key_last4: str
    valid_until: datetime


@dataclass(frozen=True)
class Message:
    kind: str
    subject: str
    text: str
    #: The generic webhook's JSON body (no secrets, no full key).
    data: dict[str, Any]
    #: A customer's address (billing's kinds): sent there instead of the Admin's recipients.
    to: str | None = None


_SUBJECTS: Final[dict[Language, dict[str, str]]] = {
    "ru": {
        "expiring": "Лицензия скоро истекает",
        "expired": "Лицензия истекла",
        "limit_exceeded": "Превышен лимит лицензии",
        "revoked": "Лицензия отозвана",
        TEST_KIND: "Проверка уведомлений",
        "billing_renewed": "Подписка продлена",
        "billing_renewal_failed": "Не удалось продлить подписку",
        "billing_final_notice": "Последнее напоминание об оплате подписки",
        "billing_ended": "Подписка завершена",
    },
    "en": {
        "expiring": "License expiring soon",
        "expired": "License expired",
        "limit_exceeded": "License limit exceeded",
        "revoked": "License revoked",
        TEST_KIND: "Notification test",
        "billing_renewed": "Subscription renewed",
        "billing_renewal_failed": "Subscription renewal failed",
        "billing_final_notice": "Final notice: subscription payment",
        "billing_ended": "Subscription ended",
    },
}

_BODIES: Final[dict[Language, dict[str, str]]] = {
    "ru": {
        "expiring": "Лицензия клиента «{client}» (ключ …{key}) истекает {date}, осталось дней: "
        "{days}.",
        "expired": "Лицензия клиента «{client}» (ключ …{key}) истекла {date}.",
        "limit_exceeded": "Лицензия клиента «{client}» (ключ …{key}): превышен лимит {limit}.",
        "revoked": "Лицензия клиента «{client}» (ключ …{key}) отозвана. {reason}",
        TEST_KIND: "Тестовое сообщение TGFlow: канал {channel} настроен.",
        "unknown": "Уведомление {kind} о лицензии, которой больше нет.",
        "billing_renewed": "Подписка продлена до {date}. Списано: {amount}.",
        "billing_renewal_failed": "Не удалось списать {amount} за подписку. Следующая попытка "
        "{date}; проверьте карту.",
        "billing_final_notice": "Не удалось списать {amount} за подписку, попыток больше не "
        "будет. Доступ сохранится до {date}; оплатите, чтобы не потерять его.",
        "billing_ended": "Подписка завершена {date}.",
    },
    "en": {
        "expiring": "The license of «{client}» (key …{key}) expires on {date}, days left: {days}.",
        "expired": "The license of «{client}» (key …{key}) expired on {date}.",
        "limit_exceeded": "The license of «{client}» (key …{key}) exceeded its {limit} limit.",
        "revoked": "The license of «{client}» (key …{key}) was revoked. {reason}",
        TEST_KIND: "A TGFlow test message: channel {channel} works.",
        "unknown": "Notification {kind} about a license that no longer exists.",
        "billing_renewed": "Your subscription is renewed until {date}. Charged: {amount}.",
        "billing_renewal_failed": "We could not charge {amount} for your subscription. The next "
        "attempt is on {date}; please check your card.",
        "billing_final_notice": "We could not charge {amount} for your subscription and will "
        "not try again. Access lasts until {date}; pay to keep it.",
        "billing_ended": "Your subscription ended on {date}.",
    },
}


def _date(when: datetime, language: Language) -> str:
    return when.strftime("%d.%m.%Y") if language == "ru" else when.strftime("%Y-%m-%d")


def _field(payload: dict[str, Any], name: str) -> str:
    value = payload.get(name)
    return str(value)[:_MAX_FIELD] if isinstance(value, str | int) else ""


def render(
    kind: str,
    facts: LicenseFacts | None,
    payload: dict[str, Any],
    language: Language,
    *,
    channel: str = "",
) -> Message:
    """The message of ``kind`` about the license of ``facts`` (None: it no longer exists)."""
    group = "expiring" if kind.startswith("expiring_") else kind
    days = kind.removeprefix("expiring_") if group == "expiring" else ""
    if kind.startswith("billing_"):
        return _billing(kind, payload, language)
    if facts is None and group != TEST_KIND:
        group = "unknown"
    values = {
        "client": facts.client if facts else "",
        "key": facts.key_last4 if facts else "",
        "date": _date(facts.valid_until, language) if facts else "",
        "days": days,
        "limit": _field(payload, "limit"),
        "reason": _field(payload, "reason"),
        "channel": channel,
        "kind": kind,
    }
    text = _BODIES[language][group].format(**values).strip()
    subject = "TGFlow: " + _SUBJECTS[language].get(group, kind)
    data: dict[str, Any] = {"event": kind, "text": text}
    if facts is not None:
        data["license"] = {
            "id": facts.license_id,
            "client": facts.client,
            "key_last4": facts.key_last4,
            "valid_until": facts.valid_until.isoformat(),
        }
    for name in ("limit", "reason"):
        if value := _field(payload, name):
            data[name] = value
    return Message(kind=kind, subject=subject, text=text, data=data)


def _billing(kind: str, payload: dict[str, Any], language: Language) -> Message:
    """A dunning step's e-mail to the customer; ``payload`` holds ``to``, ``date`` (ISO) and
    ``amount_minor`` + ``currency`` (shown in major units: 2 decimals, ISO 4217's usual)."""
    raw = _field(payload, "date")
    try:
        date = _date(datetime.fromisoformat(raw), language) if raw else ""
    except ValueError:
        date = ""
    minor = payload.get("amount_minor")
    amount = ""
    if isinstance(minor, int) and not isinstance(minor, bool):
        amount = f"{minor // 100}.{minor % 100:02d} {_field(payload, 'currency')}".strip()
    text = _BODIES[language][kind].format(date=date, amount=amount).strip()
    subject = "TGFlow: " + _SUBJECTS[language][kind]
    data: dict[str, Any] = {"event": kind, "text": text}
    to = _field(payload, "to") or None
    return Message(kind=kind, subject=subject, text=text, data=data, to=to)
