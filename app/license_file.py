"""License-file mode: activating an offline license file instead of signing in by e-mail.

Qt-free, on the engine loop like :class:`app.core.Core`, which owns one
:class:`LicenseFileService`. The file is verified by ``agent.licensing`` against the pinned
``license`` keys of settings.ini (``[license] jwt_public_key_fingerprint``), with the agent's
rules: clock rollback refused, the newest revocation list honoured, the license's domain against
``[license] install_domain`` (this computer's fully qualified host name when empty), its version
range against this program's version. Every refusal becomes a :class:`LicenseFileRefused` whose
reason is a translation key (never the agent's English).

The messages-per-month limit is counted locally (:class:`app.license_usage.LocalUsage`) through
its own :class:`agent.journal.UsageJournal`, so a broadcast in this mode reserves and commits
exactly as one signed in by e-mail does.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Final

from agent.clock import Clock
from agent.errors import (
    ActivationRequired,
    DomainMismatch,
    LicenseError,
    LicenseFileExpired,
    LicenseFileNotYetValid,
    LicenseFileOutdated,
    LicenseInactive,
    LicenseRevoked,
    TamperDetected,
    TokenRejected,
    UntrustedKey,
    VersionNotCovered,
    WrongLicenseKey,
)
from agent.journal import UsageJournal
from agent.key_pins import PinnedKeySet
from agent.lease import LeaseStore
from agent.licensing import (
    DocumentVerifier,
    License,
    LicenseFileStore,
    LicenseFileVerifier,
    NoLicenseFile,
    OnlineActivation,
    RevocationStore,
)
from agent.tokens import DEFAULT_ISSUER

from .catalog import N_, Explained, Reason
from .core_types import LicenseFileFacts, LicenseSnapshot
from .license_modules import install_domain
from .license_usage import USAGE_FILE_NAME, LocalUsage

log = logging.getLogger("tgflow.core")

#: The product a desktop license file must be for.
PRODUCT: Final = "tgflow"
#: A license file is a few KiB; a larger file is refused unread.
MAX_FILE_BYTES: Final = 64 * 1024
#: The journal of local reservations (apart from the server's: each is settled by its backend).
JOURNAL_FILE_NAME: Final = "license-file-journal.sqlite"

#: The limits the License panel lists, in order (``agent.protocol.LicenseLimits`` fields).
LIMIT_NAMES: Final = ("users", "departments", "integrations", "api_rate", "messages")


class LicenseFileRefused(Explained, RuntimeError):
    """The license file cannot be activated (or no longer works); :attr:`why` says why."""


def refusal(exc: LicenseError, *, domain: str = "", version: str = "") -> LicenseFileRefused:
    """The agent's refusal of a license file as a reason in any language (``domain`` and
    ``version``: this installation's, named in those refusals)."""
    if isinstance(exc, LicenseFileOutdated):
        return LicenseFileRefused(N_("license_file.refused.outdated"))
    if isinstance(exc, WrongLicenseKey):
        return LicenseFileRefused(N_("license_file.refused.wrong_key"))
    if isinstance(exc, UntrustedKey):
        return LicenseFileRefused(N_("license_file.refused.untrusted_key"))
    if isinstance(exc, LicenseFileNotYetValid):
        return LicenseFileRefused(N_("license_file.refused.not_yet_valid"))
    if isinstance(exc, LicenseFileExpired):
        return LicenseFileRefused(N_("license_file.refused.expired"))
    if isinstance(exc, LicenseRevoked):
        return LicenseFileRefused(N_("license_file.refused.revoked"))
    if isinstance(exc, LicenseInactive):
        return LicenseFileRefused(N_("license_file.refused.suspended"))
    if isinstance(exc, VersionNotCovered):
        return LicenseFileRefused(N_("license_file.refused.version"), version=version)
    if isinstance(exc, DomainMismatch):
        return LicenseFileRefused(N_("license_file.refused.domain"), installed=domain)
    if isinstance(exc, TamperDetected):
        return LicenseFileRefused(N_("license_file.refused.clock_back"))
    if isinstance(exc, NoLicenseFile):
        return LicenseFileRefused(N_("license_file.refused.none"))
    if isinstance(exc, TokenRejected):
        return LicenseFileRefused(N_("license_file.refused.tampered"))
    return LicenseFileRefused(N_("license_file.refused.other"))


def key_tail(license_key: str) -> str:
    """What the panel shows of the license key: its last four characters only."""
    return "…" + license_key[-4:]


def facts(lic: License) -> LicenseFileFacts:
    """The License panel's view of a verified license file."""
    return LicenseFileFacts(
        customer=lic.customer_name,
        product=lic.product,
        plan=lic.plan,
        modules=tuple(sorted(lic.modules)),
        limits=tuple((name, getattr(lic.limits, name)) for name in LIMIT_NAMES),
        domain=lic.domain,
        valid_from=lic.valid_from,
        valid_until=lic.valid_until,
        expires_at=lic.expires_at,
        in_grace=lic.in_grace,
        file_version=lic.file_version,
        key_tail=key_tail(lic.license_key),
    )


