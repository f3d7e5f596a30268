"""Lint SQL for changes that lock or break a running app: squawk's rules plus zerodown's own.

squawk (the `squawk-cli` wheel) knows PostgreSQL's lock levels statement by statement. zerodown's
own checks add what matters when two app versions share the database: a rename or a drop breaks
the version still running, a type change rewrites the table, and so on — each with the
operation that does the same thing without that cost.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Finding:
    file: str
    line: int
    rule: str
    message: str
    source: str  # "squawk" or "zerodown"
    level: str = "warning"

    def render(self) -> str:
        return f"{self.file}:{self.line}: {self.rule}: {self.message} [{self.source}]"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class SqlStatement:
    text: str
    line: int  # 1-based line where it starts


def split_sql(sql: str) -> list[SqlStatement]:
    """Split on `;` outside quotes, dollar quotes and comments, keeping each start line."""
    out: list[SqlStatement] = []
    i, n, start, line, start_line = 0, len(sql), 0, 1, 1
    seen_text = False
    while i < n:
        ch = sql[i]
        if ch == "\n":
            line += 1
        if sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j
            continue
        if sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            j = n if j < 0 else j + 2
            line += sql.count("\n", i, j)
            i = j
            continue
        if ch in "'\"":
            j = i + 1
            while j < n:
                if sql[j] == ch and sql.startswith(ch * 2, j):
                    j += 2
                    continue
                if sql[j] == ch:
                    break
                j += 1
            line += sql.count("\n", i, j)
            if not seen_text:
                seen_text, start_line = True, line
            i = j + 1
            continue
        m = re.match(r"\$[A-Za-z_0-9]*\$", sql[i:]) if ch == "$" else None
        if m:
            tag = m.group(0)
            j = sql.find(tag, i + len(tag))
            j = n if j < 0 else j + len(tag)
            line += sql.count("\n", i, j)
            i = j
            continue
        if ch == ";":
            text = sql[start:i].strip()
            if text and seen_text:
                out.append(SqlStatement(text, start_line))
            start, seen_text = i + 1, False
        elif not ch.isspace() and not seen_text:
            seen_text, start_line = True, line
        i += 1
    text = sql[start:].strip()
    if text and seen_text:
        out.append(SqlStatement(text, start_line))
    return out


def _strip_comments(text: str) -> str:
    text = re.sub(r"--[^\n]*", " ", text)
    return re.sub(r"/\*.*?\*/", " ", text, flags=re.S)


_VOLATILE = re.compile(
    r"\b(random|gen_random_uuid|uuid_generate_v[14]\w*|clock_timestamp|timeofday|nextval)\s*\(",
    re.I,
)
_DDL = re.compile(r"^\s*(ALTER\s+TABLE|CREATE\s+(UNIQUE\s+)?INDEX|DROP\s+|CREATE\s+TRIGGER)", re.I)


def own_checks(sql: str, file: str) -> list[Finding]:
    findings: list[Finding] = []
    lock_timeout_set = False
    created: set[str] = set()

    def add(stmt: SqlStatement, rule: str, message: str) -> None:
        findings.append(Finding(file, stmt.line, rule, message, "zerodown"))

    for stmt in split_sql(sql):
        s = " ".join(_strip_comments(stmt.text).split())
        up = s.upper()
        if re.match(r"^SET\s+(LOCAL\s+)?LOCK_TIMEOUT", up):
            lock_timeout_set = True
            continue
        m = re.match(r"^CREATE\s+TABLE\s+(IF\s+NOT\s+EXISTS\s+)?([\w.\"]+)", s, re.I)
        if m:
            created.add(m.group(2).split(".")[-1].strip('"').lower())
            continue
        table_m = re.match(r"^ALTER\s+TABLE\s+(IF\s+EXISTS\s+)?(ONLY\s+)?([\w.\"]+)", s, re.I)
        table = table_m.group(3).split(".")[-1].strip('"').lower() if table_m else None
        index_on = re.match(r"^CREATE\s+(UNIQUE\s+)?INDEX\b.*?\bON\s+(ONLY\s+)?([\w.\"]+)", s, re.I)
        if index_on:
            table = index_on.group(3).split(".")[-1].strip('"').lower()
        if _DDL.match(s) and not lock_timeout_set and table not in created:
            add(
                stmt,
                "zd-lock-timeout",
                "DDL without `SET lock_timeout` first: if it waits for its lock, every query on "
                "the table queues behind it; zerodown's operations use 500ms with retries",
            )
            lock_timeout_set = True  # once per file is enough
        if table in created:
            continue
        if re.search(r"\bADD\s+(COLUMN\s+)?", up) and table_m:
            if re.search(r"\bNOT\s+NULL\b", up) and " DEFAULT " not in f" {up} ":
                add(
                    stmt,
                    "zd-not-null-without-default",
                    "NOT NULL column without DEFAULT: the old version's inserts fail; use "
                    "add_column with `default` or `up`",
                )
            dm = re.search(r"\bDEFAULT\s+(.*)", s, re.I)
            if dm and _VOLATILE.search(dm.group(1)):
                add(
                    stmt,
                    "zd-volatile-default",
                    "volatile DEFAULT rewrites the whole table under ACCESS EXCLUSIVE; use "
                    "add_column (default set apart, rows filled by the batched backfill)",
                )
        if re.search(r"\bALTER\s+(COLUMN\s+)?[\w\"]+\s+(SET\s+DATA\s+)?TYPE\b", up):
            add(
                stmt,
                "zd-type-change",
                "changing a column's type rewrites the table under ACCESS EXCLUSIVE and breaks "
                "the old version; use alter_column (shadow column + triggers + backfill)",
            )
        if re.search(r"\bSET\s+NOT\s+NULL\b", up):
            add(
                stmt,
                "zd-set-not-null",
                "SET NOT NULL scans the table under ACCESS EXCLUSIVE; add a CHECK (col IS NOT "
                "NULL) NOT VALID, VALIDATE it, then SET NOT NULL (alter_column does this)",
            )
        if re.search(r"\bRENAME\b", up) and table_m:
            add(
                stmt,
                "zd-rename",
                "a rename breaks the version still running; use rename_column / rename_table "
                "(views keep both names until complete)",
            )
        if re.search(r"\bDROP\s+COLUMN\b", up):
            add(
                stmt,
                "zd-drop-column",
                "dropping a column breaks the version still running; use drop_column (hidden "
                "from the new version at start, dropped at complete)",
            )
        if re.search(r"\bADD\s+(CONSTRAINT\s+[\w\"]+\s+)?(CHECK|FOREIGN\s+KEY)\b", up) and (
            "NOT VALID" not in up
        ):
            add(
                stmt,
                "zd-constraint-not-valid",
                "a new CHECK or FOREIGN KEY scans the table under lock; add it NOT VALID, then "
                "VALIDATE CONSTRAINT in a separate statement",
            )
        if re.match(r"^CREATE\s+(UNIQUE\s+)?INDEX\s+(?!CONCURRENTLY)", up):
            add(
                stmt,
                "zd-index-not-concurrent",
                "CREATE INDEX without CONCURRENTLY blocks writes while it builds; use "
                "create_index (CONCURRENTLY, invalid index rebuilt)",
            )
    return findings


def squawk_binary() -> str | None:
    beside = Path(sys.executable).parent / ("squawk.exe" if os.name == "nt" else "squawk")
    if beside.exists():
        return str(beside)
    return shutil.which("squawk")


def squawk_checks(path: Path, shown_as: str) -> list[Finding]:
    exe = squawk_binary()
    if exe is None:
        return [
            Finding(
                shown_as,
                1,
                "squawk-missing",
                "squawk not found: pip install squawk-cli",
                "zerodown",
                "error",
            )
        ]
    try:
        proc = subprocess.run(
            [exe, "--reporter", "json", "--no-error-on-unmatched-pattern", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return [Finding(shown_as, 1, "squawk-failed", str(e), "zerodown", "error")]
    try:
        items = json.loads(proc.stdout or "[]")
    except json.JSONDecodeError:
        message = (proc.stderr or proc.stdout).strip().splitlines()
        return [
            Finding(
                shown_as,
                1,
                "squawk-failed",
                message[0] if message else "no output",
                "zerodown",
                "error",
            )
        ]
    return [
        Finding(
            shown_as,
            int(item.get("line", 0)) + 1,
            str(item.get("rule_name", "squawk")),
            str(item.get("message", "")) + (f" ({item['help']})" if item.get("help") else ""),
            "squawk",
            str(item.get("level", "warning")).lower(),
        )
        for item in items
    ]


def lint_sql(sql: str, file: str, *, work_dir: Path | None = None) -> list[Finding]:
    """Own checks plus squawk's, sorted by line."""
    import tempfile

    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        path = Path(tmp) / "statement.sql"
        path.write_text(sql)
        found = squawk_checks(path, file) + own_checks(sql, file)
    return sorted(found, key=lambda f: (f.line, f.source, f.rule))


def lint_file(path: str | Path) -> list[Finding]:
    """Lint an .sql file, or the raw_sql operations of a migration file."""
    from zerodown.core.errors import SpecError

    from .model import load_migration
    from .ops import RawSql

    p = Path(path)
    if p.suffix in (".yaml", ".yml", ".json"):
        findings: list[Finding] = []
        for number, op in enumerate(load_migration(p).ops, 1):
            if isinstance(op, RawSql):
                for text in (op.sql, op.rollback_sql):
                    if text:
                        findings += lint_sql(text, f"{p} (operation {number})")
        return findings
    try:
        sql = p.read_text()
    except OSError as e:
        raise SpecError(f"cannot read the SQL file: {e.strerror}", file=str(p)) from None
    return lint_sql(sql, str(p))
