"""The Marketplace panel's data: the connection, the catalog, licenses, installs with progress.

Every request, the keyring and the files go through the engine (never the GUI thread); the
marketplace client, httpx and the keyring are imported there, on first use, so the window does
not pay for them at start-up.

Where things live (docs/desktop.md, "Marketplace"):

- the marketplace URL: ``marketplace.json`` in the data dir (settings.ini has no such section,
  and a per-machine connection is not a setting to share);
- the Backend Admin Token: the OS keyring (service ``TGFlow``, account
  ``marketplace-admin-token``), else a 0600 file ``marketplace/refresh_token`` in the data dir
  (the same store and fallback as the refresh token, under its own account and directory);
- installed apps: ``<data dir>/apps/<app_id>/``, replaced only by a fully verified download.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from PyQt6.QtCore import QObject, pyqtSignal

from app.engine import Engine
from app.i18n import Translator

from .queued import QueuedWork

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

    from agent.marketplace.client import MarketplaceClient

log = logging.getLogger("tgflow.marketplace")

CONNECTION_FILE: Final = "marketplace.json"
ADMIN_TOKEN_ACCOUNT: Final = "marketplace-admin-token"
APPS_DIR: Final = "apps"
#: The paid plans a backend can order, in the order the panel offers them.
PAID_PLANS: Final = ("monthly", "yearly", "perpetual")
#: License states that allow installing (docs/marketplace.md, "License lifecycle").
INSTALLABLE: Final = frozenset({"trial", "active"})
# --- plain data the panel shows (built on the engine, from the wire models) ---------------------


@dataclass(frozen=True)
class AppCard:
    id: str
    name: str
    developer: str
    description: str
    currency: str
    #: Minor units per paid plan; ``None``: not offered.
    prices: dict[str, int | None]
    #: ``None`` without a license, else its state (``trial``, ``pending``, ``active``, …).
    license_status: str | None
    license_plan: str | None
    trial_taken: bool
    installed: bool
    artifact_url: str
    artifact_sha256: str
    artifact_size: int

    @property
    def installable(self) -> bool:
        return self.license_status in INSTALLABLE

    @property
    def free(self) -> bool:
        """Every plan it is offered on costs nothing: no trial to try, nothing to buy."""
        offered = [price for price in self.prices.values() if price is not None]
        return bool(offered) and not any(offered)

    @property
    def free_plan(self) -> str | None:
        """The plan to request for a free app (the first one offered)."""
        return next((plan for plan, price in self.prices.items() if price == 0), None)


@dataclass(frozen=True)
class InstalledRow:
    id: str
    name: str
    license_status: str
    #: Whether the verified files are in ``<data dir>/apps/<id>/``.
    local: bool


@dataclass(frozen=True)
class MarketplaceState:
    cards: list[AppCard]
    installed: list[InstalledRow]


# --- the connection (URL file + admin token in the keyring) -------------------------------------


class ConnectionStore:
    """The marketplace URL (``marketplace.json``) and the admin token (keyring, else 0600 file).

    Call only on the engine thread: the keyring may block.
    """

    def __init__(self, data_dir: Path, *, keyring_backend: KeyringBackend | None = None) -> None:
        from agent.secrets import RefreshTokenStore

        self.path = data_dir / CONNECTION_FILE
        self._tokens = RefreshTokenStore(
            data_dir / "marketplace", account=ADMIN_TOKEN_ACCOUNT, backend=keyring_backend
        )

    def load(self) -> tuple[str, str | None]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raw = {}
        except (OSError, ValueError) as exc:
            log.warning("%s cannot be read: %s", self.path, exc)
            raw = {}
        url = raw.get("url") if isinstance(raw, dict) else None
        return (url if isinstance(url, str) else ""), self._tokens.load()

    def save(self, url: str, token: str) -> None:
        from agent.private_files import write_private_file

        write_private_file(
            self.path,
            (json.dumps({"url": url}, indent=2) + "\n").encode("utf-8"),
            prefix=".marketplace-",
        )
        self._tokens.save(token)


# --- the work done on the engine ----------------------------------------------------------------


async def read_state(client: MarketplaceClient, apps_dir: Path) -> MarketplaceState:
    """The catalog as cards and what ``installed`` lists for this backend's users."""
    catalog = await client.catalog()
    installed = await client.installed()
    cards = [
        AppCard(
            id=item.id,
            name=item.name,
            developer=item.developer,
            description=item.description,
            currency=item.prices.currency,
            prices={plan: getattr(item.prices, plan) for plan in PAID_PLANS},
            license_status=item.license.status.value if item.license else None,
            license_plan=item.license.plan.value if item.license else None,
            trial_taken=item.license is not None and item.license.trial_ends_at is not None,
            installed=item.installed,
            artifact_url=item.artifact.url,
            artifact_sha256=item.artifact.sha256,
            artifact_size=item.artifact.size,
        )
        for item in catalog.apps
    ]
    rows = [
        InstalledRow(app.id, app.name, app.license_status.value, (apps_dir / app.id).is_dir())
        for app in installed.apps
    ]
    return MarketplaceState(cards, rows)