class LicenseFileService:
    """The installation's license file: activate, check, replace, deactivate, count messages."""

    def __init__(
        self,
        data_dir: Path,
        *,
        api_base_url: str,
        pins: tuple[str, ...],
        domain: str,
        version: str,
        clock: Clock,
        issuer: str = DEFAULT_ISSUER,
        fingerprint: str = "",
        server_id: str = "",
    ) -> None:
        """Verify against ``pins`` (the JWKS cache in ``data_dir`` if the server was reached).

        With ``api_base_url`` and this machine's ``fingerprint``, :attr:`online` activates the
        machine with the license server and heartbeats (:mod:`app.license_online`)."""
        self.data_dir = Path(data_dir)
        self._clock = clock
        self._version = version
        keys = PinnedKeySet(api_base_url, pins, self.data_dir, clock=clock)
        documents = DocumentVerifier(keys)
        self.verifier = LicenseFileVerifier(
            documents,
            # One latest time seen per installation, shared with the e-mail session's lease.
            LeaseStore(self.data_dir, clock=clock),
            RevocationStore(documents, self.data_dir, issuer=issuer),
            product=PRODUCT,
            product_version=version,
            domain=install_domain(domain),
            issuer=issuer,
            clock=clock,
        )
        self.store = LicenseFileStore(self.verifier, self.data_dir)
        self.online: OnlineActivation | None = None
        if api_base_url and fingerprint:
            self.online = OnlineActivation(
                api_base_url,
                self.store,
                documents,
                fingerprint=fingerprint,
                server_id=server_id or "desktop",
                issuer=issuer,
                clock=clock,
            )
        self.usage = LocalUsage(self.data_dir / USAGE_FILE_NAME, clock, self._limit)
        self.journal = UsageJournal(self.data_dir / JOURNAL_FILE_NAME, clock=clock)
        #: The license verified last (``None`` outside license-file mode).
        self.current: License | None = None

    def _limit(self) -> tuple[str, int | None]:
        lic = self.current
        if lic is None:
            # No license, nothing may be sent: a limit of zero.
            return "", 0
        return lic.license_key, lic.limits.messages

    @property
    def kept(self) -> bool:
        """Whether a license file is kept on this installation (verified or not)."""
        return self.store.path.exists()

    def read(self, path: Path) -> str:
        """The text of the license file at ``path``; a refusal when it cannot be one."""
        try:
            with open(path, "rb") as fh:
                data = fh.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            log.warning("cannot read the license file %s: %s", path, exc)
            raise LicenseFileRefused(N_("license_file.refused.unreadable")) from exc
        if len(data) > MAX_FILE_BYTES:
            raise LicenseFileRefused(N_("license_file.refused.tampered"))
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise LicenseFileRefused(N_("license_file.refused.tampered")) from None

    def activate(self, text: str, license_key: str) -> License:
        """Verify ``text`` with ``license_key`` and keep it; a newer version replaces the kept
        one, an older one is refused."""
        license_key = license_key.strip()
        if not license_key:
            raise LicenseFileRefused(N_("license_file.refused.no_key"))
        try:
            lic = self.store.activate(text, license_key)
        except LicenseError as exc:
            log.warning("license file refused: %s", exc.reason)
            raise self._refusal(exc) from exc
        self.current = lic
        return lic

    def _refusal(self, exc: LicenseError) -> LicenseFileRefused:
        return refusal(exc, domain=self.verifier.domain, version=self._version)

    def replace(self, text: str) -> License:
        """A newer file of the license kept (by hand, or from a later online heartbeat), opened
        with the key already typed."""
        key = self.store.kept_key()
        if key is None:
            raise LicenseFileRefused(N_("license_file.refused.none"))
        return self.activate(text, key)

    def check(self) -> License:
        """The kept license verified again now (expiry, revocation, clock)."""
        try:
            lic = self._check()
        except LicenseError as exc:
            log.warning("the kept license file does not work: %s", exc.reason)
            self.current = None
            raise self._refusal(exc) from exc
        self.current = lic
        return lic

    def _check(self) -> License:
        # The server's last word (revoked, suspended, expired) refuses the file; a freed
        # activation does not: the file's own offline rules decide until it is taken again.
        if self.online is not None:
            try:
                return self.online.check()
            except ActivationRequired:
                pass
        return self.store.check()

    def deactivate(self) -> None:
        """Forget the license file; the program is no longer licensed by it."""
        self.store.clear()
        if self.online is not None:
            # A new file starts a new activation; the server frees the old one once its
            # heartbeats stop.
            self.online.path.unlink(missing_ok=True)
        self.current = None

    def snapshot(self, when: datetime | None = None) -> LicenseSnapshot:
        """The License panel's content: the file's facts and this month's messages."""
        try:
            lic = self.check()
        except LicenseFileRefused as exc:
            return _refused_snapshot(exc.why)
        used, held = self.usage.used(lic.license_key, when)
        limit = lic.limits.messages
        remaining = 0 if limit is None else max(0, limit - used - held)
        usable = limit is None or remaining > 0
        return LicenseSnapshot(
            email=None,
            plan=lic.plan,
            status="active",
            usable=usable,
            reason=None if usable else Reason(N_("license.reason.quota_month")),
            limit=limit if limit is not None else 0,
            used=used,
            held=held,
            remaining=remaining,
            period_end=_month_end(when or self._clock.now()),
            lease_expires_at=None,
            license_file=facts(lic),
            messages_unlimited=limit is None,
        )

    def close(self) -> None:
        """Close the local counter and journal."""
        self.usage.close()
        self.journal.close()
        if self.online is not None:
            self.online.close()


def _month_end(when: datetime) -> datetime:
    """The start of the next calendar month (UTC): when the messages count starts again."""
    first = when.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (
        first.replace(year=first.year + 1, month=1)
        if first.month == 12
        else first.replace(month=first.month + 1)
    )


def _refused_snapshot(why: Reason) -> LicenseSnapshot:
    return LicenseSnapshot(
        email=None,
        plan=None,
        status="inactive",
        usable=False,
        reason=why,
        limit=0,
        used=0,
        held=0,
        remaining=0,
        period_end=None,
        lease_expires_at=None,
    )
