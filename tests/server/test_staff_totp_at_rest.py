"""Staff TOTP secrets at rest: AES-256-GCM under the server's TOTP key and bound to the staff id;
TOTP fails closed (503, never a 500, never a login) without the right key; plain secrets from
before are encrypted at start-up; processes sharing a data dir or TGFLOW_TOTP_KEY share the key.
SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import logging
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pyotp
import pytest
from alembic import command
from sqlalchemy import inspect, text

from server_stub import db
from server_stub.services.staff import Role
from server_stub.services.staff.totp_vault import KEY_FILE
from tests.helpers.audit import alembic_config, sql
from tests.helpers.backend import Backend, BackendFactory
from tests.helpers.staff import StaffLogin, code_at, login, new_staff


def stored_secret(backend: Backend, staff_id: str) -> str | None:
    """The encrypted secret; the plain column beside it must be empty."""
    with backend.services.ctx.engine.connect() as conn:
        plain, sealed = conn.execute(
            text("SELECT totp_secret, totp_secret_sealed FROM staff WHERE id = :id"),
            {"id": staff_id},
        ).one()
    assert plain is None
    return None if sealed is None else str(sealed)


def code_login(backend: Backend, member: StaffLogin, offset_steps: int = 0) -> int:
    assert member.secret is not None
    backend.clock.advance(30)  # a fresh step: a code is never accepted twice
    r = login(backend.client, member.email, otp=code_at(member.secret, backend.clock, offset_steps))
    if r.status_code == 503:
        problem = r.json()
        assert problem["code"] == "service_unavailable", problem
        assert "TOTP key" in problem["detail"] and member.secret not in r.text
    return r.status_code


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode("ascii")


def test_the_secret_is_stored_encrypted_and_never_shown_again(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    member = new_staff(backend.client, backend.services, backend.clock, Role.SALES)
    assert member.secret is not None
    stored = stored_secret(backend, member.id)
    assert stored is not None and stored.startswith("v1:") and member.secret not in stored
    assert code_login(backend, member) == 200
    me = backend.client.get("/staff/me", headers=member.headers)
    assert me.status_code == 200 and member.secret not in me.text
    assert member.secret not in caplog.text
    key_file = backend.settings.data_dir / "keys" / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_a_secret_moved_to_another_account_does_not_open(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    alice = new_staff(backend.client, backend.services, backend.clock, Role.ADMIN)
    bob = new_staff(backend.client, backend.services, backend.clock, Role.SALES)
    sql(
        backend,
        "UPDATE staff SET totp_secret_sealed = :s WHERE id = :bob",
        s=stored_secret(backend, alice.id),
        bob=bob.id,
    )
    # Bob's row now carries Alice's encrypted secret: neither her codes nor his open it.
    bob_with_alices_codes = StaffLogin(**{**bob.__dict__, "secret": alice.secret})
    with caplog.at_level(logging.ERROR, logger="tgflow.server.staff"):
        assert code_login(backend, bob_with_alices_codes) == 503
        assert code_login(backend, bob) == 503
    assert f"TOTP secret of staff {bob.id} does not open" in caplog.text
    assert code_login(backend, alice) == 200


def test_a_wrong_key_refuses_totp_and_a_restored_one_lets_it_in(
    make_backend: BackendFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = make_backend()
    member = new_staff(first.client, first.services, first.clock, Role.ADMIN)
    key_file = first.settings.data_dir / "keys" / KEY_FILE
    # Another process on the same database with a key of its own (not the shared data dir).
    other_key = tmp_path / "elsewhere" / "keys" / KEY_FILE
    other_key.parent.mkdir(parents=True)
    other_key.write_text(new_key(), encoding="ascii")
    assert other_key.read_text() != key_file.read_text()
    stranger = make_backend(data_dir=tmp_path / "elsewhere")
    with caplog.at_level(logging.ERROR, logger="tgflow.server.staff"):
        assert code_login(stranger, member) == 503
    assert "does not open with the key from" in caplog.text
    # Recovery codes are hashes, not sealed: they still let the staff member in.
    r = login(stranger.client, member.email, recovery_code=member.recovery_codes[0])
    assert r.status_code == 200, r.text
    # A wrong code on the stranger is not counted as a failure of the staff member (no lock-out).
    assert first.services.audit.search(action="staff.login_failed").entries == []
    # The same data dir: the same key.
    again = make_backend()
    assert code_login(again, member) == 200


def test_a_lost_key_file_is_not_replaced_while_secrets_need_it(
    make_backend: BackendFactory, caplog: pytest.LogCaptureFixture
) -> None:
    first = make_backend()
    member = new_staff(first.client, first.services, first.clock, Role.IMPLEMENTATION)
    key_file = first.settings.data_dir / "keys" / KEY_FILE
    saved = key_file.read_bytes()
    key_file.unlink()
    with caplog.at_level(logging.ERROR, logger="tgflow.server.staff"):
        restarted = make_backend()
    assert "is missing but 1 TOTP secrets are encrypted" in caplog.text
    assert not key_file.exists()  # a fresh key would hide the loss
    assert code_login(restarted, member) == 503
    # Enrolling someone new is refused as well, never stored under no key.
    newcomer = restarted.services.staff.create(
        "test", "new@staff.example", "N", Role.SUPPORT, "staff password 42"
    )
    r = login(restarted.client, newcomer.email)
    setup = restarted.client.post(
        "/staff/me/totp/setup", headers={"Authorization": f"Bearer {r.json()['token']}"}
    )
    assert setup.status_code == 503 and setup.json()["code"] == "service_unavailable"
    assert stored_secret(restarted, newcomer.id) is None
    # Restored from the backup: TOTP works again.
    key_file.write_bytes(saved)
    os.chmod(key_file, 0o600)
    assert code_login(make_backend(), member) == 200


def test_plain_secrets_from_before_are_encrypted_at_start_up(make_backend: BackendFactory) -> None:
    first = make_backend()
    member = new_staff(first.client, first.services, first.clock, Role.SALES, enrol=False)
    secret = pyotp.random_base32()
    # What the server wrote before migration 0008: the secret itself, enrolled.
    sql(
        first,
        "UPDATE staff SET totp_secret = :s, totp_enabled_at = :at WHERE id = :id",
        s=secret,
        at=first.clock.now(),
        id=member.id,
    )
    restarted = make_backend()
    sealed = stored_secret(restarted, member.id)
    assert sealed is not None and sealed.startswith("v1:") and secret not in sealed
    enrolled = StaffLogin(**{**member.__dict__, "secret": secret})
    assert code_login(restarted, enrolled) == 200
    # Idempotent: the next start leaves it as it is.
    make_backend()
    assert stored_secret(restarted, member.id) == sealed


def test_a_plain_secret_written_behind_the_servers_back_is_refused(backend: Backend) -> None:
    member = new_staff(backend.client, backend.services, backend.clock, Role.ADMIN)
    assert member.secret is not None
    sql(backend, "UPDATE staff SET totp_secret = :s WHERE id = :id", s=member.secret, id=member.id)
    assert code_login(backend, member) == 503
    # Nor a sealed value of another form.
    sql(
        backend,
        "UPDATE staff SET totp_secret = NULL, totp_secret_sealed = :s WHERE id = :id",
        s=member.secret,
        id=member.id,
    )
    assert code_login(backend, member) == 503


def test_machines_sharing_tgflow_totp_key_share_the_secrets(
    make_backend: BackendFactory, tmp_path: Path
) -> None:
    key = new_key()
    one = make_backend(data_dir=tmp_path / "one", totp_key=key)
    member = new_staff(one.client, one.services, one.clock, Role.ADMIN)
    two = make_backend(data_dir=tmp_path / "two", totp_key=key.replace("+", "-").rstrip("="))
    assert code_login(two, member) == 200
    assert not (tmp_path / "one" / "keys" / KEY_FILE).exists()
    # A malformed key refuses TOTP (and names no key bytes), it does not fall back to a file.
    three = make_backend(data_dir=tmp_path / "three", totp_key="c2hvcnQ=")
    assert code_login(three, member) == 503
    assert not (tmp_path / "three" / "keys" / KEY_FILE).exists()


def test_down_from_0008_resets_the_encrypted_secrets_the_old_code_cannot_read(
    database_url: str,
) -> None:
    engine = db.make_engine(database_url)
    now = datetime(2026, 1, 2, tzinfo=UTC)
    try:
        db.upgrade(engine)
        with engine.begin() as conn:
            for staff_id, plain, sealed in (
                ("sealed", None, "v1:" + "A" * 80),
                ("plain", "JBSWY3DPEHPK3PXP", None),
            ):
                conn.execute(
                    text(
                        "INSERT INTO staff (id, email, name, role, password_hash, created_at,"
                        " totp_secret, totp_secret_sealed, totp_enabled_at)"
                        " VALUES (:id, :e, 'N', 'admin', 'x', :at, :plain, :sealed, :at)"
                    ),
                    {
                        "id": staff_id,
                        "e": f"{staff_id}@staff.example",
                        "at": now,
                        "plain": plain,
                        "sealed": sealed,
                    },
                )
                conn.execute(
                    text(
                        "INSERT INTO staff_recovery_codes (id, staff_id, code_hash)"
                        " VALUES (:id, :id, 'h')"
                    ),
                    {"id": staff_id},
                )
            command.downgrade(alembic_config(conn), "0007")
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT s.id, s.totp_secret, s.totp_enabled_at IS NULL, COUNT(r.id)"
                    " FROM staff s LEFT JOIN staff_recovery_codes r ON r.staff_id = s.id"
                    " GROUP BY s.id, s.totp_secret, s.totp_enabled_at ORDER BY s.id"
                )
            ).all()
        assert [(a, b, bool(c), d) for a, b, c, d in rows] == [
            ("plain", "JBSWY3DPEHPK3PXP", False, 1),
            ("sealed", None, True, 0),
        ]
        with engine.connect() as conn:
            assert "totp_secret_sealed" not in {
                c["name"] for c in inspect(conn).get_columns("staff")
            }
        db.upgrade(engine)  # and up again
    finally:
        engine.dispose()
