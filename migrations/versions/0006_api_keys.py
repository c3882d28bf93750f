"""API keys for the HTTP API: a public id, a hash of the secret, a scope, stores.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 00:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from loyalty_engine.store.types import UTCDateTime


revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('api_keys',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('key_id', sa.String(length=32), nullable=False),
    sa.Column('secret_sha256', sa.String(length=64), nullable=False),
    sa.Column('scope', sa.String(length=8), nullable=False),
    sa.Column('stores', sa.JSON(), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('revoked_at', UTCDateTime(), nullable=True),
    sa.CheckConstraint("scope IN ('pos', 'admin')", name=op.f('ck_api_keys_scope_known')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('key_id', name=op.f('uq_api_keys_key_id')),
    sa.UniqueConstraint('name', name=op.f('uq_api_keys_name'))
    )


def downgrade() -> None:
    op.drop_table('api_keys')
