"""users, as the demo app needs them"""

import sqlalchemy as sa
from alembic import op

revision = "u1"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("name", sa.Text),
        sa.Column("email", sa.Text),
    )


def downgrade() -> None:
    op.drop_table("users")
