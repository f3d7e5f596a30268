"""Pure parts of the MySQL online schema change and the Alembic spec block (no database)."""

from __future__ import annotations

import pytest

from zerodown.core.errors import SpecError
from zerodown.migrations.model import parse_migration
from zerodown.migrations.mysql.api import connect_args, is_mysql_url
from zerodown.migrations.mysql.plan import MysqlRefused, TableInfo, over_row, plan_tables
from zerodown.spec.load import parse_model
from zerodown.spec.model import Spec

ITEMS = TableInfo("items", ("id", "qty", "email"), ("id",), not_null=("id", "qty"))


def _ops(text: str) -> list:
    return parse_migration(text, file="m.yaml", default_name="m").ops


def test_add_column_backfill_maps_copy_and_triggers() -> None:
    ops = _ops(
        "operations:\n"
        "  - add_column: {table: items, column: {name: doubled, type: bigint}, up: 'qty * 2'}\n"
        "  - alter_column: {table: items, column: qty, type: bigint}\n"
    )
    (t,), creates = plan_tables(ops, {"items": ITEMS})
    assert creates == []
    assert t.alter == [
        "ADD COLUMN `doubled` bigint",
        "CHANGE COLUMN `qty` `qty` bigint NOT NULL",  # keeps NOT NULL: MODIFY restates it
    ]
    assert "SELECT `id`, `qty`, `email`, qty * 2 FROM `items`" in t.copy_sql()
    insert, update, delete = (sql for _, sql in t.trigger_sql())
    assert "VALUES (NEW.`id`, NEW.`qty`, NEW.`email`, NEW.`qty` * 2)" in insert
    assert "IF NOT (OLD.`id` <=> NEW.`id`)" in update
    assert delete.endswith("WHERE `_zd_items_new`.`id` <=> OLD.`id`")
    assert [name for name, _ in t.keeper_sql()] == ["_zd_items_kins", "_zd_items_kupd"]


def test_refusals_say_why() -> None:
    rename = _ops("operations:\n  - rename_column: {table: items, from: email, to: mail}\n")
    with pytest.raises(MysqlRefused, match="fail from the moment the tables are swapped"):
        plan_tables(rename, {"items": ITEMS})
    (t,), _ = plan_tables(rename, {"items": ITEMS}, allow=("rename_column",))
    assert t.mapping["mail"] == "`email`" and t.breaking
    required = _ops(
        "operations:\n  - add_column: {table: items, column: {name: z, type: int, nullable: false}}\n"
    )
    with pytest.raises(MysqlRefused, match="breaks the old version's inserts"):
        plan_tables(required, {"items": ITEMS})
    with pytest.raises(MysqlRefused, match="already has triggers"):
        plan_tables(rename, {"items": TableInfo("items", ("id",), ("id",), has_triggers=True)})
    convert = _ops(
        "operations:\n  - alter_column: {table: items, column: qty, type: bigint, up: 'qty*2'}\n"
    )
    with pytest.raises(MysqlRefused, match="add a new column instead"):
        plan_tables(convert, {"items": ITEMS})


def test_expressions_and_urls() -> None:
    assert over_row("concat(email, 'qty')", "NEW", ("qty", "email")) == "concat(NEW.`email`, 'qty')"
    assert is_mysql_url("mysql://root@db/app") and is_mysql_url("mariadb://x/app")
    assert not is_mysql_url("postgresql://x/app")
    assert connect_args("mysql://u:p%40ss@db:3307/app")["password"] == "p@ss"


def test_spec_takes_alembic_or_dir_not_both() -> None:
    head = "service: shop\nrun: {command: [app]}\n"
    spec = parse_model(
        head + "migrations: {database: x, alembic: alembic.ini, allow: [drop_column]}\n",
        Spec,
        file="zerodown.yaml",
    )
    assert spec.migrations is not None and spec.migrations.source == "alembic.ini"
    with pytest.raises(SpecError, match=r"either dir .* or alembic"):
        parse_model(
            head + "migrations: {database: x, dir: m/, alembic: a.ini}\n",
            Spec,
            file="zerodown.yaml",
        )
    with pytest.raises(SpecError, match="allow"):
        parse_model(
            head + "migrations: {database: x, allow: [everything]}\n", Spec, file="zerodown.yaml"
        )
