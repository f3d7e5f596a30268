"""One module per operation; each is a strict model with pure start/complete/rollback."""

from __future__ import annotations

from .add_column import AddColumn
from .add_constraint import AddConstraint
from .alter_column import AlterColumn
from .base import OpBase
from .create_index import CreateIndex
from .create_table import CreateTable
from .drop_column import DropColumn
from .drop_constraint import DropConstraint
from .drop_index import DropIndex
from .drop_table import DropTable
from .raw_sql import RawSql
from .rename_column import RenameColumn
from .rename_table import RenameTable

OPERATIONS: dict[str, type[OpBase]] = {
    op.kind: op
    for op in (
        CreateTable,
        DropTable,
        RenameTable,
        AddColumn,
        DropColumn,
        RenameColumn,
        AlterColumn,
        CreateIndex,
        DropIndex,
        AddConstraint,
        DropConstraint,
        RawSql,
    )
}

__all__ = [
    "OPERATIONS",
    "AddColumn",
    "AddConstraint",
    "AlterColumn",
    "CreateIndex",
    "CreateTable",
    "DropColumn",
    "DropConstraint",
    "DropIndex",
    "DropTable",
    "OpBase",
    "RawSql",
    "RenameColumn",
    "RenameTable",
]
