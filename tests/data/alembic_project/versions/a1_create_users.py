"""create users"""

import sqlalchemy as sa
from alembic import op

revision = "a1"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("email", sa.String(200), nullable=False),
        sa.Column("age", sa.Integer),
    )


def downgrade() -> None:
    op.drop_table("users")
