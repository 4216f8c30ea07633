"""A tenant backend's client of the marketplace (docs/marketplace.md, "HTTP"), and the artifact
download that installing an app needs.

:class:`MarketplaceClient` speaks the Backend Admin Token endpoints (catalog, licenses,
installations, user tokens) and ``GET /marketplace/installed``. Every refusal becomes a typed
error of the :class:`MarketplaceRequestError` family carrying the problem-details ``code`` and
``detail``; a server that cannot be reached is :class:`MarketplaceUnreachable`.

:func:`download_artifact` streams an app's artifact to a temporary file beside its destination,
checks its size and SHA-256, and only then renames it into place: a mismatch leaves nothing
behind. Qt-free, like the rest of ``agent``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Final, TypeVar
from urllib.parse import quote, unquote, urlsplit

import httpx
from pydantic import BaseModel, ValidationError

from agent.config_checks import InsecureApiUrl, check_api_url
from agent.marketplace.errors import MarketplaceError
from agent.protocol import (
    Catalog,
    ErrorCode,
    InstallationOut,
    InstallationRequest,
    InstalledApps,
    LicenseRequest,
    MarketplaceLicense,
    MarketplacePlan,
    Problem,
    UserTokenResponse,
)
from agent.usage_http import parse_answer

__all__ = [
    "AdminTokenRejected",
    "AppNotFound",
    "ArtifactDigestMismatch",
    "ArtifactDownloadFailed",
    "ArtifactError",
    "ArtifactSizeMismatch",
    "LicenseConflict",
    "MarketplaceClient",
    "MarketplaceLicenseInactive",
    "MarketplaceRequestError",
    "MarketplaceUnreachable",
    "download_artifact",
]

#: Seconds to wait for the marketplace (connect and each read).
DEFAULT_TIMEOUT: Final = 30.0
#: Bytes read from the network per step of an artifact download.
CHUNK_BYTES: Final = 64 * 1024
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")

_M = TypeVar("_M", bound=BaseModel)


# --- errors -------------------------------------------------------------------------------------


class MarketplaceRequestError(MarketplaceError):
    """The marketplace refused a request; :attr:`problem_code` and :attr:`status` say how."""

    #: The problem-details codes a subclass stands for.
    codes: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, reason: str, *, problem_code: str | None = None, status: int = 0) -> None:
        """Carry the server's ``detail`` as ``reason``, with its ``code`` and HTTP ``status``."""
        super().__init__(reason)
        self.problem_code = problem_code
        self.status = status


class AdminTokenRejected(MarketplaceRequestError):
    """The Backend Admin (or User) Token is invalid, expired, re-issued, or of the wrong type."""

    codes = frozenset({ErrorCode.TOKEN_INVALID, ErrorCode.TOKEN_EXPIRED, ErrorCode.FORBIDDEN})


class AppNotFound(MarketplaceRequestError):
    """The app is not in the catalog."""

    codes = frozenset({ErrorCode.NOT_FOUND})


class MarketplaceLicenseInactive(MarketplaceRequestError):
    """Installing needs an active or trial license; or the operator revoked the license."""

    codes = frozenset({ErrorCode.LICENSE_INACTIVE})


class LicenseConflict(MarketplaceRequestError):
    """The license cannot change that way (a second trial; another plan while one is paid)."""

    codes = frozenset({ErrorCode.IDEMPOTENCY_CONFLICT, ErrorCode.ALREADY_EXISTS})


class MarketplaceUnreachable(MarketplaceError):
    """The marketplace (or the artifact's host) cannot be reached."""


_REFUSALS: Final = (AdminTokenRejected, AppNotFound, MarketplaceLicenseInactive, LicenseConflict)


def _problem_error(method: str, path: str, response: httpx.Response) -> MarketplaceRequestError:
    try:
        problem = Problem.model_validate_json(response.content)
    except ValidationError:
        return MarketplaceRequestError(
            f"{method} {path}: HTTP {response.status_code} without problem details",
            status=response.status_code,
        )
    code = problem.code.value
    for cls in _REFUSALS:
        if code in cls.codes:
            return cls(problem.detail, problem_code=code, status=response.status_code)
    return MarketplaceRequestError(
        f"{problem.detail} ({code})", problem_code=code, status=response.status_code
    )


class ArtifactError(MarketplaceError):
    """An app's artifact could not be installed; nothing was left in the destination."""


