"""The usage journal's vocabulary: its states, outcomes, entries, error and backend protocol.

Apart from :mod:`agent.journal` so the store and the settlement can share them;
:mod:`agent.journal` re-exports every name.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final, Protocol

from agent.errors import LicenseError
from agent.protocol import ReservationResponse, SettleResponse


class UsageBackend(Protocol):
    """The ``/usage`` endpoints, as the journal needs them (see ``agent.usage_http``).

    Each method returns the wire model and raises a typed :class:`agent.errors.LicenseError`:
    :class:`QuotaExceeded`, :class:`ReservationExpired`, :class:`ReservationConflict`,
    :class:`Offline`, …
    """

    async def reserve(self, messages: int, correlation_id: str) -> ReservationResponse:
        """Hold quota for ``messages``; the same ``correlation_id`` replays the same hold."""
        ...

    async def commit(self, reservation_id: str, used: int) -> SettleResponse:
        """Count ``used`` messages of the reservation and release the rest."""
        ...

    async def rollback(self, reservation_id: str) -> SettleResponse:
        """Release the whole reservation."""
        ...


class EntryState(StrEnum):
    """Where one reservation stands, as far as this machine knows."""

    RESERVING = "reserving"
    HELD = "held"
    SETTLING = "settling"
    COMMITTED = "committed"
    ROLLED_BACK = "rolled_back"
    EXPIRED = "expired"
    REFUSED = "refused"


#: States that a crash can leave behind and that :meth:`UsageJournal.settle` resolves.
OPEN_STATES: Final = frozenset({EntryState.RESERVING, EntryState.HELD, EntryState.SETTLING})


class Outcome(StrEnum):
    """How :meth:`UsageJournal.settle` (or :meth:`UsageJournal.finish`) left a reservation."""

    #: The server counted ``used`` messages (the sends recorded).
    COMMITTED = "committed"
    #: Nothing was sent; the hold was released.
    ROLLED_BACK = "rolled_back"
    #: The hold had expired on the server; the recorded sends were *not* counted.
    EXPIRED = "expired"
    #: The server refused the (replayed) reserve; nothing was ever held.
    REFUSED = "refused"
    #: The server had settled it otherwise than the journal says (``reservation_conflict``).
    CONFLICT = "conflict"
    #: Could not be settled now (offline, token rejected, …); it stays open for the next try.
    DEFERRED = "deferred"


class JournalError(LicenseError):
    """The journal was used against its rules (unknown reservation, send on a settled one, …)."""


@dataclass(frozen=True)
class JournalEntry:
    """One reservation as recorded in the journal."""

    correlation_id: str
    messages: int
    state: EntryState
    created_at: datetime
    reservation_id: str | None
    expires_at: datetime | None
    #: Sends recorded so far (distinct recipient keys).
    sent: int
    #: The count sealed for settlement (``settling`` and later), else ``None``.
    sealed: int | None
    #: Messages the server counted, once settled; ``None`` while open or when unknown.
    used: int | None
    detail: str | None

    @property
    def is_open(self) -> bool:
        """Whether a crash could have left this entry unsettled."""
        return self.state in OPEN_STATES


@dataclass(frozen=True)
class SettleOutcome:
    """What happened to one reservation when it was settled."""

    correlation_id: str
    reservation_id: str | None
    outcome: Outcome
    #: Sends recorded locally.
    sent: int
    #: Messages the server counted (``None`` when unknown: deferred, or a conflict).
    used: int | None
    detail: str

    @property
    def uncounted(self) -> int | None:
        """Sends that went out but that the server did not count (``None`` when unknown)."""
        return None if self.used is None else max(self.sent - self.used, 0)


def new_correlation_id() -> str:
    """A fresh, random correlation id valid on the wire."""
    return "tgf-" + uuid.uuid4().hex
