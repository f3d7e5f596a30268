"""Read zerodown.yaml and turn every mistake into `file:line: field: what to fix`.

Whatever the bytes, reading a spec ends in a model or a SpecError, never another exception: the
file is capped in size, must be UTF-8, and its YAML tree is checked before any value is built.
The check refuses duplicate keys (YAML says keys are unique; PyYAML silently keeps the last),
nesting deeper than MAX_DEPTH, a tree of more than MAX_VALUES values once anchors and aliases
are expanded (a "billion laughs" file is refused after MAX_VALUES steps, not expanded), and
numbers that are not finite. Anchors, aliases and merge keys within those limits are allowed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from zerodown.core.errors import SpecError
from zerodown.spec.model import Spec
from zerodown.spec.types import shorten

M = TypeVar("M", bound=BaseModel)

MAX_BYTES = 1 << 20
"""A spec is a few KB; a larger file is the wrong file (a log, a binary) or an attack."""
MAX_VALUES = 100_000
"""Values in the tree with every alias expanded."""
MAX_DEPTH = 64
"""Mappings and lists inside each other."""
MAX_PROBLEMS = 10
"""Validation problems listed in one error; the rest are counted."""

_FLOAT_TAG = "tag:yaml.org,2002:float"
_INT_TAG = "tag:yaml.org,2002:int"


def load_spec(path: str | Path) -> Spec:
    return load_model(path, Spec)


def load_model(path: str | Path, model: type[M]) -> M:
    path = Path(path)
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise SpecError(
            "file not found; run `zerodown init` to write one, or pass -f FILE", file=str(path)
        ) from None
    except OSError as exc:
        raise SpecError(f"cannot read the file: {exc.strerror}", file=str(path)) from None
    return parse_model(_decode(raw, file=str(path)), model, file=str(path))


def _decode(raw: bytes, *, file: str) -> str:
    if len(raw) > MAX_BYTES:
        raise SpecError(
            f"the file is larger than {MAX_BYTES // 1024} KiB; a spec is a few KB: is it the"
            " right file?",
            file=file,
        )
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SpecError(
            f"not valid UTF-8 (byte 0x{raw[exc.start]:02x}); save the file as UTF-8",
            file=file,
            line=line,
        ) from None


def parse_model(text: str, model: type[M], *, file: str) -> M:
    if len(text) > MAX_BYTES:
        raise SpecError(f"the spec is larger than {MAX_BYTES // 1024} KiB", file=file)
    root = _compose(text, file=file)
    data = None
    if root is not None:
        loader = _Loader("")
        try:
            _check_tree(root, loader, file=file)
            data = loader.construct_document(root)
        except yaml.MarkedYAMLError as exc:
            raise _yaml_error(exc, file=file) from None
        finally:
            loader.dispose()
    if not isinstance(data, dict):
        raise SpecError("the top level must be a mapping of fields", file=file, line=1)
    try:
        result = model.model_validate(data)
    except ValidationError as exc:
        raise spec_error(exc, root, file=file) from None
    if isinstance(result, Spec):
        _refuse(result, root, file=file)
    return result


def _refuse(spec: Spec, root: yaml.Node | None, *, file: str) -> None:
    """What a driver the spec names cannot do (`drivers.refusals`), as `file:line: field: why`."""
    from zerodown import drivers  # drivers name the spec's types: import it when used

    problems = [
        (_line_of(root, [int(p) if p.isdigit() else p for p in r.field.split(".")]), r)
        for r in drivers.refusals(spec)
    ]
    if not problems:
        return
    (line, first), rest = problems[0], problems[1:MAX_PROBLEMS]
    error = SpecError(first.message, file=file, line=line, field=first.field)
    if rest:
        more = [f"{file}:{ln}: {r.field}: {r.message}" for ln, r in rest]
        error.args = (f"{error.args[0]}\n" + "\n".join(more),)
    raise error


def _compose(text: str, *, file: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        raise _yaml_error(exc, file=file) from None
    except yaml.reader.ReaderError as exc:  # a control character or a NUL byte
        line = text[: exc.position].count("\n") + 1
        raise SpecError(
            f"character {chr(exc.character)!r} is not allowed in YAML; remove it",
            file=file,
            line=line,
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"not valid YAML: {exc}", file=file) from None
    except RecursionError:  # the composer recurses once per level of nesting
        raise SpecError(f"nested more than {MAX_DEPTH} levels deep", file=file) from None


def _yaml_error(exc: yaml.MarkedYAMLError, *, file: str) -> SpecError:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark else None
    return SpecError(f"not valid YAML: {exc.problem or exc}", file=file, line=line)


class _Loader(yaml.SafeLoader):
    """SafeLoader whose values that cannot be built (`0x_`, a 13th month, an int of 5000
    digits) are errors at their line instead of a bare ValueError."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:
            if node.tag == _INT_TAG:  # Python's cap on the digits of an int
                problem = f"{shorten(node.value)} is not a number zerodown can read"
            else:
                problem = f"cannot read {shorten(node.value)}: {exc}"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from None


