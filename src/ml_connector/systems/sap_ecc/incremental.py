"""Incremental and packaged table extracts over `TableReader` (reference §2.3, §4).

Never one unbounded select: every extract is delivered in packages of at most `package_size` rows
(default 20,000, at most 50,000), read through the reader's verified key windows (each RFC call is
bounded by ROWCOUNT).

Incremental reads by change date (`read_changed`): rows whose change-date field(s) are on or after
`since - overlap_days` (`AEDAT >= D OR ERDAT >= D` when a table has several, e.g. VBAK whose AEDAT
stays 00000000 until the first change). The overlap re-reads the last days so that rows changed
while the previous run was reading, or posted late with an earlier date, are not missed; the
re-read rows the previous run already delivered (same key, same change stamp) are dropped by key
(`ChangeCursor.delivered`). A row changed again has a newer stamp and is delivered again.

Tables without a change date (KNA1, LFA1) are read through their change documents
(`read_changed_by_change_documents`): CDHDR rows of the object class (DEBI, KRED) with UDATE on or
after the same overlap date give the changed object ids; the rows are then read by key in IN-lists.

    cursor = ChangeCursor(since=date(2024, 6, 1))
    for package in read_incremental(reader, "EKKO", cursor=cursor):   # catalogue: AEDAT
        load(package)
    save(cursor.to_dict())            # next run: ChangeCursor.from_dict(...)

The cursor only advances when the generator is exhausted: a run that fails half-way is repeated
from the old cursor, and the dedupe keeps the repeat from delivering rows twice within a run.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from .table_reader import TableReader, TableReadError, quote
from .tables import table_info

__all__ = [
    "DEFAULT_PACKAGE_SIZE",
    "MAX_PACKAGE_SIZE",
    "ChangeCursor",
    "changed_object_ids",
    "read_changed",
    "read_changed_by_change_documents",
    "read_incremental",
    "read_packages",
]

DEFAULT_PACKAGE_SIZE = 20_000
MAX_PACKAGE_SIZE = 50_000
DEFAULT_OVERLAP_DAYS = 1
IN_LIST_CHUNK = 50  # object ids per IN (...) read; keeps OPTIONS at ~10 lines

Key = tuple[str, ...]
Row = dict[str, str]


def _dats(day: date) -> str:
    return day.strftime("%Y%m%d")


def _parse_dats(value: str) -> date | None:
    if len(value) != 8 or not value.isdigit() or value == "00000000":
        return None
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        return None


@dataclass
class ChangeCursor:
    """Where an incremental extract stands: the high-water change date and the change stamps of
    the rows already delivered within the overlap window (key -> stamp)."""

    since: date
    delivered: dict[Key, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"since": self.since.isoformat(),
                "delivered": [[*key, stamp] for key, stamp in sorted(self.delivered.items())]}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ChangeCursor:
        return cls(since=date.fromisoformat(str(raw["since"])),
                   delivered={tuple(str(v) for v in item[:-1]): str(item[-1]) for item in raw.get("delivered", [])})


def _check_package_size(package_size: int) -> None:
    if not 1 <= package_size <= MAX_PACKAGE_SIZE:
        raise ValueError(f"package_size must be between 1 and {MAX_PACKAGE_SIZE}, got {package_size}")


def _package(rows: Iterable[Row], package_size: int) -> Iterator[list[Row]]:
    buf: list[Row] = []
    for row in rows:
        buf.append(row)
        if len(buf) >= package_size:
            yield buf
            buf = []
    if buf:
        yield buf


def _page_size(package_size: int, page_size: int | None) -> int:
    return min(package_size, 10_000) if page_size is None else max(1, min(page_size, package_size))


def read_packages(reader: TableReader, table: str, *, key_fields: Sequence[str], fields: Sequence[str] | None = None,
                  where: str | None = None, package_size: int = DEFAULT_PACKAGE_SIZE,
                  page_size: int | None = None) -> Iterator[list[Row]]:
    """A full (filtered) extract in packages of at most `package_size` rows, each row once."""
    _check_package_size(package_size)
    pages = reader.read(table, fields, key_fields=key_fields, where=where,
                        page_size=_page_size(package_size, page_size))
    yield from _package((row for page in pages for row in page.rows), package_size)


def _with(fields: Sequence[str] | None, extra: Sequence[str]) -> list[str] | None:
    if fields is None:
        return None
    out = [f.upper() for f in fields]
    out += [e for e in extra if e not in out]
    return out


def read_changed(reader: TableReader, table: str, *, date_field: str | Sequence[str],
                 since: date | ChangeCursor, key_fields: Sequence[str], overlap_days: int = DEFAULT_OVERLAP_DAYS,
                 fields: Sequence[str] | None = None, where: str | None = None,
                 package_size: int = DEFAULT_PACKAGE_SIZE, page_size: int | None = None) -> Iterator[list[Row]]:
    """Rows of `table` changed on or after `since` (minus `overlap_days`), in packages.

    `date_field`: one DATS field or several (a row qualifies if any is on or after the date).
    `since`: a date, or a `ChangeCursor` whose `delivered` stamps suppress rows the previous run
    already delivered and which is advanced (high-water date, overlap stamps) once the generator is
    exhausted. `where` narrows further (e.g. "BUKRS = '1000'")."""
    _check_package_size(package_size)
    if overlap_days < 0:
        raise ValueError("overlap_days must not be negative")
    date_fields = [date_field.upper()] if isinstance(date_field, str) else [d.upper() for d in date_field]
    if not date_fields:
        raise ValueError("date_field must name at least one DATS field")
    keys = [k.upper() for k in key_fields if k.upper() != "MANDT"]
    cursor = since if isinstance(since, ChangeCursor) else ChangeCursor(since=since)
    low = cursor.since - timedelta(days=overlap_days)
    low_s = _dats(low)
    described = {f.name: f for f in reader.describe(table)}
    for d in date_fields:
        f = described.get(d)
        if f is None:
            raise TableReadError(f"table {table} has no change-date field {d}")
        if f.type != "D":
            raise TableReadError(f"{table}-{d} is not a date (DATS) field (type {f.type})")
    cond = " OR ".join(f"{d} >= {quote(low_s)}" for d in date_fields)
    if len(date_fields) > 1:
        cond = f"( {cond} )"
    full_where = f"( {where} ) AND {cond}" if where else cond
    wanted = _with(fields, [*keys, *date_fields])
    seen: set[Key] = set()
    delivered: dict[Key, str] = {}
    high = cursor.since

    def stamped() -> Iterator[Row]:
        nonlocal high
        for page in reader.read(table, wanted, key_fields=keys, where=full_where,
                                page_size=_page_size(package_size, page_size)):
            for row in page.rows:
                key = tuple(row[k] for k in keys)
                stamp = max(row.get(d, "") for d in date_fields)
                if key in seen:
                    continue
                seen.add(key)
                if cursor.delivered.get(key) == stamp:
                    delivered[key] = stamp  # already delivered by the previous run: overlap re-read
                    continue
                delivered[key] = stamp
                day = _parse_dats(stamp)
                if day is not None and day > high:
                    high = day
                yield row

    yield from _package(stamped(), package_size)
    keep_from = _dats(high - timedelta(days=overlap_days))
    cursor.delivered = {k: s for k, s in {**cursor.delivered, **delivered}.items() if s >= keep_from}
    cursor.since = high


def read_changed_by_change_documents(reader: TableReader, table: str, *, object_class: str,
                                     since: date | ChangeCursor, key_fields: Sequence[str],
                                     id_field: str | None = None, overlap_days: int = DEFAULT_OVERLAP_DAYS,
                                     fields: Sequence[str] | None = None, where: str | None = None,
                                     package_size: int = DEFAULT_PACKAGE_SIZE,
                                     page_size: int | None = None) -> Iterator[list[Row]]:
    """Current rows of `table` whose object (CDHDR-OBJECTID = `id_field`, default the first key
    field) has change documents of `object_class` (e.g. DEBI for KNA1, KRED for LFA1) dated on or
    after `since` minus the overlap. The change stamp is the object's latest UDATE+UTIME+CHANGENR;
    `ChangeCursor` dedupe as in `read_changed`. Objects without a row (deleted) are skipped."""
    _check_package_size(package_size)
    if overlap_days < 0:
        raise ValueError("overlap_days must not be negative")
    keys = [k.upper() for k in key_fields if k.upper() != "MANDT"]
    id_name = (id_field or keys[0]).upper()
    cursor = since if isinstance(since, ChangeCursor) else ChangeCursor(since=since)
    low_s = _dats(cursor.since - timedelta(days=overlap_days))
    cd_where = f"OBJECTCLAS = {quote(object_class.upper())} AND UDATE >= {quote(low_s)}"
    latest = _change_document_stamps(reader, cd_where, _page_size(package_size, page_size))
    width = {f.name: f.length for f in reader.describe(table)}.get(id_name)
    if width is None:
        raise TableReadError(f"table {table} has no field {id_name}")
    todo = sorted((oid[:width], stamp) for oid, stamp in latest.items()
                  if cursor.delivered.get((oid[:width],)) != stamp)
    wanted = _with(fields, [*keys, id_name])
    delivered: dict[Key, str] = {(oid[:width],): stamp for oid, stamp in latest.items()
                                 if cursor.delivered.get((oid[:width],)) == stamp}
    stamps = dict(todo)

    def rows() -> Iterator[Row]:
        seen: set[Key] = set()
        for i in range(0, len(todo), IN_LIST_CHUNK):
            ids = [oid for oid, _ in todo[i:i + IN_LIST_CHUNK]]
            cond = f"{id_name} IN ( {' , '.join(quote(x) for x in ids)} )"
            chunk_where = f"( {where} ) AND {cond}" if where else cond
            for page in reader.read(table, wanted, key_fields=keys, where=chunk_where,
                                    page_size=_page_size(package_size, page_size)):
                for row in page.rows:
                    key = tuple(row[k] for k in keys)
                    if key in seen:
                        continue
                    seen.add(key)
                    delivered[(row[id_name],)] = stamps[row[id_name]]
                    yield row

    yield from _package(rows(), package_size)
    high = max((_parse_dats(s[:8]) or cursor.since for s in latest.values()), default=cursor.since)
    high = max(high, cursor.since)
    keep_from = _dats(high - timedelta(days=overlap_days))
    cursor.delivered = {k: s for k, s in {**cursor.delivered, **delivered}.items() if s[:8] >= keep_from}
    cursor.since = high


def _change_document_stamps(reader: TableReader, where: str, page_size: int) -> dict[str, str]:
    """CDHDR rows matching `where`: object id -> its latest change stamp (UDATE+UTIME+CHANGENR)."""
    latest: dict[str, str] = {}
    for page in reader.read("CDHDR", ["OBJECTID", "CHANGENR", "UDATE", "UTIME"],
                            key_fields=["OBJECTCLAS", "OBJECTID", "CHANGENR"], where=where, page_size=page_size):
        for r in page.rows:
            stamp = r["UDATE"] + r["UTIME"].ljust(6, "0") + r["CHANGENR"]
            oid = r["OBJECTID"]
            if stamp > latest.get(oid, ""):
                latest[oid] = stamp
    return latest


def changed_object_ids(reader: TableReader, object_class: str, since: datetime, *,
                       page_size: int = 10_000) -> list[str]:
    """The ids (sorted, blanks dropped) of the objects of `object_class` (KRED, DEBI, ...) with
    change documents stamped at or after `since`, to the second. `since` is SAP's local time
    (the zone change documents are stamped in); the caller subtracts its own overlap."""
    d, t = since.strftime("%Y%m%d"), since.strftime("%H%M%S")
    where = (f"OBJECTCLAS = {quote(object_class.upper())} AND ( UDATE > {quote(d)} OR "
             f"( UDATE = {quote(d)} AND UTIME >= {quote(t)} ) )")
    ids = {oid.strip() for oid in _change_document_stamps(reader, where, max(1, page_size))}
    return sorted(i for i in ids if i)


def read_incremental(reader: TableReader, table: str, *, cursor: ChangeCursor | date,
                     overlap_days: int = DEFAULT_OVERLAP_DAYS, fields: Sequence[str] | None = None,
                     where: str | None = None, package_size: int = DEFAULT_PACKAGE_SIZE,
                     page_size: int | None = None) -> Iterator[list[Row]]:
    """`read_changed` or `read_changed_by_change_documents` as the catalogue (tables.py) says."""
    info = table_info(table)
    if info.change_date_fields:
        return read_changed(reader, info.name, date_field=info.change_date_fields, since=cursor,
                            key_fields=info.key_fields, overlap_days=overlap_days, fields=fields, where=where,
                            package_size=package_size, page_size=page_size)
    if info.change_object_class:
        return read_changed_by_change_documents(
            reader, info.name, object_class=info.change_object_class, since=cursor, key_fields=info.key_fields,
            id_field=info.change_object_id_field or None, overlap_days=overlap_days, fields=fields, where=where,
            package_size=package_size, page_size=page_size)
    raise TableReadError(f"table {info.name} has neither a change date nor change documents: read it in full "
                         f"with read_packages")
