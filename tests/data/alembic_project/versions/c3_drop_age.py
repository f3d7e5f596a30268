"""age is dropped (refused unless the spec allows drop_column)"""

from alembic import op

revision = "c3"
down_revision = "b2"


def upgrade() -> None:
    op.create_index("users_email_idx", "users", ["email_address"], unique=True)
    op.drop_column("users", "age")


def downgrade() -> None:
    raise NotImplementedError
