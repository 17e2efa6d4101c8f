"""The domain database: engine, sessions, migrations (same database as DBOS)."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, String, any_, bindparam, create_engine, event, func, literal_column, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from ml_connector.core import jsontext

T = TypeVar("T")

#: Values per `IN (...)` list (a power of two; see `in_chunks`).
IN_CHUNK = 512


def padded(values: Sequence[T]) -> list[T]:
    """`values` for an `IN (...)` list, padded to a power-of-two length by repeating the last one.

    SQLAlchemy renders one placeholder per value, so every distinct length is a distinct SQL
    text, and the driver keeps prepared statements by SQL text (sqlite3: 128 per connection,
    roughly 200 bytes per placeholder). Lists of arbitrary length (a page's remainder, a batch's
    size) made a new cached statement per page and the process grew with the number of rows
    synced; padded, a statement has a handful of shapes. Repeated values do not change what
    `IN` or `NOT IN` match.
    """
    out = list(values)
    if out:
        n = 1 << (len(out) - 1).bit_length()
        out.extend([out[-1]] * (n - len(out)))
    return out


def in_chunks(values: Sequence[T], size: int = IN_CHUNK) -> Iterator[list[T]]:
    """`values` in chunks of at most `size` (a power of two), each `padded` for an `IN` list."""
    if size & (size - 1):
        raise ValueError(f"chunk size {size} is not a power of two")
    for i in range(0, len(values), size):
        yield padded(values[i:i + size])


def one_of(dialect: str, column: Any, values: Sequence[Any]) -> ColumnElement[bool]:
    """`column IN values` with all the values in ONE bound parameter, for a list of any length:
    SQLite `column IN (SELECT value FROM json_each(?))` (a JSON array; the column's index is used,
    as for an IN list), Postgres `column = ANY(%s)` (an array), else a padded `IN` list.

    SQLAlchemy's expanding `IN` binds and renders each value in Python (a cost per value, on every
    page and target request of a sync) and needs chunks under the driver's parameter limit; one
    parameter costs a C-level encode, and the SQL text is one per statement whatever the number of
    values (the drivers' prepared-statement caches keep one entry: no padding needed). The values
    are ints or strings (JSON gives them back as the same SQL values)."""
    if dialect == "sqlite":
        arg = bindparam(None, jsontext.dumps(list(values)), type_=String())
        return column.in_(select(literal_column("value")).select_from(func.json_each(arg)))
    if dialect == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(padded(values))


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def sqlalchemy_url(url: str) -> str:
    """Postgres URLs use psycopg 3 (the driver DBOS installs)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def dbos_url(url: str) -> str:
    """DBOS wants a plain driver-less URL."""
    if url.startswith("postgresql+psycopg://"):
        return "postgresql://" + url.split("://", 1)[1]
    return url


def ensure_sqlite_dir(url: str) -> None:
    if is_sqlite(url) and ":memory:" not in url:
        path = url.split("///", 1)[-1]
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def _json_text(value: Any) -> str:
    # A plain function, not jsontext's closure: psycopg logs a "resource leak" warning for a closure
    # as a JSON dumper (it cannot cache the adapter class it makes for one).
    return jsontext.dumps(value)


class Database:
    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = sqlalchemy_url(url)
        ensure_sqlite_dir(self.url)
        # JSON columns as json.dumps writes them, without its per-call set-up (several per record synced).
        kwargs: dict[str, Any] = {"echo": echo, "future": True, "json_serializer": _json_text}
        if is_sqlite(self.url):
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        else:
            kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
        self.engine: Engine = create_engine(self.url, **kwargs)
        if is_sqlite(self.url):
            event.listen(self.engine, "connect", _sqlite_pragmas)
            # pysqlite's own BEGIN handling defers locks; issue BEGIN IMMEDIATE
            # ourselves so writers queue on busy_timeout instead of failing.
            event.listen(self.engine, "begin", _sqlite_begin)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._migrated = False
        self._lock = threading.Lock()
        # SQLite has one writer at a time. Writers of this process queue here, and the next
        # starts the moment the last commits; left to SQLite's busy handler, a waiting writer
        # sleeps in steps of up to 100 ms and noticed a released lock that much later (the
        # sync's page and delivery threads lost seconds per run that way).
        self._writer: threading.RLock | None = threading.RLock() if is_sqlite(self.url) else None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def share_writer_lock(self, engine: Engine) -> bool:
        """Writers of another engine on this SQLite file (DBOS's system database: step results,
        dequeues, workflow status) queue on this process's writer lock too, from their first write
        statement to the end of their transaction. Left to SQLite's busy handler, they waited in
        sleeps of up to 100 ms while this process's writers handed the lock to one another: a
        finished delivery was recorded, and the next one dequeued, up to half a second late.
        False (nothing done) unless both are SQLite."""
        writer = self._writer
        if writer is None or engine.dialect.name != "sqlite":
            return False
        held: set[int] = set()  # DB-API connections (by id) holding the lock in an open transaction
        dialect = engine.dialect

        def raw(conn: Any) -> int:  # the driver's connection, under the pool's proxy
            return id(getattr(conn, "dbapi_connection", conn))

        def before(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
            key = raw(conn.connection)
            if key not in held and _writes(statement) and writer.acquire(timeout=30):
                held.add(key)

        def ended(end: Callable[[Any], None]) -> Callable[[Any], None]:
            def wrapped(conn: Any) -> None:
                try:
                    end(conn)
                finally:  # released once SQLite's lock is (after the COMMIT or ROLLBACK)
                    key = raw(conn)
                    if key in held:
                        held.discard(key)
                        writer.release()
            return wrapped

        event.listen(engine, "before_cursor_execute", before)
        # The dialect ends every transaction of the engine, the pool's reset of a returned connection too.
        dialect.do_commit = ended(dialect.do_commit)  # type: ignore[method-assign,assignment]
        dialect.do_rollback = ended(dialect.do_rollback)  # type: ignore[method-assign,assignment]
        return True

    def migrate(self) -> None:
        """Bring the schema to every head with Alembic (idempotent; safe in every process).

        Features may add independent migration branches (each off an earlier
        revision), so we upgrade to all heads rather than one linear head.
        """
        with self._lock:
            if self._migrated:
                return
            if self._at_head():
                # The common case for every CLI call: skip importing and running Alembic.
                self._migrated = True
                return
            from alembic import command
            from alembic.config import Config

            cfg = Config()
            cfg.set_main_option("script_location", str(resources.files("ml_connector.core") / "migrations"))
            cfg.attributes["engine"] = self.engine
            if self.dialect == "postgresql":
                # Several workers may start at once: serialize migrations.
                with self.engine.begin() as conn:
                    conn.execute(text("SELECT pg_advisory_xact_lock(74737101)"))
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, "heads")
            else:
                command.upgrade(cfg, "heads")
            self._migrated = True

    def _at_head(self) -> bool:
        try:
            with self.engine.connect() as conn:
                current = {r[0] for r in conn.execute(text("SELECT version_num FROM mlc_alembic_version"))}
        except Exception:
            return False  # no version table yet
        return current == migration_heads()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: commits on success, rolls back on error."""
        writer = self._writer
        # Bounded like SQLite's busy timeout: past it, SQLite's own wait decides.
        held = writer.acquire(timeout=30) if writer is not None else False
        try:
            with self.sessions() as s, s.begin():
                yield s
        finally:
            if held and writer is not None:
                writer.release()

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only session in autocommit mode: takes no write lock, sees committed data."""
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn, \
                Session(bind=conn) as s:
            yield s

    def dispose(self) -> None:
        self.engine.dispose()


def migration_heads() -> set[str]:
    """Head revisions, read from the migration files without importing Alembic."""
    revs: dict[str, str | None] = {}
    folder = resources.files("ml_connector.core") / "migrations" / "versions"
    for f in folder.iterdir():
        if not f.name.endswith(".py"):
            continue
        src = f.read_text(encoding="utf-8")
        rev = re.search(r"^revision\s*=\s*['\"]([^'\"]+)['\"]", src, re.M)
        down = re.search(r"^down_revision\s*=\s*['\"]([^'\"]+)['\"]", src, re.M)
        if rev:
            revs[rev.group(1)] = down.group(1) if down else None
    parents = {d for d in revs.values() if d}
    return {r for r in revs if r not in parents}


_WRITE_WORDS = ("INSERT", "UPDATE", "DELETE", "REPLACE")


def _writes(statement: str) -> bool:
    """Whether a statement makes SQLite's driver begin a write transaction (DML, a CTE's too)."""
    head = statement.lstrip()[:7].upper()
    if head.startswith(_WRITE_WORDS):
        return True
    return head.startswith("WITH") and any(w in statement.upper() for w in _WRITE_WORDS)


def _sqlite_pragmas(dbapi_conn: Any, _rec: Any) -> None:
    dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA cache_size=-1024")  # 1 MiB per connection: memory stays flat as tables grow
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        return  # a read-only session (Database.read): no transaction, no write lock
    conn.exec_driver_sql("BEGIN IMMEDIATE")
