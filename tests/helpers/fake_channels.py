"""Stand-ins for the notification channels, each speaking its real protocol on a loopback port.

- :class:`FakeSmtpServer`: enough SMTP for ``smtplib`` (EHLO/HELO, AUTH PLAIN, MAIL, RCPT, DATA,
  RSET, NOOP, QUIT; STARTTLS is not offered), keeping each message as parsed e-mail;
- :class:`FakeWebhook`: an HTTP receiver that records each request and answers from a queue;
- :class:`FakeTelegram`: the Bot API's ``sendMessage`` with Telegram's own reply shapes
  (``{"ok": true, "result": {...}}``, ``{"ok": false, "error_code": 429, ..., "parameters":
  {"retry_after": 5}}``).

Nothing waits on time: a failure is queued before the sweep that meets it.
"""

from __future__ import annotations

import base64
import json
import socketserver
import threading
from collections import deque
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self, cast

BOT_TOKEN = "123456:TEST-bot-token-do-not-log"
WEBHOOK_SECRET = "webhook-signing-secret-do-not-log"
SMTP_PASSWORD = "smtp-password-do-not-log"


class _Running:
    """Serve ``server`` on a daemon thread for the life of a ``with`` block."""

    server: socketserver.BaseServer

    def __enter__(self) -> Self:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def port(self) -> int:
        return int(cast(Any, self.server).server_address[1])


# --- SMTP ---------------------------------------------------------------------------------------


@dataclass
class SmtpMail:
    mail_from: str
    rcpt_to: list[str]
    message: EmailMessage
    auth: tuple[str, str] | None


class _SmtpHandler(socketserver.StreamRequestHandler):
    fake: FakeSmtpServer

    def _reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        self._reply("220 fake.smtp ESMTP ready")
        mail_from, auth = "", None
        rcpts: list[str] = []
        while line := self.rfile.readline():
            command = line.decode("utf-8", "replace").rstrip("\r\n")
            verb = command.split(" ", 1)[0].upper()
            argument = command[len(verb) :].strip()
            if verb == "EHLO":
                self._reply("250-fake.smtp")
                self._reply("250-8BITMIME")
                self._reply("250 AUTH PLAIN")
            elif verb == "HELO" or verb == "NOOP":
                self._reply("250 ok")
            elif verb == "AUTH" and argument.upper().startswith("PLAIN "):
                _, user, password = base64.b64decode(argument[6:]).decode().split("\0")
                auth = (user, password)
                self._reply("235 2.7.0 authenticated")
            elif verb == "MAIL":
                mail_from, rcpts = argument.split(":", 1)[1].strip().strip("<>"), []
                self._reply("250 ok")
            elif verb == "RCPT":
                rcpts.append(argument.split(":", 1)[1].strip().strip("<>"))
                self._reply("250 ok")
            elif verb == "DATA":
                self._data(mail_from, rcpts, auth)
            elif verb == "RSET":
                mail_from, rcpts = "", []
                self._reply("250 ok")
            elif verb == "QUIT":
                self._reply("221 bye")
                return
            else:
                self._reply("502 5.5.1 command not implemented")

    def _data(self, mail_from: str, rcpts: list[str], auth: tuple[str, str] | None) -> None:
        self._reply("354 end data with <CR><LF>.<CR><LF>")
        lines = []
        while (line := self.rfile.readline()) not in (b".\r\n", b""):
            lines.append(line[1:] if line.startswith(b"..") else line)
        with self.fake.lock:
            refuse = self.fake.refuse.popleft() if self.fake.refuse else None
            if refuse is None:
                parsed = message_from_bytes(b"".join(lines), policy=policy.default)
                self.fake.mails.append(SmtpMail(mail_from, rcpts, cast(EmailMessage, parsed), auth))
        self._reply(refuse or "250 2.0.0 queued")


class _ThreadingTcp(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class FakeSmtpServer(_Running):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.mails: list[SmtpMail] = []
        #: Replies given to the next DATA commands instead of accepting (``451 ...``).
        self.refuse: deque[str] = deque()
        handler = type("Handler", (_SmtpHandler,), {"fake": self})
        self.server = _ThreadingTcp(("127.0.0.1", 0), handler)


# --- HTTP (webhook, Telegram) -------------------------------------------------------------------


@dataclass
class HttpHit:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Answer:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class _HttpHandler(BaseHTTPRequestHandler):
    fake: _HttpFake

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        hit = HttpHit(
            self.path, {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length)
        )
        with self.fake.lock:
            self.fake.hits.append(hit)
            answer = self.fake.answer(hit)
        body = json.dumps(answer.body).encode()
        self.send_response(answer.status)
        for name, value in {"Content-Type": "application/json", **answer.headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads the hits."""


class _HttpFake(_Running):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.hits: list[HttpHit] = []
        #: Answers given to the next requests instead of the normal one.
        self.queued: deque[_Answer] = deque()
        handler = type("Handler", (_HttpHandler,), {"fake": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def queue(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        with self.lock:
            self.queued.append(_Answer(status, body, headers or {}))

    def answer(self, hit: HttpHit) -> _Answer:
        return self.queued.popleft() if self.queued else self.normal(hit)

    def normal(self, hit: HttpHit) -> _Answer:
        return _Answer(200, {"ok": True})


class FakeWebhook(_HttpFake):
    @property
    def url(self) -> str:
        return f"{self.base_url}/hooks/tgflow"


class FakeTelegram(_HttpFake):
    """``POST /bot<token>/sendMessage`` as the Bot API answers it."""

    def __init__(self, token: str = BOT_TOKEN) -> None:
        super().__init__()
        self.token = token
        self._next_id = 1

    def sent(self) -> list[dict[str, Any]]:
        """The messages accepted (``chat_id``, ``text``)."""
        with self.lock:
            return [h.json() for h in self.hits if h.path == f"/bot{self.token}/sendMessage"]

    def normal(self, hit: HttpHit) -> _Answer:
        if hit.path != f"/bot{self.token}/sendMessage":
            return _Answer(404, {"ok": False, "error_code": 404, "description": "Not Found"})
        request = hit.json()
        if not str(request.get("text") or ""):
            return _Answer(
                400,
                {
                    "ok": False,
                    "error_code": 400,
                    "description": "Bad Request: message text is empty",
                },
            )
        self._next_id += 1
        chat_id = request["chat_id"]
        return _Answer(
            200,
            {
                "ok": True,
                "result": {
                    "message_id": self._next_id,
                    "from": {
                        "id": 123456,
                        "is_bot": True,
                        "first_name": "TGFlow",
                        "username": "tgflow_bot",
                    },
                    "chat": {"id": int(chat_id), "type": "group", "title": "Licenses"},
                    "date": 1767225600,
                    "text": request["text"],
                },
            },
        )

    def queue_rate_limit(self, retry_after: int) -> None:
        self.queue(
            429,
            {
                "ok": False,
                "error_code": 429,
                "description": f"Too Many Requests: retry after {retry_after}",
                "parameters": {"retry_after": retry_after},
            },
        )