def _check_tree(root: yaml.Node, loader: _Loader, *, file: str) -> None:
    """Refuse what PyYAML accepts but a spec must not hold (see the module docstring).

    Walks the node graph as the constructor will, so an alias is walked once per use: the
    count of values is what the spec would hold after expansion, and the walk stops at the
    limit (it is never longer than MAX_VALUES steps)."""
    pending: list[tuple[yaml.Node, str, int]] = [(root, "", 1)]
    seen = 0
    while pending:
        node, field, depth = pending.pop()
        seen += 1
        line = node.start_mark.line + 1
        if seen > MAX_VALUES:
            raise SpecError(
                f"more than {MAX_VALUES} values once anchors and aliases are expanded;"
                " write the values out instead of nesting aliases",
                file=file,
                line=line,
                field=field.split(".")[0],
            )
        if depth > MAX_DEPTH:
            raise SpecError(f"nested more than {MAX_DEPTH} levels deep", file=file, line=line)
        if isinstance(node, yaml.ScalarNode) and node.tag == _FLOAT_TAG:
            if not math.isfinite(loader.construct_yaml_float(node)):
                raise SpecError(
                    f"{node.value} is not a finite number", file=file, line=line, field=field
                )
        elif isinstance(node, yaml.SequenceNode):
            pending += [(item, f"{field}.{n}", depth + 1) for n, item in enumerate(node.value)]
        elif isinstance(node, yaml.MappingNode):
            pending += _entries(node, field, depth, file=file)


def _entries(
    node: yaml.MappingNode, field: str, depth: int, *, file: str
) -> list[tuple[yaml.Node, str, int]]:
    """The keys and values of a mapping, to walk; a key given twice is an error."""
    first_line: dict[tuple[str, str], int] = {}
    entries: list[tuple[yaml.Node, str, int]] = []
    for key, value in node.value:
        name = str(key.value) if isinstance(key, yaml.ScalarNode) else "?"
        path = f"{field}.{name}" if field else name
        if isinstance(key, yaml.ScalarNode):
            line = key.start_mark.line + 1
            earlier = first_line.get((key.tag, key.value))
            if earlier is not None:
                raise SpecError(
                    f"duplicate key (also on line {earlier}); keep one",
                    file=file,
                    line=line,
                    field=path,
                )
            first_line[(key.tag, key.value)] = line
        entries += [(key, path, depth + 1), (value, path, depth + 1)]
    return entries


def spec_error(exc: ValidationError, root: yaml.Node | None, *, file: str) -> SpecError:
    """One SpecError naming the first problem; the others follow on their own lines."""
    problems = []
    for err in exc.errors(include_url=False):
        loc = [p for p in err["loc"] if not _is_union_tag(p)]
        line = _line_of(root, loc)
        field = ".".join(str(p) for p in loc) or "(top level)"
        problems.append((line, field, _message(err)))
    line, field, message = problems[0]
    error = SpecError(message, file=file, line=line, field=field)
    if len(problems) > 1:
        shown = problems[1:MAX_PROBLEMS]
        more = [f"{file}:{ln}: {fd}: {msg}" for ln, fd, msg in shown]
        if len(problems) > MAX_PROBLEMS:
            more.append(f"… and {len(problems) - MAX_PROBLEMS} more")
        error.args = (f"{error.args[0]}\n" + "\n".join(more),)
    return error


def _is_union_tag(part: Any) -> bool:
    # pydantic puts the tried union member in the location ("int", "literal['match_weight']")
    return isinstance(part, str) and (
        part in {"int", "str", "float", "bool", "list", "dict"}
        or part.startswith(("literal[", "function-", "constrained-"))
        or "[" in part
    )


def _message(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown field; check its spelling (see `zerodown schema`)"
    if kind == "missing":
        return "this field is required"
    if kind == "model_type":
        return "expected a mapping of fields (key: value)"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _line_of(node: yaml.Node | None, loc: list[Any]) -> int | None:
    """The line of the deepest node on `loc` that exists in the YAML tree (for a mapping entry,
    the line of its key: `rolling:` rather than the first line inside it)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        found = _child(node, part)
        if found is None:
            break
        node, line = found
    return line


def _child(node: yaml.Node | None, part: Any) -> tuple[yaml.Node, int] | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == str(part):
                return value, key.start_mark.line + 1
        return None
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        item: yaml.Node = node.value[part]
        return item, item.start_mark.line + 1
    return None


def json_schema() -> str:
    return json.dumps(Spec.model_json_schema(), indent=2)
