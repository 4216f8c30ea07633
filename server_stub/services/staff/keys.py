"""The server's signing keys as an Admin sees them: listed, and rotated (audited)."""

from __future__ import annotations

from ...db import transaction
from ...errors import ValidationFailed
from ...keys import KeyStore, KeyStoreError, SigningKey
from ..audit import record
from ..context import ServiceContext


class KeyAdmin:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    @property
    def store(self) -> KeyStore:
        return self._ctx.keys

    def list(self) -> list[tuple[SigningKey, str]]:
        return [(key, self.store.state(key)) for key in self.store.all_keys()]

    def rotate(self, actor: str, purpose: str) -> SigningKey:
        try:
            key = self.store.rotate(purpose)
        except KeyStoreError as exc:
            raise ValidationFailed(f"purpose: {exc}") from exc
        with transaction(self._ctx.write) as session:
            record(
                session,
                self._ctx.clock.now(),
                actor,
                "keys.rotate",
                f"keys/{purpose}",
                {"kid": key.kid, "pin": key.pin},
            )
        return key
