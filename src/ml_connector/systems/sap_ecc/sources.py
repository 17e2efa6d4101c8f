"""What the flows read from SAP ECC, each with the cursor the engine persists (see core/flow.py `Source`).

- `VendorSource`: LFA1 joined with LFB1 of the configured company codes. Full: LFA1 by key
  range, page by page. Incremental: the vendor change documents (CDHDR, object class KRED)
  since the last run's watermark (SAP's clock at the previous run's start, minus an overlap)
  name the vendors to re-read; the ledger's content hashes drop the ones that did not change.
- `GLAccountSource`: SKA1 + SKAT + SKB1 of the company codes' chart (T001-KTOPL).
- `CostCenterSource`: CSKS (the period valid today, else the latest) + CSKT.
- `sap_clock`: SAP's local time (RFC_SYSTEM_INFO), which change documents are stamped in.

All reads go through `TableReader` (probed function, bounded key windows).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ml_connector.core.flow import Page, RunContext, Source
from ml_connector.systems.sap_ecc.incremental import changed_object_ids
from ml_connector.systems.sap_ecc.table_reader import Page as TablePage
from ml_connector.systems.sap_ecc.table_reader import TableReader, quote

log = logging.getLogger(__name__)

LFA1_FIELDS = ["LIFNR", "NAME1", "NAME2", "LAND1", "ORT01", "KTOKK", "LOEVM", "SPERR", "STCD1", "ERDAT"]
LFB1_FIELDS = ["LIFNR", "BUKRS", "LOEVM", "SPERR", "ZTERM", "AKONT"]
CHUNK_IDS = 400  # vendor ids per IN-list query (keeps OPTIONS at a few dozen lines)

#: SAP language keys (1 character) for the ISO codes a configuration may name.
_SPRAS = {"EN": "E", "DE": "D", "FR": "F", "ES": "S", "IT": "I", "NL": "N", "PT": "P", "JA": "J", "ZH": "1"}


def spras(value: Any) -> str:
    """SAP's 1-character language key of an ISO code (EN → E) or of a key itself (default E)."""
    text = str(value or "E").strip().upper()
    return _SPRAS.get(text, text[:1] or "E")


def in_list(field: str, values: list[str]) -> str:
    """`FIELD IN ( 'a' , 'b' )` for an RFC_READ_TABLE WHERE clause."""
    return f"{field} IN ( " + " , ".join(quote(v) for v in values) + " )"


def read_all(reader: TableReader, table: str, fields: list[str], key_fields: list[str], where: str,
             page_size: int) -> list[dict[str, str]]:
    """Every matching row, values stripped (for small tables: charts, texts)."""
    rows: list[dict[str, str]] = []
    for page in reader.read(table, fields, key_fields=key_fields, where=where, page_size=page_size):
        rows.extend({k: str(v).strip() for k, v in r.items()} for r in page.rows)
    return rows


def sap_clock(caller: Any) -> datetime:
    """SAP's local time (change documents are stamped in it): UTC + RFCSI's RFCTZONE (seconds), naive."""
    info = caller.call("RFC_SYSTEM_INFO", {}).get("RFCSI_EXPORT", {})
    try:
        offset = int(str(info.get("RFCTZONE", "0")).strip() or 0)
    except ValueError:
        offset = 0
    return (datetime.now(UTC) + timedelta(seconds=offset)).replace(tzinfo=None)


def _stamp(at: datetime) -> dict[str, str]:
    return {"date": at.strftime("%Y%m%d"), "time": at.strftime("%H%M%S")}


class _TableSource(Source):
    def __init__(self, connection: str, *, page_size: int = 5000) -> None:
        self.connection = connection
        self.page_size = page_size

    def reader(self, ctx: RunContext) -> TableReader:
        return TableReader.probed(ctx.runtime.connection(self.connection))


