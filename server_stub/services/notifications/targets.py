"""The Admin's ``notifications`` setting: which channels are on, to whom, in which language.

Secrets never live here: the SMTP password, the bot token and the webhook URL and secret come
from the environment (config.py). Turning a channel on whose secret is missing is refused when
the setting is written (fail closed), so a configured channel can always be attempted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from sqlalchemy.orm import Session

from ...config import Settings
from ...errors import ValidationFailed
from ...portal_models import NOTIFICATION_CHANNELS, PortalSetting

Language = Literal["ru", "en"]
WebhookStyle = Literal["generic", "slack"]
LANGUAGES: Final = ("ru", "en")
WEBHOOK_STYLES: Final = ("generic", "slack")


@dataclass(frozen=True)
class Targets:
    """The setting as stored in ``portal_settings`` (``channels`` is what ``enqueue`` reads)."""

    channels: tuple[str, ...] = ()
    language: Language = "ru"
    smtp_to: tuple[str, ...] = ()
    telegram_chat_ids: tuple[str, ...] = ()
    webhook_style: WebhookStyle = "generic"

    def as_json(self) -> dict[str, Any]:
        return {
            "channels": list(self.channels),
            "language": self.language,
            "smtp_to": list(self.smtp_to),
            "telegram_chat_ids": list(self.telegram_chat_ids),
            "webhook_style": self.webhook_style,
        }


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def load_targets(session: Session, key: str) -> Targets:
    """The stored setting, read leniently: an unknown value falls back to its default."""
    row = session.get(PortalSetting, key)
    value = row.value if row is not None and isinstance(row.value, dict) else {}
    language = value.get("language")
    style = value.get("webhook_style")
    return Targets(
        channels=tuple(c for c in NOTIFICATION_CHANNELS if c in _strings(value.get("channels"))),
        language=language if language in LANGUAGES else "ru",
        smtp_to=_strings(value.get("smtp_to")),
        telegram_chat_ids=_strings(value.get("telegram_chat_ids")),
        webhook_style=style if style in WEBHOOK_STYLES else "generic",
    )


def secrets_present(settings: Settings) -> dict[str, bool]:
    """Whether each channel has what the environment must give it (never the values)."""
    return {
        "smtp": bool(settings.notify_smtp_host and settings.notify_smtp_from),
        "webhook": bool(
            settings.notify_webhook_url and settings.notify_webhook_url.get_secret_value()
        ),
        "telegram": bool(
            settings.notify_telegram_bot_token
            and settings.notify_telegram_bot_token.get_secret_value()
        ),
    }


#: The environment variables a channel needs, named in the refusal.
_NEEDS: Final = {
    "smtp": "TGFLOW_NOTIFY_SMTP_HOST and TGFLOW_NOTIFY_SMTP_FROM",
    "webhook": "TGFLOW_NOTIFY_WEBHOOK_URL",
    "telegram": "TGFLOW_NOTIFY_TELEGRAM_BOT_TOKEN",
}


def check_targets(targets: Targets, settings: Settings) -> None:
    """Refuse a setting that turns on a channel that could not deliver (422)."""
    problems = []
    present = secrets_present(settings)
    for channel in targets.channels:
        if not present[channel]:
            problems.append(f"channel {channel} needs {_NEEDS[channel]} in the server environment")
    if "smtp" in targets.channels and not targets.smtp_to:
        problems.append("channel smtp needs at least one address in smtp_to")
    if "telegram" in targets.channels and not targets.telegram_chat_ids:
        problems.append("channel telegram needs at least one chat id in telegram_chat_ids")
    if problems:
        raise ValidationFailed("; ".join(problems))
