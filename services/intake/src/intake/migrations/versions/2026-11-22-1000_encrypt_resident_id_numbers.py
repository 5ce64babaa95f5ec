"""encrypt resident ID numbers, with a keyed lookup hash

Existing rows are encrypted with the keys in force (INTAKE_PII_KEYS / INTAKE_PII_HASH_KEYS) before the readable
column is dropped. The downgrade decrypts them back.

Revision ID: 7c1e0a2b9d44
Revises: 6ad9334ca819
Create Date: 2026-11-22 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7c1e0a2b9d44"
down_revision: str | None = "6ad9334ca819"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

members = sa.table(
    "members",
    sa.column("case_id", sa.String),
    sa.column("ref", sa.String),
    sa.column("id_number", sa.String),
    sa.column("id_number_encrypted", sa.Text),
    sa.column("id_number_hash", sa.String),
)


def _vault():
    from intake.settings import IntakeSettings, vault_for
    from shared.settings import load_settings

    return vault_for(load_settings(IntakeSettings))


def upgrade() -> None:
    with op.batch_alter_table("members") as batch:
        batch.add_column(sa.Column("id_number_encrypted", sa.Text(), nullable=True))
        batch.add_column(sa.Column("id_number_hash", sa.String(length=64), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(sa.select(members.c.case_id, members.c.ref, members.c.id_number)).all()
    if rows:
        vault = _vault()
        for row in rows:
            bind.execute(
                members.update()
                .where(members.c.case_id == row.case_id, members.c.ref == row.ref)
                .values(
                    id_number_encrypted=vault.encrypt(row.id_number), id_number_hash=vault.lookup_hash(row.id_number)
                )
            )
    with op.batch_alter_table("members") as batch:
        batch.drop_index("ix_members_id_number")
        batch.drop_column("id_number")
        batch.alter_column("id_number_encrypted", existing_type=sa.Text(), nullable=False)
        batch.alter_column("id_number_hash", existing_type=sa.String(length=64), nullable=False)
        batch.create_index("ix_members_id_number_hash", ["id_number_hash"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("members") as batch:
        batch.add_column(sa.Column("id_number", sa.String(length=18), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(sa.select(members.c.case_id, members.c.ref, members.c.id_number_encrypted)).all()
    if rows:
        vault = _vault()
        for row in rows:
            bind.execute(
                members.update()
                .where(members.c.case_id == row.case_id, members.c.ref == row.ref)
                .values(id_number=vault.decrypt(row.id_number_encrypted))
            )
    with op.batch_alter_table("members") as batch:
        batch.drop_index("ix_members_id_number_hash")
        batch.drop_column("id_number_hash")
        batch.drop_column("id_number_encrypted")
        batch.alter_column("id_number", existing_type=sa.String(length=18), nullable=False)
        batch.create_index("ix_members_id_number", ["id_number"], unique=False)
