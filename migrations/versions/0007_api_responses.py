"""Stored first responses of HTTP writes, so that a replay returns them unchanged.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 00:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from loyalty_engine.store.types import UTCDateTime


revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('api_responses',
    sa.Column('endpoint', sa.String(length=32), nullable=False),
    sa.Column('idem_key', sa.String(length=300), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('status', sa.Integer(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('endpoint', 'idem_key', name=op.f('pk_api_responses'))
    )


def downgrade() -> None:
    op.drop_table('api_responses')
