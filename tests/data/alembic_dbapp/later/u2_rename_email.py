"""email becomes email_address (copied into versions/ before the v2 deploy)"""

from alembic import op

revision = "u2"
down_revision = "u1"


def upgrade() -> None:
    op.alter_column("users", "email", new_column_name="email_address")


def downgrade() -> None:
    op.alter_column("users", "email_address", new_column_name="email")
