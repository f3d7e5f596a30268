"""Read a base schema's tables from the PostgreSQL catalog into a `Schema`."""

from __future__ import annotations

from typing import Any

from .schema import Column, Schema, Table

_COLUMNS = """
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
WHERE n.nspname = %s AND c.relkind IN ('r', 'p')
ORDER BY c.relname, a.attnum
"""

_PKEYS = """
SELECT c.relname, a.attname
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
WHERE n.nspname = %s AND i.indisprimary
ORDER BY c.relname, k.ord
"""

_INDEXES = """
SELECT t.relname, ic.relname
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = %s AND i.indisvalid  -- an INVALID leftover is rebuilt, not kept
ORDER BY 1, 2
"""

_CONSTRAINTS = """
SELECT t.relname, con.conname
FROM pg_constraint con
JOIN pg_class t ON t.oid = con.conrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = %s AND con.contype IN ('c', 'f', 'u', 'p', 'x')
ORDER BY 1, 2
"""


def read_schema(conn: Any, base: str = "public") -> Schema:
    """The tables of `base` as they are now (logical names equal physical ones)."""
    columns: dict[str, list[Column]] = {}
    for table, name, typ, notnull, default in conn.execute(_COLUMNS, (base,)).fetchall():
        columns.setdefault(table, []).append(Column(name, typ, not notnull, default))
    pks: dict[str, list[str]] = {}
    for table, name in conn.execute(_PKEYS, (base,)).fetchall():
        pks.setdefault(table, []).append(name)
    indexes: dict[str, list[str]] = {}
    for table, name in conn.execute(_INDEXES, (base,)).fetchall():
        indexes.setdefault(table, []).append(name)
    constraints: dict[str, list[str]] = {}
    for table, name in conn.execute(_CONSTRAINTS, (base,)).fetchall():
        constraints.setdefault(table, []).append(name)
    tables = tuple(
        Table(
            name=t,
            columns=tuple(cols),
            primary_key=tuple(pks.get(t, ())),
            indexes=tuple(indexes.get(t, ())),
            constraints=tuple(constraints.get(t, ())),
        )
        for t, cols in sorted(columns.items())
    )
    return Schema(base=base, tables=tables)


_TABLE_GRANTS = """
SELECT c.relname, a.privilege_type,
       CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
LEFT JOIN pg_roles r ON r.oid = a.grantee
WHERE n.nspname = %s AND c.relkind IN ('r', 'p')
  AND a.privilege_type IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE')
  AND (a.grantee = 0 OR r.rolname <> current_user)
"""

_SCHEMA_GRANTS = """
SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END
FROM pg_namespace n
CROSS JOIN LATERAL aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
LEFT JOIN pg_roles r ON r.oid = a.grantee
WHERE n.nspname = %s AND a.privilege_type = 'USAGE'
  AND (a.grantee = 0 OR r.rolname <> current_user)
"""


def grants_sql(conn: Any, schema: Schema, version_schema: str) -> list[str]:
    """GRANTs that give the version schema's views the privileges their tables have.

    Views are owned by whoever runs the migration; an app that connects as another role needs
    the same rights on its views (and USAGE on the schema) as it had on the tables.
    """
    from .schema import ident

    vs = ident(version_schema)
    stmts = [
        f"GRANT USAGE ON SCHEMA {vs} TO {who}"
        for (who,) in conn.execute(_SCHEMA_GRANTS, (schema.base,)).fetchall()
    ]
    views: dict[str, list[str]] = {}
    for t in schema.tables:
        views.setdefault(t.phys, []).append(t.name)
    for table, privilege, who in conn.execute(_TABLE_GRANTS, (schema.base,)).fetchall():
        for view in views.get(table, []):
            stmts.append(f"GRANT {privilege} ON {vs}.{ident(view)} TO {who}")
    return stmts
