"""Read zerodown.yaml and turn every mistake into `file:line: field: what to fix`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from zerodown.core.errors import SpecError
from zerodown.spec.model import Spec

M = TypeVar("M", bound=BaseModel)


def load_spec(path: str | Path) -> Spec:
    return load_model(path, Spec)


def load_model(path: str | Path, model: type[M]) -> M:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(
            "file not found; run `zerodown init` to write one, or pass -f FILE", file=str(path)
        ) from None
    except OSError as exc:
        raise SpecError(f"cannot read the file: {exc.strerror}", file=str(path)) from None
    return parse_model(text, model, file=str(path))


def parse_model(text: str, model: type[M], *, file: str) -> M:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise SpecError(f"not valid YAML: {exc.problem or exc}", file=file, line=line) from None
    if not isinstance(data, dict):
        raise SpecError("the top level must be a mapping of fields", file=file, line=1)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise spec_error(exc, root, file=file) from None


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
        more = "\n".join(f"{file}:{ln}: {fd}: {msg}" for ln, fd, msg in problems[1:])
        error.args = (f"{error.args[0]}\n{more}",)
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
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _line_of(node: yaml.Node | None, loc: list[Any]) -> int | None:
    """The line of the deepest node on `loc` that exists in the YAML tree."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        child = _child(node, part)
        if child is None:
            break
        node, line = child, child.start_mark.line + 1
    return line


def _child(node: yaml.Node | None, part: Any) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == str(part):
                # an unknown field is best shown at its key
                found: yaml.Node = value if not isinstance(value, yaml.ScalarNode) else key
                return found
        return None
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        child: yaml.Node = node.value[part]
        return child
    return None


def json_schema() -> str:
    return json.dumps(Spec.model_json_schema(), indent=2)