async def install_app(
    client: MarketplaceClient,
    card: AppCard,
    apps_dir: Path,
    progress: Callable[[int, int], None],
) -> Path:
    """Download and verify the artifact, record the installation, then put the files in place.

    The files are downloaded into a staging directory beside ``apps/<id>/``; when the download
    does not match or the marketplace refuses the installation, the staging directory goes and
    ``apps/<id>/`` is as it was.
    """
    from agent.marketplace.client import download_artifact

    apps_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{card.id}-", dir=apps_dir))
    try:
        await download_artifact(
            card.artifact_url,
            card.artifact_sha256,
            card.artifact_size,
            staging / "files",
            progress,
        )
        await client.install(card.id)
        target = apps_dir / card.id
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".old-{card.id}-", dir=apps_dir))
            os.replace(target, old / "files")
            shutil.rmtree(old, ignore_errors=True)
        os.replace(staging / "files", target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("installed %s into %s", card.id, target)
    return target


async def uninstall_app(client: MarketplaceClient, app_id: str, apps_dir: Path) -> None:
    """Remove the installation at the marketplace, then the app's files."""
    await client.uninstall(app_id)
    target = apps_dir / app_id
    if target.is_dir() and target.parent == apps_dir:
        shutil.rmtree(target)
    log.info("uninstalled %s", app_id)


# --- the view-model -----------------------------------------------------------------------------


class MarketplaceViewModel(QueuedWork):
    """The connection, the catalog and the installed apps of one tenant backend.

    What the user asks for while other work runs waits its turn (:class:`QueuedWork`); an
    action that needs the connection is checked when its turn comes, so one asked for while
    the connection loads runs once it has loaded.
    """

    #: ``(url, token)`` as stored (the token empty when none is stored).
    connection_loaded = pyqtSignal(str, str)
    #: A :class:`MarketplaceState`.
    changed = pyqtSignal(object)
    #: ``(app_id, bytes done, bytes total)`` while an artifact downloads.
    progress = pyqtSignal(str, int, int)
    #: ``app_id`` once the files are verified, in place and the installation recorded.
    installed = pyqtSignal(str)
    uninstalled = pyqtSignal(str)
    #: ``(app_id, license status)`` after a license request.
    license_changed = pyqtSignal(str, str)
    saved = pyqtSignal()

    def __init__(
        self,
        engine: Engine,
        translator: Translator,
        data_dir: Path | Callable[[], Path],
        *,
        keyring_backend: KeyringBackend | None = None,
        defaults: tuple[str, str] | None = None,
        parent: QObject | None = None,
    ) -> None:
        """``data_dir`` may be a function (read on the engine, e.g. once the core is built);
        ``defaults`` (URL, admin token) fill in what is not stored (the demo's backend)."""
        super().__init__(engine, translator, parent)
        self._data_dir = data_dir
        self._keyring_backend = keyring_backend
        self._defaults = defaults
        self._store: ConnectionStore | None = None
        self._url = ""
        self._token = ""
        self._loaded = False
        self._state = MarketplaceState([], [])

    # --- what the panel reads -------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._loaded

    @property
    def state(self) -> MarketplaceState:
        return self._state

    @property
    def connected(self) -> bool:
        return bool(self._url and self._token)

    def card(self, app_id: str) -> AppCard | None:
        return next((c for c in self._state.cards if c.id == app_id), None)

    # --- actions (GUI thread) -------------------------------------------------------------------

    def load(self) -> bool:
        """Read the stored connection; connect when there is one (or the demo's)."""
        return self._act(
            lambda: self.submit(
                self._load(), self._got_connection, self._failed, what="marketplace"
            )
        )

    def save(self, url: str, token: str) -> bool:
        """Check and store the URL and the admin token, then load the catalog."""
        return self._act(
            lambda: self.submit(
                self._save(url.strip(), token.strip()),
                self._saved,
                self._failed,
                what="marketplace",
            )
        )

    def refresh(self) -> bool:
        return self._connected_act(self._read, self._got, "catalog")

    def start_trial(self, app_id: str) -> bool:
        return self.request_license(app_id, "trial")

    def request_license(self, app_id: str, plan: str) -> bool:
        async def work(client: MarketplaceClient) -> tuple[str, MarketplaceState]:
            lic = await client.request_license(app_id, plan)
            return lic.status.value, await self._read(client)

        def done(result: tuple[str, MarketplaceState]) -> None:
            status, state = result
            self._got(state)
            self.license_changed.emit(app_id, status)

        return self._connected_act(work, done, "license")

    def install(self, app_id: str) -> bool:
        card = self.card(app_id)
        if card is None:
            return False
        chosen: AppCard = card
        last = [-1]

        def progress(done: int, total: int) -> None:
            # Engine thread: one GUI update per percent, not one per chunk.
            percent = done * 100 // total if total else 100
            if percent != last[0]:
                last[0] = percent
                self.to_gui(lambda: self.progress.emit(app_id, done, total))

        async def work(client: MarketplaceClient) -> MarketplaceState:
            await install_app(client, chosen, self._apps_dir(), progress)
            return await self._read(client)

        def done(state: MarketplaceState) -> None:
            self._got(state)
            self.installed.emit(app_id)

        return self._connected_act(work, done, "install")

    def uninstall(self, app_id: str) -> bool:
        async def work(client: MarketplaceClient) -> MarketplaceState:
            await uninstall_app(client, app_id, self._apps_dir())
            return await self._read(client)

        def done(state: MarketplaceState) -> None:
            self._got(state)
            self.uninstalled.emit(app_id)

        return self._connected_act(work, done, "uninstall")

    def _connected_act(
        self, work: Callable[[MarketplaceClient], Any], done: Callable[[Any], None], what: str
    ) -> bool:
        """An action on the connected backend; when its turn comes without a connection it is
        not started (``False`` when that is now)."""
        if not self.connected and not self.busy:
            return False
        return self._act(
            lambda: (
                self.connected
                and self.submit(self._with_client(work), done, self._failed, what=what)
            )
        )

    # --- engine side ----------------------------------------------------------------------------

    def _data(self) -> Path:
        return self._data_dir() if callable(self._data_dir) else self._data_dir

    def _apps_dir(self) -> Path:
        return self._data() / APPS_DIR

    def _connection_store(self) -> ConnectionStore:
        if self._store is None:
            self._store = ConnectionStore(self._data(), keyring_backend=self._keyring_backend)
        return self._store

    async def _load(self) -> tuple[str, str, MarketplaceState | None]:
        url, token = self._connection_store().load()
        if self._defaults is not None:
            url, token = url or self._defaults[0], token or self._defaults[1]
        state = None
        if url and token:
            state = await self._client_call(url, token, self._read)
        return url, token or "", state

    async def _save(self, url: str, token: str) -> tuple[str, str, MarketplaceState]:
        from agent.config_checks import check_api_url

        url = check_api_url(url)
        if not token:
            raise ValueError("the Backend Admin Token is empty")
        # Checked before it is kept: a wrong token is refused and nothing is stored.
        state = await self._client_call(url, token, self._read)
        self._connection_store().save(url, token)
        return url, token, state

    async def _read(self, client: MarketplaceClient) -> MarketplaceState:
        return await read_state(client, self._apps_dir())

    async def _client_call(
        self, url: str, token: str, fn: Callable[[MarketplaceClient], Any]
    ) -> Any:
        from agent.marketplace.client import MarketplaceClient

        async with MarketplaceClient(url, token) as client:
            return await fn(client)

    async def _with_client(self, fn: Callable[[MarketplaceClient], Any]) -> Any:
        return await self._client_call(self._url, self._token, fn)

    # --- answers (GUI thread) -------------------------------------------------------------------

    def _reload(self) -> bool:
        return self.connected and self.submit(
            self._with_client(self._read), self._got, self._failed, what="catalog"
        )

    def _got_connection(self, result: tuple[str, str, MarketplaceState | None]) -> None:
        self._url, self._token, state = result
        self._loaded = True
        self.connection_loaded.emit(self._url, self._token)
        if state is not None:
            self._state = state
            self.changed.emit(state)
        self._next()

    def _saved(self, result: tuple[str, str, MarketplaceState]) -> None:
        self._got_connection(result)
        self.saved.emit()

    def _got(self, state: MarketplaceState) -> None:
        self._state = state
        self.changed.emit(state)
        self._next()

    def describe(self, exc: BaseException, what: str = "") -> str:
        # The module is loaded by now: the failure came from it.
        from agent.config_checks import InsecureApiUrl
        from agent.marketplace import client as mp

        from .errors import problem_text

        tr = self._tr.tr
        if isinstance(exc, mp.MarketplaceError | InsecureApiUrl):
            # The details (the server's English detail, sizes, digests) are for the log.
            log.warning("marketplace: %s failed: %s", what or "a request", exc)
        if isinstance(exc, mp.ArtifactDigestMismatch):
            return tr("marketplace.error.artifact_digest")
        if isinstance(exc, mp.ArtifactSizeMismatch):
            return tr("marketplace.error.artifact_size")
        if isinstance(exc, mp.ArtifactDownloadFailed):
            return tr("marketplace.error.download")
        reason = problem_text(exc, self._tr)
        if isinstance(exc, mp.AdminTokenRejected):
            return tr("marketplace.error.token", reason=reason)
        if isinstance(exc, mp.MarketplaceLicenseInactive):
            return tr("marketplace.error.license_inactive")
        if isinstance(exc, mp.LicenseConflict):
            return tr("marketplace.error.conflict", reason=reason)
        if isinstance(exc, mp.AppNotFound):
            return tr("marketplace.error.not_found")
        if isinstance(exc, mp.MarketplaceUnreachable):
            return tr("marketplace.error.unreachable")
        if isinstance(exc, mp.MarketplaceRequestError):
            return tr("marketplace.error.refused", reason=reason)
        if isinstance(exc, InsecureApiUrl):
            return tr("marketplace.error.url")
        return super().describe(exc, what)
