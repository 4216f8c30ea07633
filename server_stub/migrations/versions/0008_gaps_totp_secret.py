"""staff TOTP secrets encrypted at rest: the column widens to hold the AES-256-GCM envelope

The encryption itself is a start-up step (``services/staff/totp_vault.py``): a migration cannot
reach the key, which lives in the data dir or the environment. Down: the old code cannot read an
encrypted secret, so those accounts' TOTP is reset (secret, enrolment, recovery codes cleared);
they enrol anew at their next login, as after ``staff reset-2fa``.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

#: Prefix of an encrypted secret (``totp_vault.SEALED_PREFIX``); a base32 secret has no ``:``.
_SEALED = "v1:%"


def _resize(old: int, new: int) -> None:
    # SQLite does not enforce a VARCHAR's length, and its batch mode would rebuild ``staff``:
    # dropping the old table cascades to the recovery codes and sessions that refer to it.
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column(
            "staff", "totp_secret", existing_type=sa.String(length=old), type_=sa.String(length=new)
        )


def upgrade() -> None:
    _resize(64, 255)


def downgrade() -> None:
    op.execute(
        sa.text(
            "DELETE FROM staff_recovery_codes WHERE staff_id IN "
            "(SELECT id FROM staff WHERE totp_secret LIKE :sealed)"
        ).bindparams(sealed=_SEALED)
    )
    op.execute(
        sa.text(
            "UPDATE staff SET totp_secret = NULL, totp_enabled_at = NULL, totp_last_step = NULL "
            "WHERE totp_secret LIKE :sealed"
        ).bindparams(sealed=_SEALED)
    )
    _resize(255, 64)
