"""Online activation and heartbeats of an on-prem installation (docs/license-files.md, "Online
activation and heartbeats"), over the product API (``/licenses/activate``, ``/heartbeat``).

:class:`OnlineActivation` activates this machine with a license key, verifies the signed machine
activation it gets back against the pinned ``license`` key, keeps the license file in the
:class:`LicenseFileStore` and the activation beside it (``activation.json``, 0600). Each
:meth:`OnlineActivation.heartbeat` applies the server's answer: a newer file is stored (a
renewal or upgrade is picked up), the revocation list is offered to the
:class:`RevocationStore`, a revoked, suspended or expired license is refused here from then on
(persisted), and a freed activation must be activated again. When the server cannot be reached
nothing changes: the offline rules of the kept file (its own expiry, the clock, the newest
revocation list seen) go on deciding.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from agent.clock import Clock, SystemClock
from agent.errors import (
    ActivationRequired,
    LicenseError,
    LicenseFileExpired,
    LicenseInactive,
    LicenseRevoked,
    Offline,
    TokenRejected,
    UnexpectedResponse,
    error_class_for,
)
from agent.private_files import write_private_file
from agent.protocol import (
    ActivateRequest,
    ActivateResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    ReportedError,
)
from agent.tokens import DEFAULT_ISSUER

from .activation import verify_machine_activation
from .documents import DocumentVerifier, parse_armour
from .files import License
from .store import LicenseFileStore

log = logging.getLogger("tgflow.agent.licensing")

#: Name of the activation's file, beside ``license-file.json``.
ACTIVATION_FILE_NAME: Final = "activation.json"
_FORMAT: Final = "tgflow.activation/1"
#: The server's states after which this installation refuses the license until told otherwise.
_REFUSING: Final = frozenset({"revoked", "suspended", "expired"})
_Reply = TypeVar("_Reply", bound=BaseModel)


@dataclass(frozen=True)
class HeartbeatOutcome:
    """What one heartbeat changed."""

    #: False: the server could not be reached; the kept file's offline rules apply.
    reached: bool
    state: str | None = None
    #: The file version newly stored (a renewal or upgrade), if any.
    new_file_version: int | None = None
    #: The server freed this machine's activation: :meth:`OnlineActivation.activate` again.
    must_reactivate: bool = False
    next_heartbeat_s: int | None = None
    mandatory_min_version: str | None = None


class OnlineActivation:
    """This installation's online activation. Thread-safe."""

    def __init__(
        self,
        api_base_url: str,
        store: LicenseFileStore,
        documents: DocumentVerifier,
        *,
        fingerprint: str,
        server_id: str,
        issuer: str = DEFAULT_ISSUER,
        http: httpx.Client | None = None,
        clock: Clock | None = None,
    ) -> None:
        """Talk to ``api_base_url``; keep the file in ``store`` and the activation beside it.

        ``documents`` verifies the machine activation (the same pinned keys as the store's).
        ``fingerprint`` is this machine's (:mod:`agent.fingerprint`), ``server_id`` its name.
        """
        self.store = store
        self.path = store.path.parent / ACTIVATION_FILE_NAME
        self._documents = documents
        self._fingerprint = fingerprint
        self._server_id = server_id
        self._issuer = issuer
        self._base = api_base_url.rstrip("/")
        self._owns_http = http is None
        self._http = http or httpx.Client(timeout=15)
        self._clock: Clock = clock or SystemClock()
        self._lock = threading.Lock()

    def activate(
        self,
        license_key: str,
        *,
        modules: Sequence[str] = (),
        replace_activation_id: str | None = None,
    ) -> License:
        """Activate this machine online and keep the license file; returns the license.

        Raises the problem's error class (:class:`LicenseInactive`, :class:`DeviceLimit`,
        :class:`NotFound`, …; :class:`UnexpectedResponse` for ``forbidden``/``rate_limited``),
        :class:`TokenRejected` for a reply that is not genuine or not for this machine,
        what :meth:`LicenseFileStore.activate` raises for the file, and :class:`Offline` when
        the server cannot be reached.
        """
        verifier = self.store.verifier
        body = ActivateRequest(
            license_key=license_key,
            fingerprint=self._fingerprint,
            server_id=self._server_id,
            product_version=".".join(str(p) for p in verifier.product_version),
            domain=verifier.domain,
            modules=tuple(modules),
            replace_activation_id=replace_activation_id,
        )
        reply = self._post("/licenses/activate", body, ActivateResponse)
        carried = parse_armour(reply.license_file).carried_key
        with self._lock:
            claims = verify_machine_activation(
                self._documents,
                reply.activation,
                issuer=self._issuer,
                license_key=license_key,
                fingerprint=self._fingerprint,
                now=self._clock.now(),
                carried_key=carried,
            )
            if claims.activation_id != reply.activation_id:
                raise UnexpectedResponse("the machine activation names another activation")
            lic = self.store.activate(reply.license_file, license_key)
            if lic.file_version != claims.file_version:
                raise UnexpectedResponse("the machine activation is for another file version")
            self._save(
                {
                    "license_key": license_key,
                    "activation_id": reply.activation_id,
                    "activation": reply.activation,
                    "file_version": lic.file_version,
                    # The file's Signing-Key (trusted only if pinned) verifies the revocation
                    # lists of later heartbeats when this installation has no JWKS cache.
                    "signing_key": dict(carried) if carried is not None else None,
                    "refused": None,
                    "must_reactivate": False,
                }
            )
            return lic

    def heartbeat(
        self, *, modules: Sequence[str] = (), errors: Sequence[ReportedError] = ()
    ) -> HeartbeatOutcome:
        """Send a heartbeat and apply the reply (see the module); a network failure changes
        nothing and returns ``reached=False``. Raises :class:`ActivationRequired` before the
        first activation, and the problem's error class for a refusal."""
        with self._lock:
            state = self._load()
        if state is None:
            raise ActivationRequired("this machine has not been activated online")
        verifier = self.store.verifier
        body = HeartbeatRequest(
            license_key=state["license_key"],
            activation_id=state["activation_id"],
            fingerprint=self._fingerprint,
            product_version=".".join(str(p) for p in verifier.product_version),
            file_version=state["file_version"],
            modules=tuple(modules),
            errors=tuple(errors)[:20],
        )
        try:
            reply = self._post("/licenses/heartbeat", body, HeartbeatResponse)
        except Offline as exc:
            # Not reached: the kept file's offline rules go on deciding.
            log.warning("heartbeat failed: %s; working offline on the kept file", exc)
            return HeartbeatOutcome(reached=False)
        return self._apply(state, reply)

    def check(self) -> License:
        """The kept license, verified now; refused while the server last said revoked,
        suspended or expired, or freed this machine's activation."""
        with self._lock:
            state = self._load()
        if state is not None:
            refused = state.get("refused")
            if refused == "revoked":
                raise LicenseRevoked("the server revoked this license")
            if refused == "suspended":
                raise LicenseInactive("the server suspended this license")
            if refused == "expired":
                raise LicenseFileExpired("the server says this license has expired")
            if state.get("must_reactivate"):
                raise ActivationRequired(
                    "the server freed this machine's activation; activate the license again"
                )
        return self.store.check()

    def close(self) -> None:
        """Close the HTTP client if this object made it (one passed in is the caller's)."""
        if self._owns_http:
            self._http.close()

    # --- internals ----------------------------------------------------------------------------

    def _apply(self, state: dict[str, Any], reply: HeartbeatResponse) -> HeartbeatOutcome:
        try:
            key = state.get("signing_key")
            self.store.verifier.revocations.offer(
                reply.revocation_list, key if isinstance(key, dict) else None
            )
        except TokenRejected as exc:
            log.warning("the heartbeat's revocation list is refused: %s", exc)
        new_version: int | None = None
        with self._lock:
            if reply.license_file is not None and reply.activation_live:
                lic = self.store.activate(reply.license_file, state["license_key"])
                carried = parse_armour(reply.license_file).carried_key
                if carried is not None:
                    state["signing_key"] = dict(carried)
                if lic.file_version > state["file_version"]:
                    new_version = lic.file_version
                state["file_version"] = lic.file_version
            if reply.state in _REFUSING:
                state["refused"] = reply.state
            elif reply.state in ("active", "in_grace") and state.get("refused") != "revoked":
                state["refused"] = None  # a suspension was lifted (a revocation is final)
            state["must_reactivate"] = not reply.activation_live
            self._save(state)
        return HeartbeatOutcome(
            reached=True,
            state=reply.state,
            new_file_version=new_version,
            must_reactivate=not reply.activation_live,
            next_heartbeat_s=reply.next_heartbeat_s,
            mandatory_min_version=reply.mandatory_min_version,
        )

    def _post(self, path: str, body: BaseModel, reply_type: type[_Reply]) -> _Reply:
        try:
            response = self._http.post(
                self._base + path,
                content=body.model_dump_json(),
                headers={"Content-Type": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise Offline(f"the license server cannot be reached: {exc}") from exc
        if response.status_code != 200:
            raise _problem(response)
        try:
            return reply_type.model_validate_json(response.content)
        except ValidationError as exc:
            raise UnexpectedResponse(
                f"the license server's reply is malformed: {exc}", status=response.status_code
            ) from exc

    def _load(self) -> dict[str, Any] | None:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ActivationRequired(f"{self.path} cannot be read ({exc}); activate again") from exc
        if not isinstance(document, dict) or document.get("format") != _FORMAT:
            raise ActivationRequired(f"{self.path} is damaged; activate again")
        return document

    def _save(self, state: dict[str, Any]) -> None:
        document = {**state, "format": _FORMAT}
        write_private_file(self.path, json.dumps(document).encode("utf-8"), prefix=".activation-")


def _problem(response: httpx.Response) -> LicenseError:
    try:
        body = response.json()
    except ValueError:
        body = None
    code = body.get("code") if isinstance(body, dict) else None
    detail = body.get("detail") if isinstance(body, dict) else None
    reason = str(detail or f"the license server answered {response.status_code}")
    cls = error_class_for(code) if isinstance(code, str) else None
    if cls is not None:
        return cls(reason)
    return UnexpectedResponse(
        reason, status=response.status_code, problem_code=code if isinstance(code, str) else None
    )