class VendorSource(_TableSource):
    """Vendors (LFA1 + LFB1 rows of `company_codes` as `_company_codes` {BUKRS: row}); vendors not
    created in any of those company codes are out of scope. Cursor: {"watermark": {date, time}}
    (SAP time at the start of the last run); `overlap_seconds` are re-read."""

    def __init__(self, connection: str, *, company_codes: list[str], page_size: int = 5000,
                 overlap_seconds: float = 3600.0) -> None:
        super().__init__(connection, page_size=page_size)
        self.company_codes = company_codes
        self.overlap = overlap_seconds
        # run id -> (the key the next page continues from, that page being read ahead): see _full_page
        self._gens: dict[str, tuple[str | None, Future[tuple[dict[str, dict[str, Any]], str | None,
                                                             Iterator[TablePage], TablePage | None]]]] = {}
        self._executor: ThreadPoolExecutor | None = None  # the next page's read-ahead
        self._lookahead: ThreadPoolExecutor | None = None  # the LFA1 page after it, meanwhile

    def begin(self, ctx: RunContext, cursor: dict[str, Any]) -> dict[str, Any]:
        started = _stamp(sap_clock(ctx.runtime.connection(self.connection)))
        wm = cursor.get("watermark")
        if ctx.mode == "full" or not wm:
            return {"phase": "full", "after": None, "started": started}
        since = datetime.strptime(wm["date"] + wm["time"], "%Y%m%d%H%M%S") - timedelta(seconds=self.overlap)
        ids = changed_object_ids(self.reader(ctx), "KRED", since, page_size=self.page_size)
        return {"phase": "changes", "ids": ids, "offset": 0, "started": started}

    def read_page(self, ctx: RunContext, state: dict[str, Any]) -> Page:
        reader = self.reader(ctx)
        ccs = in_list("BUKRS", self.company_codes)
        if state["phase"] == "full":
            vendors, after, done = self._full_page(ctx, reader, state["after"])
            return Page(self._records(vendors), dict(state, after=after), done)
        ids: list[str] = state["ids"]
        off = int(state["offset"])
        take = ids[off:off + self.page_size]
        vendors = {}
        for i in range(0, len(take), CHUNK_IDS):
            chunk = take[i:i + CHUNK_IDS]
            for p in reader.read("LFA1", LFA1_FIELDS, key_fields=["LIFNR"], where=in_list("LIFNR", chunk),
                                 page_size=self.page_size):
                vendors.update({r["LIFNR"]: r for r in p.rows})
        for i in range(0, len(take), CHUNK_IDS):
            chunk = [v for v in take[i:i + CHUNK_IDS] if v in vendors]
            if chunk:
                self._attach_company_codes(reader, vendors, in_list("LIFNR", chunk) + " AND " + ccs)
        new_off = off + len(take)
        return Page(self._records(vendors), dict(state, offset=new_off), new_off >= len(ids),
                    estimate_total=len(ids))

    def finish(self, ctx: RunContext, state: dict[str, Any]) -> dict[str, Any]:
        self._gens.pop(ctx.run_id, None)
        return {"watermark": state.get("started")}

    def _full_page(self, ctx: RunContext, reader: TableReader,
                   after: str | None) -> tuple[dict[str, dict[str, Any]], str | None, bool]:
        """The vendors of the next LFA1 page after `after` (with their LFB1 rows), the last key
        read, and whether it is the last page.

        While the engine stages this page and delivers earlier ones, the next page (LFA1 and
        LFB1) is read in the background: SAP's time answering overlaps this process's work
        instead of adding to it. The read-ahead is keyed by the key it continues from, so a step
        re-executed from another committed key (a retry, a restart) reads afresh.
        """
        cached = self._gens.pop(ctx.run_id, None)
        if cached is not None and cached[0] == after:
            vendors, last, gen, lookahead = cached[1].result()
        else:
            if cached is not None:
                cached[1].cancel()
            gen = iter(reader.read("LFA1", LFA1_FIELDS, key_fields=["LIFNR"], page_size=self.page_size,
                                   after=[after] if after else None))
            vendors, last, gen, lookahead = self._complete_page(reader, gen, next(gen, None), after)
        if lookahead is not None:
            self._gens.clear()  # one run of a stream at a time: nothing else to keep
            self._gens[ctx.run_id] = (last, self._pool().submit(self._complete_page, reader, gen, lookahead, last))
        return vendors, last, lookahead is None

    def _complete_page(self, reader: TableReader, gen: Iterator[TablePage], page: TablePage | None,
                       after: str | None) -> tuple[dict[str, dict[str, Any]], str | None, Iterator[TablePage],
                                                   TablePage | None]:
        """LFA1 `page` with its LFB1 rows attached, the last key read, the generator and the next
        LFA1 page read from it (None: `page` is the last one), which the next call completes."""
        if page is None:
            return {}, after, gen, None
        # The next LFA1 page is read while this one's LFB1 rows are (independent reads).
        ahead = self._pool("_lookahead", "mlc-look-ahead").submit(next, gen, None)
        vendors = {r["LIFNR"]: r for r in page.rows}
        last = page.last_key[0] if page.last_key else after
        try:
            if vendors:
                lo, hi = min(vendors), max(vendors)
                ccs = in_list("BUKRS", self.company_codes)
                self._attach_company_codes(reader, vendors,
                                           f"LIFNR >= {quote(lo)} AND LIFNR <= {quote(hi)} AND {ccs}")
        finally:
            lookahead = ahead.result()  # the generator is never left running behind a failure
        return vendors, last, gen, lookahead

    def _pool(self, attr: str = "_executor", name: str = "mlc-read-ahead") -> ThreadPoolExecutor:
        pool: ThreadPoolExecutor | None = getattr(self, attr)
        if pool is None:
            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
            setattr(self, attr, pool)
        return pool

    def _attach_company_codes(self, reader: TableReader, vendors: dict[str, dict[str, Any]], where: str) -> None:
        for p in reader.read("LFB1", LFB1_FIELDS, key_fields=["LIFNR", "BUKRS"], where=where,
                             page_size=self.page_size * 4):
            for r in p.rows:
                v = vendors.get(r["LIFNR"])
                if v is not None:
                    v.setdefault("_company_codes", {})[r["BUKRS"]] = r

    @staticmethod
    def _records(vendors: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
        return [(k, v) for k, v in sorted(vendors.items()) if v.get("_company_codes")]


class _SnapshotSource(_TableSource):
    """A small table set (hundreds to a few thousand rows) read whole in one page each run; the
    ledger's hashes drop what did not change. No cursor."""

    def begin(self, ctx: RunContext, cursor: dict[str, Any]) -> dict[str, Any]:
        return {"read": False}

    def read_page(self, ctx: RunContext, state: dict[str, Any]) -> Page:
        return Page(self.read_all(ctx), {"read": True}, True)

    def finish(self, ctx: RunContext, state: dict[str, Any]) -> dict[str, Any]:
        return {}

    def read_all(self, ctx: RunContext) -> list[tuple[str, dict[str, Any]]]:
        raise NotImplementedError


class GLAccountSource(_SnapshotSource):
    """G/L accounts of the company codes' chart(s): SKA1 row + `_text` (SKAT in `language`) +
    `_company_codes` (the SKB1 rows); accounts in no configured company code are out of scope."""

    def __init__(self, connection: str, *, company_codes: list[str], language: str = "E",
                 page_size: int = 5000) -> None:
        super().__init__(connection, page_size=page_size)
        self.company_codes = company_codes
        self.language = spras(language)

    def read_all(self, ctx: RunContext) -> list[tuple[str, dict[str, Any]]]:
        reader = self.reader(ctx)
        ccs = in_list("BUKRS", self.company_codes)
        charts = sorted({r["KTOPL"] for r in read_all(reader, "T001", ["BUKRS", "KTOPL"], ["BUKRS"], ccs,
                                                      self.page_size) if r.get("KTOPL")})
        if not charts:
            return []
        in_chart = in_list("KTOPL", charts)
        ska1 = read_all(reader, "SKA1", ["KTOPL", "SAKNR", "XBILK", "GVTYP", "KTOKS", "XLOEV", "XSPEB"],
                        ["KTOPL", "SAKNR"], in_chart, self.page_size)
        texts = {(r["KTOPL"], r["SAKNR"]): r for r in read_all(
            reader, "SKAT", ["SPRAS", "KTOPL", "SAKNR", "TXT20", "TXT50"], ["SPRAS", "KTOPL", "SAKNR"],
            f"SPRAS = {quote(self.language)} AND {in_chart}", self.page_size)}
        per_cc: dict[str, list[dict[str, str]]] = {}
        for r in read_all(reader, "SKB1", ["BUKRS", "SAKNR", "XSPEB", "XLOEB", "MITKZ"], ["BUKRS", "SAKNR"],
                          ccs, self.page_size):
            per_cc.setdefault(r["SAKNR"], []).append(r)
        out: dict[str, dict[str, Any]] = {}
        for a in ska1:
            skb1 = per_cc.get(a["SAKNR"])
            if not skb1:
                continue  # not created in any configured company code: out of scope
            if a["SAKNR"] in out:
                log.warning("G/L account %s exists in several charts %s: the first is kept", a["SAKNR"], charts)
                continue
            out[a["SAKNR"]] = {**a, "_text": texts.get((a["KTOPL"], a["SAKNR"]), {}), "_company_codes": skb1}
        return sorted(out.items())


class CostCenterSource(_SnapshotSource):
    """Cost centers of the controlling areas in the company codes: the CSKS period valid today
    (else the latest) + `_valid_today` + `_text` (CSKT in `language`), keyed by KOSTL."""

    def __init__(self, connection: str, *, company_codes: list[str], controlling_areas: list[str],
                 language: str = "E", page_size: int = 5000,
                 today: Callable[[], date] = lambda: datetime.now(UTC).date()) -> None:
        super().__init__(connection, page_size=page_size)
        self.company_codes = company_codes
        self.controlling_areas = controlling_areas
        self.language = spras(language)
        self.today = today

    def read_all(self, ctx: RunContext) -> list[tuple[str, dict[str, Any]]]:
        reader = self.reader(ctx)
        today = self.today().strftime("%Y%m%d")
        areas = in_list("KOKRS", self.controlling_areas)
        rows = read_all(reader, "CSKS", ["KOKRS", "KOSTL", "DATBI", "DATAB", "BKZKP", "BUKRS"],
                        ["KOKRS", "KOSTL", "DATBI"], areas + " AND " + in_list("BUKRS", self.company_codes),
                        self.page_size)
        texts = {(r["KOKRS"], r["KOSTL"], r["DATBI"]): r for r in read_all(
            reader, "CSKT", ["SPRAS", "KOKRS", "KOSTL", "DATBI", "KTEXT", "LTEXT"],
            ["SPRAS", "KOKRS", "KOSTL", "DATBI"], f"SPRAS = {quote(self.language)} AND " + areas, self.page_size)}
        by_center: dict[tuple[str, str], list[dict[str, str]]] = {}
        for r in rows:
            by_center.setdefault((r["KOKRS"], r["KOSTL"]), []).append(r)
        out: dict[str, dict[str, Any]] = {}
        for (kokrs, kostl), periods in sorted(by_center.items()):
            valid = [r for r in periods if r.get("DATAB", "00000000") <= today <= r["DATBI"]]
            row = valid[0] if valid else max(periods, key=lambda r: r["DATBI"])
            if kostl in out:
                log.warning("cost center %s exists in several controlling areas: the first is kept", kostl)
                continue
            text = texts.get((kokrs, kostl, row["DATBI"])) or next(
                (t for k, t in texts.items() if k[:2] == (kokrs, kostl)), {})
            out[kostl] = {**row, "_valid_today": bool(valid), "_text": text}
        return sorted(out.items())
