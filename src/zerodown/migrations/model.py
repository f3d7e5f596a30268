"""Migration files: strict models, loading from YAML or JSON with file:line errors, JSON Schema.

```yaml
# migrations/0002_rename_email.yaml
operations:
  - rename_column: {table: users, from: email, to: email_address}
  - add_column: {table: users, column: {name: plan, type: text, default: "'free'", nullable: false}}
```
The migration's name is the file name without its extension, unless `name:` says otherwise.
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from zerodown.core.errors import SpecError

from .ops import (
    OPERATIONS,
    AddColumn,
    AddConstraint,
    AlterColumn,
    CreateIndex,
    CreateTable,
    DropColumn,
    DropConstraint,
    DropIndex,
    DropTable,
    OpBase,
    RawSql,
    RenameColumn,
    RenameTable,
)

MigrationName = Annotated[str, Field(pattern=r"^[a-z0-9_]{1,40}$")]
"""Lower case letters, digits and `_`, at most 40 (it becomes part of a schema name)."""


class OperationItem(BaseModel):
    """One list entry: a mapping with exactly one key, the operation's name."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    create_table: CreateTable | None = None
    drop_table: DropTable | None = None
    rename_table: RenameTable | None = None
    add_column: AddColumn | None = None
    drop_column: DropColumn | None = None
    rename_column: RenameColumn | None = None
    alter_column: AlterColumn | None = None
    create_index: CreateIndex | None = None
    drop_index: DropIndex | None = None
    add_constraint: AddConstraint | None = None
    drop_constraint: DropConstraint | None = None
    raw_sql: RawSql | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_key(cls, data: Any) -> Any:
        if not isinstance(data, dict) or len(data) != 1:
            raise ValueError(
                "each operation is a mapping with exactly one key, the operation's name "
                f"(one of: {', '.join(OPERATIONS)})"
            )
        (key,) = data
        if key not in OPERATIONS:
            raise ValueError(f"unknown operation {key!r}; use one of: {', '.join(OPERATIONS)}")
        return data

    @property
    def op(self) -> OpBase:
        for name in OPERATIONS:
            value = getattr(self, name)
            if value is not None:
                return value  # type: ignore[no-any-return]
        raise AssertionError("validated to hold one operation")


class AlembicOrigin(BaseModel):
    """Set on migrations read from an Alembic revision: complete stamps alembic_version."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    revision: str
    down_revision: str | None = None


class Migration(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    name: MigrationName | None = None
    operations: Annotated[list[OperationItem], Field(min_length=1)]
    alembic: AlembicOrigin | None = None

    @model_validator(mode="after")
    def _raw_alone(self) -> Migration:
        kinds = [i.op.kind for i in self.operations]
        if "raw_sql" in kinds and any(k != "raw_sql" for k in kinds):
            raise ValueError(
                "raw_sql cannot share a migration with other operations (zerodown cannot see "
                "what it changes); put it in a migration file of its own"
            )
        return self

    @property
    def ops(self) -> list[OpBase]:
        return [i.op for i in self.operations]

    @property
    def raw_only(self) -> bool:
        return all(isinstance(op, RawSql) for op in self.ops)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


def json_schema() -> dict[str, Any]:
    """JSON Schema of a migration file (for editors: `# yaml-language-server: $schema=…`)."""
    schema = Migration.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "zerodown migration"
    return schema


def _suggest(model: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    """ "; did you mean 'table'?" when a known field of the enclosing model is close."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return " (check the spelling; see the JSON Schema)"
        current = field.annotation
        for arg in getattr(current, "__args__", ()) or ():
            inner = getattr(arg, "__args__", None)
            for candidate in (arg, *(inner or ())):
                if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                    current = candidate
    fields = getattr(current, "model_fields", {})
    names = [f.alias or n for n, f in fields.items()]
    close = difflib.get_close_matches(str(loc[-1]), names, n=1)
    return f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(names)})"


def _line_of(root: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """Follow a pydantic error location through the composed YAML tree to a 1-based line."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part:
                    node = value
                    line = key.start_mark.line + 1
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in OPERATIONS or not part.startswith(("function-", "union")):
            out += f".{part}" if out else str(part)
    return out


def parse_migration(text: str, *, file: str, default_name: str | None = None) -> Migration:
    """Parse and validate migration text; every error names the file, line and field."""
    is_json = file.endswith(".json")
    try:
        data = json.loads(text) if is_json else yaml.safe_load(text)
        root = yaml.compose(text)
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else getattr(e, "lineno", None)
        raise SpecError(
            f"not valid {'JSON' if is_json else 'YAML'}: {e}", file=file, line=line
        ) from None
    if not isinstance(data, dict):
        raise SpecError("a migration is a mapping with an `operations:` list", file=file, line=1)
    if default_name and "name" not in data:
        data = {"name": default_name, **data}
    try:
        return Migration.model_validate(data)
    except ValidationError as e:
        # a misspelt field also makes a required one look missing: report the typo first
        errors = sorted(e.errors(), key=lambda x: x["type"] != "extra_forbidden")
        err = errors[0]
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field" + _suggest(Migration, loc)
        more = len(e.errors()) - 1
        if more:
            msg += f" (and {more} more error{'s' if more > 1 else ''})"
        raise SpecError(msg, file=file, line=_line_of(root, loc), field=_field_path(loc)) from None


def name_from_path(path: Path) -> str:
    stem = path.name.split(".")[0]
    return re.sub(r"[^a-z0-9_]", "_", stem.lower())[:40]


def load_migration(path: str | Path) -> Migration:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise SpecError(f"cannot read the migration file: {e.strerror}", file=str(p)) from None
    return parse_migration(text, file=str(p), default_name=name_from_path(p))
