"""staff TOTP secrets encrypted at rest: a column for the AES-256-GCM envelope

A new column rather than a wider ``totp_secret``: on SQLite widening means rebuilding ``staff``,
and dropping the old table would cascade to the recovery codes and sessions and null the
portal's references to staff. ``totp_secret`` stays for the plain secrets written before; the
encryption itself is a start-up step (``services/staff/totp_vault.py``, which moves each into
``totp_secret_sealed`` and clears it), since a migration cannot reach the key, kept in the data
dir or the environment. Down: the old code cannot read an encrypted secret, so those accounts'
TOTP is reset (enrolment and recovery codes cleared); they enrol anew at their next login, as
after ``staff reset-2fa``.

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


def upgrade() -> None:
    op.add_column("staff", sa.Column("totp_secret_sealed", sa.String(length=255), nullable=True))


def downgrade() -> None:
    op.execute(
        "DELETE FROM staff_recovery_codes WHERE staff_id IN "
        "(SELECT id FROM staff WHERE totp_secret_sealed IS NOT NULL)"
    )
    op.execute(
        "UPDATE staff SET totp_secret = NULL, totp_enabled_at = NULL, totp_last_step = NULL "
        "WHERE totp_secret_sealed IS NOT NULL"
    )
    # SQLite (3.35+) drops a plain column in place; alembic's batch mode would rebuild the table.
    op.execute("ALTER TABLE staff DROP COLUMN totp_secret_sealed")
