"""A revoked API key's name may be reused: the name is unique among live keys only.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 10:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_api_keys_name'), type_='unique')
        batch_op.create_index(batch_op.f('ix_api_keys_name'), ['name'], unique=True,
                              postgresql_where=sa.text('revoked_at IS NULL'),
                              sqlite_where=sa.text('revoked_at IS NULL'))


def downgrade() -> None:
    # Only one key per name may survive the way back: older revoked keys of a reused name
    # are renamed after their key id, so the unique constraint can be restored.
    op.execute("UPDATE api_keys SET name = substr(name, 1, 85) || ' (' || key_id || ')' "
               "WHERE revoked_at IS NOT NULL AND name IN ("
               "SELECT name FROM api_keys GROUP BY name HAVING count(*) > 1)")
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_keys_name'))
        batch_op.create_unique_constraint(batch_op.f('uq_api_keys_name'), ['name'])
