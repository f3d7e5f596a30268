"""plan column, email renamed, age widened"""

import sqlalchemy as sa
from alembic import op

revision = "b2"
down_revision = "a1"


def upgrade() -> None:
    op.add_column("users", sa.Column("plan", sa.Text, nullable=False, server_default="free"))
    op.alter_column("users", "email", new_column_name="email_address")
    op.alter_column("users", "age", type_=sa.BigInteger, existing_type=sa.Integer)
    op.create_index("users_plan_idx", "users", ["plan"])
    op.create_check_constraint("users_age_positive", "users", "age > 0")


def downgrade() -> None:
    op.drop_constraint("users_age_positive", "users")
    op.drop_index("users_plan_idx")
    op.alter_column("users", "age", type_=sa.Integer)
    op.alter_column("users", "email_address", new_column_name="email")
    op.drop_column("users", "plan")