class ArtifactSizeMismatch(ArtifactError):
    """The artifact is bigger or smaller than the catalog says."""


class ArtifactDigestMismatch(ArtifactError):
    """The artifact's SHA-256 is not the one the catalog says."""


class ArtifactDownloadFailed(ArtifactError):
    """The artifact's host refused it, answered with an error, or the connection broke."""


# --- the client ---------------------------------------------------------------------------------


class MarketplaceClient:
    """The marketplace as a tenant backend's admin sees it, over HTTP (async, httpx).

    ``base_url`` must be ``https://`` (``http://`` only for a loopback host: the admin token must
    never cross a network in clear); :class:`agent.config_checks.InsecureApiUrl` otherwise.
    ``transport`` replaces httpx's network transport (tests). Use it as an async context manager
    or call :meth:`aclose`.
    """

    def __init__(
        self,
        base_url: str,
        admin_token: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        """Talk to the marketplace at ``base_url`` with the Backend Admin Token ``admin_token``."""
        self.base_url = check_api_url(base_url.strip())
        if not admin_token.strip():
            raise ValueError("the Backend Admin Token is empty")
        self._admin = {"Authorization": f"Bearer {admin_token.strip()}"}
        self._http = httpx.AsyncClient(
            base_url=self.base_url, transport=transport, timeout=timeout, follow_redirects=False
        )

    async def __aenter__(self) -> MarketplaceClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def catalog(self) -> Catalog:
        """Every listed app with this backend's license status and install state."""
        return await self._get("GET", "/marketplace/catalog", Catalog)

    async def request_license(self, app_id: str, plan: MarketplacePlan | str) -> MarketplaceLicense:
        """Start the trial (``trial``) or order a paid plan (``pending`` until paid)."""
        body = LicenseRequest(app_id=app_id, plan=MarketplacePlan(plan))
        return await self._get("POST", "/marketplace/licenses", MarketplaceLicense, body=body)

    async def install(
        self, app_id: str, config: Mapping[str, Any] | None = None
    ) -> InstallationOut:
        """Record the installation (needs a ``trial`` or ``active`` license; idempotent)."""
        body = InstallationRequest(app_id=app_id, config=dict(config or {}))
        return await self._get("POST", "/marketplace/installations", InstallationOut, body=body)

    async def uninstall(self, app_id: str) -> None:
        """Remove the installation (idempotent; :class:`AppNotFound` for an unknown app)."""
        await self._send("DELETE", f"/marketplace/installations/{quote(app_id, safe='')}")

    async def user_token(self) -> UserTokenResponse:
        """A Backend User Token (1 hour) for this backend's users."""
        return await self._get("POST", "/marketplace/user-tokens", UserTokenResponse)

    async def installed(self, user_token: str | None = None) -> InstalledApps:
        """The apps installed on this backend and licensed now, as its users see them.

        Asked with ``user_token`` (a Backend User Token); without one a new one is obtained first.
        """
        token = user_token or (await self.user_token()).token
        return await self._get(
            "GET",
            "/marketplace/installed",
            InstalledApps,
            headers={"Authorization": f"Bearer {token}"},
        )

    async def _get(
        self,
        method: str,
        path: str,
        model: type[_M],
        *,
        body: BaseModel | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> _M:
        response = await self._send(method, path, body=body, headers=headers)
        return parse_answer(
            response,
            model,
            lambda name, status: MarketplaceRequestError(
                f"{method} {path}: the answer is not a valid {name}", status=status
            ),
        )

    async def _send(
        self,
        method: str,
        path: str,
        *,
        body: BaseModel | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        sent = dict(headers or self._admin)
        content = None
        if body is not None:
            content = body.model_dump_json().encode()
            sent["Content-Type"] = "application/json"
        try:
            response = await self._http.request(method, path, headers=sent, content=content)
        except httpx.TransportError as exc:
            raise MarketplaceUnreachable(
                f"the marketplace at {self.base_url} cannot be reached: {type(exc).__name__}"
            ) from exc
        if not response.is_success:
            raise _problem_error(method, path, response)
        return response


# --- artifacts ----------------------------------------------------------------------------------


def artifact_file_name(url: str) -> str:
    """The file name an artifact is stored under: the URL's last path segment, made safe."""
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    name = _SAFE_NAME.sub("_", name).lstrip(".")
    return name[:128] or "artifact"


async def download_artifact(
    url: str,
    expected_sha256: str,
    expected_size: int,
    dest_dir: Path,
    progress: Callable[[int, int], None] | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Path:
    """Download ``url`` into ``dest_dir`` and return the file's path, only if it is exactly right.

    The body streams into a temporary file in ``dest_dir`` (created when missing) while its
    SHA-256 is computed; at most ``expected_size + 1`` bytes of the body are taken in (the extra
    byte proves it too big; a ``Content-Length`` that differs is refused before any). Only when the
    size is exactly ``expected_size`` and the digest is ``expected_sha256`` is the file fsync'd and
    renamed into place (atomic). Otherwise the temporary file is removed, and ``dest_dir`` too if
    this call created it, and :class:`ArtifactSizeMismatch`, :class:`ArtifactDigestMismatch` or
    :class:`ArtifactDownloadFailed` is raised. ``url`` (and every redirect) must be ``https://``,
    ``http://`` only for a loopback host. ``progress(done, total)`` is called with the bytes
    received so far, increasing, and ``total`` = ``expected_size``.
    """
    if not re.fullmatch(r"[0-9a-fA-F]{64}", expected_sha256):
        raise ValueError("expected_sha256 must be 64 hex digits")
    if expected_size < 0:
        raise ValueError("expected_size must not be negative")
    try:
        check_api_url(url)
    except InsecureApiUrl as exc:
        raise ArtifactDownloadFailed(str(exc).replace("API URL", "artifact URL")) from exc
    dest_dir = Path(dest_dir)
    created = not dest_dir.exists()
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / artifact_file_name(url)
    fd, temp_name = tempfile.mkstemp(prefix=".download-", dir=dest_dir)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest = await _stream(url, expected_size, out, progress, transport, timeout)
            out.flush()
            os.fsync(out.fileno())
        if not hmac.compare_digest(digest, expected_sha256.lower()):
            raise ArtifactDigestMismatch(
                f"the artifact's SHA-256 is {digest}, the catalog says {expected_sha256.lower()}"
            )
        os.replace(temp, target)
        _fsync_dir(dest_dir)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)
        if created:
            with contextlib.suppress(OSError):
                dest_dir.rmdir()
        raise
    return target


async def _stream(
    url: str,
    expected_size: int,
    out: Any,
    progress: Callable[[int, int], None] | None,
    transport: httpx.AsyncBaseTransport | None,
    timeout: float,
) -> str:
    async def refuse_insecure_redirect(request: httpx.Request) -> None:
        try:
            check_api_url(str(request.url))
        except InsecureApiUrl as exc:
            raise ArtifactDownloadFailed(f"refusing to follow a redirect: {exc}") from exc

    sha = hashlib.sha256()
    done = 0
    async with httpx.AsyncClient(
        transport=transport,
        timeout=timeout,
        follow_redirects=True,
        event_hooks={"request": [refuse_insecure_redirect]},
    ) as http:
        try:
            # identity: a compressed body would be inflated before its size could be checked.
            async with http.stream("GET", url, headers={"Accept-Encoding": "identity"}) as resp:
                if not resp.is_success:
                    raise ArtifactDownloadFailed(f"GET {url}: HTTP {resp.status_code}")
                announced = resp.headers.get("Content-Length")
                if (
                    announced is not None
                    and announced.isdigit()
                    and int(announced) != expected_size
                ):
                    raise ArtifactSizeMismatch(
                        f"the artifact is {int(announced)} bytes, the catalog says {expected_size}"
                    )
                async for received in resp.aiter_raw(CHUNK_BYTES):
                    # Never take in more than one byte past the size: that byte proves it wrong.
                    chunk = received[: expected_size + 1 - done]
                    done += len(chunk)
                    if done > expected_size:
                        raise ArtifactSizeMismatch(
                            f"the artifact is bigger than the {expected_size} bytes the catalog "
                            "says"
                        )
                    sha.update(chunk)
                    out.write(chunk)
                    if progress is not None and chunk:
                        progress(done, expected_size)
        except httpx.TransportError as exc:
            raise ArtifactDownloadFailed(
                f"the artifact could not be downloaded: {type(exc).__name__}"
            ) from exc
    if done != expected_size:
        raise ArtifactSizeMismatch(
            f"the artifact is {done} bytes, the catalog says {expected_size}"
        )
    return sha.hexdigest()


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
