"""Migration files: strict parsing, file:line:field errors, JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zerodown.core.errors import SpecError
from zerodown.migrations.model import json_schema, load_migration, parse_migration
from zerodown.migrations.ops import OPERATIONS

GOOD = """\
operations:
  - rename_column: {table: users, from: email, to: email_address}
  - add_column: {table: users, column: {name: plan, type: text, default: "'free'", nullable: false}}
"""


def test_yaml_file_parses_and_takes_its_name_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "0002_rename_email.yaml"
    path.write_text(GOOD)
    m = load_migration(path)
    assert m.name == "0002_rename_email"
    assert [op.kind for op in m.ops] == ["rename_column", "add_column"]
    assert m.to_json()["operations"][0] == {
        "rename_column": {"table": "users", "from": "email", "to": "email_address"}
    }


def test_json_file_parses(tmp_path: Path) -> None:
    path = tmp_path / "0003_idx.json"
    path.write_text(
        json.dumps(
            {"operations": [{"create_index": {"name": "i", "table": "t", "columns": ["a"]}}]}
        )
    )
    assert load_migration(path).ops[0].kind == "create_index"


@pytest.mark.parametrize(
    ("text", "line", "field", "words"),
    [
        (
            "operations:\n  - rename_column: {table: users, frm: email, to: x}\n",
            2,
            "operations[0].rename_column.frm",
            "did you mean 'from'?",
        ),
        ("operations:\n  - renam: {}\n", 2, "operations[0]", "unknown operation 'renam'"),
        (
            "operations:\n  - add_column:\n      table: users\n      column:\n        name: 3\n"
            "        type: text\n",
            5,
            "operations[0].add_column.column.name",
            "valid string",
        ),
        (
            "operations:\n  - drop_table:\n      table: t\n      cascade: true\n",
            4,
            "operations[0].drop_table.cascade",
            "unknown field",
        ),
        (
            "operations:\n  - add_column:\n      table: users\n      column: {name: a, type: int}\n"
            "      nullable: yes\n",
            5,
            "operations[0].add_column.nullable",
            "unknown field",
        ),
        ("operations: []\n", 1, "operations", "at least 1"),
        (
            "operations:\n  - raw_sql: {sql: select 1}\n  - drop_table: {table: t}\n",
            1,
            "",
            "raw_sql cannot share",
        ),
        ("name: Bad-Name\noperations:\n  - drop_table: {table: t}\n", 1, "name", "pattern"),
    ],
)
def test_errors_name_file_line_and_field(text: str, line: int, field: str, words: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_migration(text, file="m.yaml")
    err = info.value
    assert err.file == "m.yaml"
    assert err.line == line, str(err)
    assert err.field.startswith(field), str(err)
    assert words in str(err)


def test_broken_yaml_names_the_line() -> None:
    with pytest.raises(SpecError) as info:
        parse_migration("operations:\n  - drop_table: {table: t\n", file="m.yaml")
    assert info.value.line is not None and "not valid YAML" in str(info.value)


def test_not_a_mapping() -> None:
    with pytest.raises(SpecError, match="mapping"):
        parse_migration("- 1\n", file="m.yaml")


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read"):
        load_migration(tmp_path / "nope.yaml")


def test_json_schema_covers_every_operation() -> None:
    schema = json_schema()
    text = json.dumps(schema)
    for name in OPERATIONS:
        assert name in text
    assert schema["additionalProperties"] is False
    # `from` is spelled as in the files, not as the Python field name
    assert '"from"' in text and "from_" not in text
