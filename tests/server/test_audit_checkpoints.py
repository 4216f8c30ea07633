"""Audit checkpoints are signed through the Signer (the key file, or a real SoftHSM2 token), the
server's and the offline verifier accept them when the key is trusted, and `audit verify` says
how many entries wait after the last checkpoint and since when. SQLite and PostgreSQL."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from agent.audit_verify import main as verify_main
from agent.audit_verify import pinned_keys, verify_export
from agent.protocol import AUDIT_CHECKPOINT_TYP, KEY_PURPOSE_LICENSE, audit_time, public_key_pin
from server_stub.errors import ServiceUnavailable
from server_stub.services.audit.checkpoints import sign_checkpoint
from server_stub.services.staff import Role
from server_stub.signing import FileSigner, Pkcs11Signer, SignerError
from server_stub.signing.file import FileKeyHandle
from tests.helpers.audit import fill, run_verify, sql
from tests.helpers.backend import Backend, BackendFactory
from tests.helpers.softhsm import SoftHsmToken, pkcs11_settings, session_token
from tests.helpers.staff import new_staff


@pytest.fixture(scope="session")
def softhsm_token(tmp_path_factory: pytest.TempPathFactory) -> SoftHsmToken:
    return session_token(tmp_path_factory)


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("TGFLOW_LOG_LEVEL", "WARNING")
    return monkeypatch


def _point_cli_at(env: pytest.MonkeyPatch, backend: Backend, **settings: object) -> None:
    env.setenv("TGFLOW_DATABASE_URL", backend.database_url)
    for name, value in settings.items():
        env.setenv(f"TGFLOW_{name.upper()}", str(value))


def _export_verdict(backend: Backend, pins: list[str], tmp_path: Path) -> tuple[int, int]:
    """The library's and the command line's verdicts on an export, trusting ``pins`` only."""
    lines = list(backend.services.audit.export())
    jwks = backend.client.get("/.well-known/jwks.json").json()
    verdict = verify_export(lines, pinned_keys(jwks, pins))
    export, jwks_file = tmp_path / "export.jsonl", tmp_path / "jwks.json"
    export.write_text("".join(lines), encoding="utf-8")
    jwks_file.write_text(json.dumps(jwks), encoding="utf-8")
    argv = [str(export), "--jwks", str(jwks_file)]
    for pin in pins:
        argv += ["--pin", pin]
    return (0 if verdict.ok else 1), verify_main(argv)


def test_with_pkcs11_the_token_signs_the_checkpoints_and_both_verifiers_accept_them(
    softhsm_token: SoftHsmToken,
    make_backend: BackendFactory,
    cli_env: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pkcs11 = pkcs11_settings(softhsm_token)
    backend = make_backend(**pkcs11)
    signer = backend.services.signer
    assert isinstance(signer, Pkcs11Signer)
    file_key = backend.services.ctx.keys.signing_key(KEY_PURPOSE_LICENSE)
    fill(backend)
    checkpoint = backend.services.audit.checkpoint()
    assert checkpoint is not None
    header = jwt.get_unverified_header(checkpoint.jws)
    assert header == {"alg": "ES256", "kid": signer.kid, "typ": AUDIT_CHECKPOINT_TYP}
    assert header["kid"] != file_key.kid  # not the key file's license key
    claims = jwt.decode(checkpoint.jws, signer.public_key, algorithms=["ES256"])
    assert (claims["seq"], claims["hash"]) == (6, checkpoint.hash)

    verdict = backend.services.audit.verify()
    assert verdict.ok and verdict.unanchored == 0 and verdict.last_checkpoint_seq == 6
    _point_cli_at(cli_env, backend, **pkcs11)
    code, out = run_verify(backend, capsys)
    assert code == 0 and "audit log intact: 6 entries" in out, out
    assert "last checkpoint: entry 6" in out

    # Offline: the token's pin (from the JWKS the server publishes) is what an auditor trusts;
    # the key file's license pin alone trusts none of these checkpoints.
    assert _export_verdict(backend, [public_key_pin(signer.public_key)], tmp_path) == (0, 0)
    assert "last checkpoint: entry 6, signed " in capsys.readouterr().out
    assert _export_verdict(backend, [file_key.pin], tmp_path) == (1, 1)
    assert "not trusted" in capsys.readouterr().err


def test_a_server_moved_from_the_key_file_to_a_token_verifies_both_kinds_of_checkpoint(
    softhsm_token: SoftHsmToken, make_backend: BackendFactory
) -> None:
    before = make_backend()
    assert isinstance(before.services.signer, FileSigner)
    fill(before, 3)
    first = before.services.audit.checkpoint()
    assert first is not None
    file_kid = before.services.ctx.keys.signing_key(KEY_PURPOSE_LICENSE).kid
    assert jwt.get_unverified_header(first.jws)["kid"] == file_kid

    after = make_backend(**pkcs11_settings(softhsm_token))  # same database, same data dir
    fill(after, 3)
    second = after.services.audit.checkpoint()
    assert second is not None and second.seq == 6
    assert jwt.get_unverified_header(second.jws)["kid"] == after.services.signer.current().kid
    verdict = after.services.audit.verify()
    assert verdict.ok and (verdict.entries, verdict.last_checkpoint_seq) == (6, 6), verdict.reason


@dataclass(frozen=True)
class _OneKey:
    handle: FileKeyHandle

    def current(self) -> FileKeyHandle:
        return self.handle


def test_a_checkpoint_by_a_key_the_server_never_held_is_refused(backend: Backend) -> None:
    """Trust comes from the key files and the signer, never from what the database holds."""

    fill(backend, 2)
    stranger = FileKeyHandle(kid="stranger", private_key=ec.generate_private_key(ec.SECP256R1()))
    forged = sign_checkpoint(
        _OneKey(stranger),
        backend.settings.issuer,
        2,
        backend.services.audit.search(limit=1).entries[0].hash,
        backend.clock.now(),
    )
    sql(
        backend,
        "INSERT INTO audit_checkpoints (seq, hash, signed_at, jws) VALUES (2, :h, :at, :jws)",
        h=forged.hash,
        at=backend.clock.now(),
        jws=forged.jws,
    )
    verdict = backend.services.audit.verify()
    assert (verdict.ok, verdict.broken_seq) == (False, 2)
    assert "not trusted (stranger)" in (verdict.reason or "")


class _Unplugged:
    """A signer whose token went away after start-up."""

    def current(self) -> FileKeyHandle:
        raise SignerError("PKCS#11 signing failed: token not present")


def test_a_signer_that_fails_is_a_503_not_a_500(backend: Backend) -> None:
    auditor = new_staff(backend.client, backend.services, backend.clock, Role.AUDIT)
    backend.services.audit._signer = _Unplugged()  # what the token does when it is pulled out
    r = backend.client.get("/staff/audit/export", headers=auditor.headers)
    assert r.status_code == 503 and r.json()["code"] == "service_unavailable", r.text
    with pytest.raises(ServiceUnavailable):  # the sweeper logs it and tries at its next round
        backend.services.audit.checkpoint_due()
    verdict = backend.services.audit.verify()  # verifying needs no signature
    assert verdict.ok and verdict.last_checkpoint_seq is None


# --- the window after the last checkpoint -------------------------------------------------------


def test_verify_reports_the_entries_after_the_last_checkpoint_and_its_age(
    make_backend: BackendFactory, cli_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    backend = make_backend()
    _point_cli_at(cli_env, backend)
    fill(backend, 2)
    code, out = run_verify(backend, capsys)
    assert code == 0 and "2 not yet under a signed checkpoint" in out
    assert "no signed checkpoint yet" in out and "WARNING" in out

    signed_at = backend.clock.now()
    backend.services.audit.checkpoint()
    fill(backend, 3)
    backend.clock.advance(120)
    verdict = backend.services.audit.verify()
    assert (verdict.unanchored, verdict.last_checkpoint_seq) == (3, 2)
    assert verdict.last_checkpoint_at == signed_at.replace(microsecond=0)  # the JWS's iat
    # The CLI runs on the real clock, so the age it prints is not the fake one; its form is.
    code, out = run_verify(backend, capsys)
    assert code == 0 and "3 not yet under a signed checkpoint" in out
    assert "last checkpoint: entry 2, signed " in out and " s ago)" in out

    # The wire says the same.
    auditor = new_staff(backend.client, backend.services, backend.clock, Role.AUDIT)
    body = backend.client.get("/staff/audit/verify", headers=auditor.headers).json()
    assert body["ok"] and body["last_checkpoint_seq"] == 2
    assert body["last_checkpoint_at"] == audit_time(signed_at.replace(microsecond=0))
    assert body["unanchored"] == body["head_seq"] - 2

    # Overdue once the interval and two sweeps have passed with entries waiting.
    settings = backend.settings
    slack = settings.audit_checkpoint_interval_seconds + 2 * settings.sweep_interval_seconds
    # The JWS's iat is whole seconds; signed_at had none to lose (the fake clock's start).
    backend.clock.advance(slack - (backend.clock.now() - signed_at).total_seconds())
    assert backend.services.audit.checkpoint_overdue(backend.services.audit.verify()) is False
    backend.clock.advance(1)
    assert backend.services.audit.checkpoint_overdue(backend.services.audit.verify())


def test_the_default_window_is_five_minutes_or_a_hundred_entries(
    make_backend: BackendFactory,
) -> None:
    backend = make_backend()
    audit = backend.services.audit
    fill(backend, 1)
    audit.checkpoint_due()
    fill(backend, 99)
    backend.clock.advance(299)
    audit.checkpoint_due()
    assert audit.verify().unanchored == 99  # neither 300 s nor 100 entries yet
    fill(backend, 1)
    audit.checkpoint_due()
    assert audit.verify().unanchored == 0  # 100 entries
    fill(backend, 1)
    backend.clock.advance(300)
    audit.checkpoint_due()
    assert audit.verify().unanchored == 0  # 300 s
