"""clients: a casefolded search column for the legal name; the default product ``tgflow``

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

import unicodedata
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

#: The product every installation of TGFlow is licensed for, with the modules it ships
#: (docs/licensing.md, "Clients, contracts and products"). Added only when no product exists.
DEFAULT_PRODUCT = ("tgflow", "TGFlow")
DEFAULT_MODULES = (
    ("broadcast", "Broadcasts"),
    ("anti_spam", "Anti-spam protection"),
    ("multi_account", "Several Telegram accounts"),
    ("scheduler", "Scheduled broadcasts"),
    ("reports", "Reports and session logs"),
)


def _search_key(text: str) -> str:
    # The same rule as server_stub.services.clients.fields.search_key, frozen here: a migration
    # must not change when the code it was written with changes.
    return unicodedata.normalize("NFKC", text).casefold().replace("ё", "е")


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.add_column(
            sa.Column("search_name", sa.String(length=300), nullable=False, server_default="")
        )
    conn = op.get_bind()
    clients = sa.table(
        "clients",
        sa.column("id", sa.String()),
        sa.column("legal_name", sa.String()),
        sa.column("search_name", sa.String()),
    )
    for row in conn.execute(sa.select(clients.c.id, clients.c.legal_name)).all():
        conn.execute(
            clients.update()
            .where(clients.c.id == row.id)
            .values(search_name=_search_key(row.legal_name))
        )
    products = sa.table(
        "products",
        sa.column("id", sa.String()),
        sa.column("name", sa.String()),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    modules = sa.table(
        "product_modules",
        sa.column("product_id", sa.String()),
        sa.column("code", sa.String()),
        sa.column("name", sa.String()),
    )
    if conn.execute(sa.select(sa.func.count()).select_from(products)).scalar_one() == 0:
        now = datetime.now(UTC)
        if conn.dialect.name == "sqlite":
            now = now.replace(tzinfo=None)  # as UTCDateTime stores it there
        product_id, name = DEFAULT_PRODUCT
        conn.execute(products.insert().values(id=product_id, name=name, created_at=now))
        conn.execute(
            modules.insert(),
            [{"product_id": product_id, "code": c, "name": n} for c, n in DEFAULT_MODULES],
        )


def downgrade() -> None:
    # The seeded product stays: licenses may name it by then.
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("search_name")
