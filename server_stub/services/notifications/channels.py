"""The three ways a notification leaves: SMTP, a webhook (generic JSON or Slack-style), and the
Telegram Bot API.

Each sender either returns (delivered) or raises :class:`DeliveryFailed` with a reason that is safe
to store and log: every secret the sender knows is masked out of it, whatever a library put into
an exception's text. They are synchronous and block: the sweeper calls them in its thread pool.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import smtplib
import ssl
from collections.abc import Callable, Iterable
from email.message import EmailMessage
from typing import Any, Final, Protocol

import httpx

from ...clock import Clock
from ...config import Settings
from .messages import Message
from .targets import Targets

SIGNATURE_HEADER: Final = "X-TGFlow-Signature"
TIMESTAMP_HEADER: Final = "X-TGFlow-Timestamp"
_MAX_REASON = 300
#: The longest Telegram message (the Bot API refuses more than 4096 characters).
_TELEGRAM_MAX_TEXT = 4096


class DeliveryFailed(Exception):
    """An attempt failed; ``retry_after`` (seconds) is the receiver's own wish, when it said."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class Sender(Protocol):
    def send(self, message: Message, targets: Targets) -> None: ...


def _mask(text: str, secrets: Iterable[str | None]) -> str:
    return _mask_all(text, [s for s in secrets if s])[:_MAX_REASON]


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


def _retry_after(value: Any) -> float | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if 0 <= seconds <= 24 * 3600 else None


class SmtpSender:
    def __init__(self, settings: Settings) -> None:
        self._s = settings

    def send(self, message: Message, targets: Targets) -> None:
        s = self._s
        recipients = (message.to,) if message.to else targets.smtp_to
        if not (s.notify_smtp_host and s.notify_smtp_from and recipients):
            raise DeliveryFailed("smtp is not configured")
        mail = EmailMessage()
        mail["Subject"] = message.subject
        mail["From"] = s.notify_smtp_from
        mail["To"] = ", ".join(recipients)
        mail.set_content(message.text)
        password = _secret(s.notify_smtp_password)
        try:
            with smtplib.SMTP(
                s.notify_smtp_host, s.notify_smtp_port, timeout=s.notify_timeout_seconds
            ) as smtp:
                if s.notify_smtp_starttls:
                    # Refuses (SMTPNotSupportedError) rather than go on in clear text.
                    smtp.starttls(context=ssl.create_default_context())
                if s.notify_smtp_username and password:
                    smtp.login(s.notify_smtp_username, password)
                smtp.send_message(mail)
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryFailed(
                _mask(f"smtp: {type(exc).__name__}: {exc}", [password, s.notify_smtp_username])
            ) from None


class WebhookSender:
    def __init__(
        self, settings: Settings, clock: Clock, client: Callable[[], httpx.Client]
    ) -> None:
        self._s = settings
        self._clock = clock
        self._client = client

    def send(self, message: Message, targets: Targets) -> None:
        url = _secret(self._s.notify_webhook_url)
        secret = _secret(self._s.notify_webhook_secret)
        if not url:
            raise DeliveryFailed("webhook is not configured")
        body_value = {"text": message.text} if targets.webhook_style == "slack" else message.data
        body = json.dumps(body_value, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"}
        if secret:
            stamp = str(int(self._clock.now().timestamp()))
            digest = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256)
            headers[TIMESTAMP_HEADER] = stamp
            headers[SIGNATURE_HEADER] = "sha256=" + digest.hexdigest()
        try:
            with self._client() as client:
                response = client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryFailed(
                _mask(f"webhook: {type(exc).__name__}: {exc}", [url, secret])
            ) from None
        if response.is_success:
            return
        raise DeliveryFailed(
            f"webhook: HTTP {response.status_code}",
            _retry_after(response.headers.get("Retry-After"))
            if response.status_code == 429
            else None,
        )


class TelegramSender:
    def __init__(self, settings: Settings, client: Callable[[], httpx.Client]) -> None:
        self._s = settings
        self._client = client

    def send(self, message: Message, targets: Targets) -> None:
        token = _secret(self._s.notify_telegram_bot_token)
        if not token or not targets.telegram_chat_ids:
            raise DeliveryFailed("telegram is not configured")
        url = f"{self._s.notify_telegram_api_base.rstrip('/')}/bot{token}/sendMessage"
        # Every chat in one attempt: a failure retries them all (delivery is at least once).
        with self._client() as client:
            for chat_id in targets.telegram_chat_ids:
                self._send_one(client, url, token, chat_id, message.text[:_TELEGRAM_MAX_TEXT])

    @staticmethod
    def _send_one(client: httpx.Client, url: str, token: str, chat_id: str, text: str) -> None:
        try:
            response = client.post(url, json={"chat_id": chat_id, "text": text})
            answer = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise DeliveryFailed(
                _mask(f"telegram: {type(exc).__name__}: {exc}", [token, url])
            ) from None
        if isinstance(answer, dict) and answer.get("ok") is True:
            return
        answer = answer if isinstance(answer, dict) else {}
        parameters = answer.get("parameters")
        retry_after = (
            _retry_after(parameters.get("retry_after")) if isinstance(parameters, dict) else None
        )
        description = str(answer.get("description") or f"HTTP {response.status_code}")
        code = answer.get("error_code", response.status_code)
        raise DeliveryFailed(_mask(f"telegram: {code} {description}", [token]), retry_after)


class _MaskSecrets(logging.Filter):
    """Masks the channels' secrets in what httpx logs (it logs each request's URL at INFO, and
    the Bot API's URL carries the bot token)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            text = record.getMessage()
            masked = _mask_all(text, self.secrets)
            if masked != text:
                record.msg, record.args = masked, ()
        return True


def _mask_all(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


_HTTPX_MASK = _MaskSecrets()
logging.getLogger("httpx").addFilter(_HTTPX_MASK)


def build_senders(settings: Settings, clock: Clock) -> dict[str, Sender]:
    _HTTPX_MASK.secrets.update(
        value
        for value in (
            _secret(settings.notify_telegram_bot_token),
            _secret(settings.notify_webhook_url),
        )
        if value
    )

    def client() -> httpx.Client:
        return httpx.Client(
            timeout=settings.notify_timeout_seconds,
            follow_redirects=False,
            headers={"User-Agent": "tgflow-notifications"},
        )

    return {
        "smtp": SmtpSender(settings),
        "webhook": WebhookSender(settings, clock, client),
        "telegram": TelegramSender(settings, client),
    }
