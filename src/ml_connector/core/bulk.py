"""Many rows in one DB-API `executemany`, for the per-record statements of the sync path.

SQLAlchemy's own executemany costs about 7 µs a row in Python (parameter construction and
type processing per row and per column) against about 3 µs for SQLite to insert the row: on
the sync path (outbox, ledger, audit: a few rows per record) that was a large share of the
process's CPU. Here the statement is compiled once per call and each row's values are bound
with the column types' processors only where a type has one; values that are the same for
every row (defaults) are computed once per call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import repeat
from typing import Any

from sqlalchemy import BindParameter, Connection, Dialect, Table
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import UpdateBase

_MISSING = object()


def table(model: Any) -> Table:
    """The Core table of a mapped class (typed: `__table__` is declared as a FromClause)."""
    t = model.__table__
    assert isinstance(t, Table)
    return t


def executemany(conn: Connection, stmt: UpdateBase, rows: Sequence[Mapping[str, Any]],
                *, ready: Sequence[str] = ()) -> int:
    """Execute `stmt` (an INSERT, an UPDATE or an upsert of one table) once per row.

    Every row has the same keys. A statement parameter missing from the rows takes the value
    the statement gives it, else the column's default (INSERT) or onupdate (UPDATE), computed
    once for all the rows. `ready` names row keys whose values are already in the driver's
    form (skips their type processing, e.g. JSON serialized by the caller). Returns the rows
    changed, as the driver counts them (SQLite: summed over the statements).
    """
    if not rows:
        return 0
    return _executemany(conn, stmt, list(rows[0]), len(rows), lambda name: [row[name] for row in rows], ready)


def executemany_columns(conn: Connection, stmt: UpdateBase, columns: Mapping[str, Sequence[Any]],
                        *, ready: Sequence[str] = ()) -> int:
    """`executemany` of rows given column by column (a list of values per key, all of one length):
    for a caller that has its rows' values in other shapes, without building a dict per row."""
    count = len(next(iter(columns.values()), ()))
    if not count:
        return 0
    return _executemany(conn, stmt, list(columns), count, columns.__getitem__, ready)


def _executemany(conn: Connection, stmt: UpdateBase, keys: list[str], count: int,
                 column: Callable[[str], Sequence[Any]], ready: Sequence[str]) -> int:
    """`count` rows with these keys; `column(key)`: the rows' values of a key the statement binds."""
    dialect = conn.dialect
    compiled, given = _compile(stmt, dialect, keys)
    # The parameters as rendered (in order, for a positional paramstyle such as SQLite's).
    names: list[str] = (list(compiled.positiontup or ()) if compiled.positional
                        else list(dict.fromkeys(compiled.bind_names.values())))
    # Columns whose default (INSERT) or onupdate (UPDATE) SQLAlchemy computes in Python.
    prefetch = {c.key: c.default for c in compiled.insert_prefetch}
    prefetch.update({c.key: c.onupdate for c in compiled.update_prefetch})
    constant: dict[str, Any] = {}
    given_keys = set(keys)
    for name in names:
        if name in given_keys:
            continue
        bind = compiled.binds[name]
        gen: Any = prefetch.get(name)
        if gen is not None:
            value = gen.arg(None) if gen.is_callable else gen.arg if gen.is_scalar else _MISSING
            if value is _MISSING:
                raise ValueError(f"column {name}: only Python-side scalar or callable defaults are supported")
        elif bind.required:
            raise ValueError(f"no value for the required parameter {name!r}")
        else:
            value = given.get(bind.key, _MISSING) if given is not None else _MISSING
            if value is _MISSING:
                value = bind.effective_value  # given by the statement (`.values(...)`)
        fixed = bind.type.dialect_impl(dialect).bind_processor(dialect)
        constant[name] = fixed(value) if fixed is not None else value
    # Built column by column (a list per parameter, zipped into rows): loops that run in C, where a
    # Python loop per row and per column cost about as much as SQLite's insert of the row.
    bound: list[Iterable[Any]] = []
    for name in names:
        if name in constant:
            bound.append(repeat(constant[name], count))
            continue
        process: Callable[[Any], Any] | None = (
            None if name in ready else compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
        values = column(name)
        bound.append(values if process is None else map(process, values))
    params: list[Any] = list(zip(*bound, strict=True)) if bound else [()] * count
    if not compiled.positional:
        params = [dict(zip(names, vals, strict=True)) for vals in params]
    return int(conn.exec_driver_sql(compiled.string, params).rowcount)


_CACHE_ATTR = "_mlc_bulk_compiled"
_CACHE_MAX = 64


def _compile(stmt: UpdateBase, dialect: Dialect, keys: list[str]) -> tuple[SQLCompiler, dict[str, Any] | None]:
    """`stmt` compiled for `dialect` and these row keys, and the values `stmt` itself binds, by the
    compiled statement's bind keys (None: they are the compiled statement's own).

    The sync path sends the same few statements (built afresh, e.g. with this call's time) once per
    target request: their compiled form is kept per dialect, by SQLAlchemy's cache key (the
    statement's structure, without its values), so a request does not compile an upsert again.
    Each call's values are the statement's own, mapped by position in the cache key."""
    ck = stmt._generate_cache_key()
    if ck is None:
        return stmt.compile(dialect=dialect, column_keys=keys), None
    cache: dict[Any, tuple[SQLCompiler, Sequence[BindParameter[Any]]]] | None = dialect.__dict__.get(_CACHE_ATTR)
    if cache is None:
        cache = {}
        setattr(dialect, _CACHE_ATTR, cache)
    slot = (ck.key, tuple(keys))
    hit = cache.get(slot)
    if hit is None:
        compiled = stmt.compile(dialect=dialect, column_keys=keys)
        if len(cache) < _CACHE_MAX:
            cache[slot] = (compiled, ck.bindparams)
        return compiled, None
    compiled, first = hit
    return compiled, {b.key: now.effective_value for b, now in zip(first, ck.bindparams, strict=True)}


def session_executemany_columns(session: Session, stmt: UpdateBase, columns: Mapping[str, Sequence[Any]],
                                *, ready: Sequence[str] = ()) -> int:
    """`executemany_columns` in a session's transaction (pending ORM changes flushed first)."""
    if not next(iter(columns.values()), ()):
        return 0
    session.flush()
    return executemany_columns(session.connection(), stmt, columns, ready=ready)


def session_executemany(session: Session, stmt: UpdateBase, rows: Sequence[Mapping[str, Any]],
                        *, ready: Sequence[str] = ()) -> int:
    """`executemany` in a session's transaction, after flushing its pending ORM changes (a
    statement sent to the driver directly does not autoflush as `session.execute` does)."""
    if not rows:
        return 0
    session.flush()
    return executemany(session.connection(), stmt, rows, ready=ready)
