"""The transport factory used when ``[telegram] api_id``/``api_hash`` are not set.

Adding or using a Telegram account then fails with a message that says what to fill in, instead
of an error from deep inside kurigram.
"""

from __future__ import annotations

from pathlib import Path

from .base import AccountInfo, LoginError, LoginFlow, Transport


class UnconfiguredTransportFactory:
    kind = "telegram"

    def __init__(self, settings_path: Path) -> None:
        self.settings_path = settings_path

    def _error(self) -> LoginError:
        return LoginError(
            f"set [telegram] api_id and api_hash in {self.settings_path} "
            "(your own application from my.telegram.org) to use Telegram accounts"
        )

    def login_flow(self) -> LoginFlow:
        raise self._error()

    def transport(self, account: AccountInfo) -> Transport:
        raise self._error()

    def remove(self, account: AccountInfo) -> None:
        return None
