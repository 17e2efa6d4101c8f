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

from ml_connector.core import calls
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
            self._gens[ctx.run_id] = (last, self._pool().submit(calls.carry(self._complete_page), reader, gen,
                                                                 lookahead, last))
        return vendors, last, lookahead is None

    def _complete_page(self, reader: TableReader, gen: Iterator[TablePage], page: TablePage | None,
                       after: str | None) -> tuple[dict[str, dict[str, Any]], str | None, Iterator[TablePage],
                                                   TablePage | None]:
        """LFA1 `page` with its LFB1 rows attached, the last key read, the generator and the next
        LFA1 page read from it (None: `page` is the last one), which the next call completes."""
        if page is None:
            return {}, after, gen, None
        # The next LFA1 page is read while this one's LFB1 rows are (independent reads).
        ahead = self._pool("_lookahead", "mlc-look-ahead").submit(calls.carry(next), gen, None)  # the run's calls
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
            get = vendors.get
            for r in p.rows:  # per LFB1 row read: a new {} only for a vendor's first company code
                v = get(r["LIFNR"])
                if v is not None:
                    ccs = v.get("_company_codes")
                    if ccs is None:
                        ccs = v["_company_codes"] = {}
                    ccs[r["BUKRS"]] = r

    @staticmethod
    def _records(vendors: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
        # sorted by key alone (keys are unique: the same order as sorting the items, at less cost)
        return [(k, v) for k in sorted(vendors) if (v := vendors[k]).get("_company_codes")]


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


# ------------------------------------------------------------------------------ customers (SD / FI-AR)

KNA1_STATUS_FIELDS = ["KUNNR", "NAME1", "NAME2", "LAND1", "ORT01", "KTOKD", "AUFSD", "LIFSD", "FAKSD", "SPERR",
                      "CASSD", "LOEVM", "KONZS", "ERDAT"]
KNB1_STATUS_FIELDS = ["KUNNR", "BUKRS", "SPERR", "LOEVM", "ZTERM"]
KNKK_STATUS_FIELDS = ["KUNNR", "KKBER", "KLIMK", "SKFOR", "SAUFT", "SSOBL", "CRBLB", "CTLPC", "KNKLI", "CASHC"]
KNVV_STATUS_FIELDS = ["KUNNR", "VKORG", "VTWEG", "SPART", "AUFSD", "LIFSD", "FAKSD", "CASSD", "LOEVM", "WAERS"]
KNVP_FIELDS = ["KUNNR", "VKORG", "VTWEG", "SPART", "PARVW", "PARZA", "KUNN2", "DEFPA"]
KNVP_KEY = ["KUNNR", "VKORG", "VTWEG", "SPART", "PARVW", "PARZA"]
VBAK_SPEND_FIELDS = ["VBELN", "KUNNR", "NETWR", "WAERK"]
KNVH_FIELDS = ["HITYP", "KUNNR", "VKORG", "VTWEG", "SPART", "DATAB", "DATBI", "HKUNNR"]
KNVH_KEY = ["HITYP", "KUNNR", "VKORG", "VTWEG", "SPART", "DATAB"]
KNVK_FIELDS = ["PARNR", "KUNNR", "NAMEV", "NAME1", "ABTNR", "ABTPA", "PAFKT", "ANRED", "PARLA"]
MAX_HIERARCHY_DEPTH = 5


def read_customers(reader: TableReader, kunnrs: list[str], *, page_size: int = 5000,
                   spend: bool = True, contacts: bool = False) -> dict[str, dict[str, Any]]:
    """KNA1 rows of `kunnrs` with `_knb1`, `_knkk`, `_knvv`, `_knvp` (their own partner functions),
    `_knvh` (their nodes in SAP's customer hierarchy, every validity period), `_used_by` (KNVP rows
    of other customers naming them as partner), `_spend` ({currency: total net value of their sales
    orders, VBAK}) and, with `contacts`, `_knvk` (their contact persons), read in IN-list chunks."""
    out: dict[str, dict[str, Any]] = {}
    tables: list[tuple[str, list[str], list[str], str]] = [
        ("KNB1", KNB1_STATUS_FIELDS, ["KUNNR", "BUKRS"], "_knb1"),
        ("KNKK", KNKK_STATUS_FIELDS, ["KUNNR", "KKBER"], "_knkk"),
        ("KNVV", KNVV_STATUS_FIELDS, ["KUNNR", "VKORG", "VTWEG", "SPART"], "_knvv"),
        ("KNVP", KNVP_FIELDS, KNVP_KEY, "_knvp"),
        ("KNVH", KNVH_FIELDS, KNVH_KEY, "_knvh")]
    if contacts:
        tables.append(("KNVK", KNVK_FIELDS, ["PARNR"], "_knvk"))
    for i in range(0, len(kunnrs), CHUNK_IDS):
        chunk = kunnrs[i:i + CHUNK_IDS]
        where = in_list("KUNNR", chunk)
        for r in read_all(reader, "KNA1", KNA1_STATUS_FIELDS, ["KUNNR"], where, page_size):
            out[r["KUNNR"]] = {**r, "_knb1": [], "_knkk": [], "_knvv": [], "_knvp": [], "_knvh": [], "_used_by": [],
                               "_spend": {}, **({"_knvk": []} if contacts else {})}
        if not out:
            continue
        for table, fields, keys, slot in tables:
            for r in read_all(reader, table, fields, keys, where, page_size):
                if r["KUNNR"] in out:
                    out[r["KUNNR"]][slot].append(r)
        for r in read_all(reader, "KNVP", KNVP_FIELDS, KNVP_KEY, in_list("KUNN2", chunk), page_size):
            if r["KUNN2"] in out and r["KUNNR"] != r["KUNN2"]:
                out[r["KUNN2"]]["_used_by"].append(r)
        if spend:
            for r in read_all(reader, "VBAK", VBAK_SPEND_FIELDS, ["VBELN"], where, page_size):
                c = out.get(r["KUNNR"])
                if c is not None:
                    try:
                        value = float(r.get("NETWR") or 0)
                    except ValueError:
                        value = 0.0
                    c["_spend"][r.get("WAERK", "")] = round(c["_spend"].get(r.get("WAERK", ""), 0.0) + value, 2)
    return out


def today_dats() -> str:
    """Today (UTC) as an SAP date, for the validity of customer hierarchy assignments."""
    return datetime.now(UTC).strftime("%Y%m%d")


def hierarchy_parents(customer: dict[str, Any], on: str | None = None) -> list[str]:
    """The higher-level nodes of a customer in SAP's customer hierarchy (KNVH-HKUNNR) whose
    assignment is valid `on` (DATAB <= on <= DATBI; default today), one per sales area, in key order."""
    day = on or today_dats()
    own = customer["KUNNR"]
    out: list[str] = []
    for r in sorted(customer.get("_knvh", []), key=lambda r: (r.get("HITYP", ""), r.get("VKORG", ""),
                                                               r.get("VTWEG", ""), r.get("SPART", ""))):
        parent = str(r.get("HKUNNR") or "").strip()
        if parent and parent != own and parent not in out \
                and str(r.get("DATAB") or "00000000") <= day <= str(r.get("DATBI") or "99991231"):
            out.append(parent)
    return out


def parents_of(customer: dict[str, Any], on: str | None = None) -> list[str]:
    """Every account directly above a customer: its valid customer hierarchy nodes (KNVH) and its
    partner-function parent (`partner_parent`); a block on any of them, or above them, counts."""
    out = hierarchy_parents(customer, on)
    p = partner_parent(customer)
    return [*out, p] if p and p not in out else out


def parent_of(customer: dict[str, Any], on: str | None = None) -> str | None:
    """The account above a customer in the B2B hierarchy: its higher-level node in SAP's customer
    hierarchy (KNVH, valid today) when it is in one; else its partner-function parent."""
    nodes = hierarchy_parents(customer, on)
    return nodes[0] if nodes else partner_parent(customer)


def partner_parent(customer: dict[str, Any]) -> str | None:
    """The account above a customer by its partner functions: its payer (KNVP RG) when another
    customer pays for it; for a ship-to or bill-to party that is only a partner of others, the first
    sold-to that names it; else the group key (KNA1-KONZS) when it names another customer."""
    own = customer["KUNNR"]
    payers = sorted({p["KUNN2"] for p in customer.get("_knvp", []) if p.get("PARVW") == "RG" and p.get("KUNN2")
                     and p["KUNN2"] != own})
    if payers:
        return payers[0]
    if not any(p.get("PARVW") == "AG" for p in customer.get("_knvp", [])):
        users = sorted({p["KUNNR"] for p in customer.get("_used_by", []) if p.get("PARVW") in ("WE", "RE")})
        if users:
            return users[0]
    konzs = str(customer.get("KONZS") or "").strip()
    return konzs if konzs and konzs != own else None


def attach_ancestors(reader: TableReader, customers: dict[str, dict[str, Any]], *, page_size: int = 5000) -> None:
    """`_ancestors` on each customer: every account above it (`parents_of`: customer hierarchy and
    partner functions), nearest first, level by level up to MAX_HIERARCHY_DEPTH levels, each once
    (a cycle stops), each a customer record as `read_customers` returns it; the ones not in
    `customers` are read. The first is its `parent_of`; `hierarchy_path` follows that line."""
    known: dict[str, dict[str, Any]] = dict(customers)
    frontier = {p for c in customers.values() for p in parents_of(c) if p not in known}
    for _ in range(MAX_HIERARCHY_DEPTH):
        if not frontier:
            break
        known.update(read_customers(reader, sorted(frontier), page_size=page_size, spend=False))
        frontier = {p for k in list(known) for p in parents_of(known[k]) if p not in known}
    for c in customers.values():
        chain: list[dict[str, Any]] = []
        seen = {c["KUNNR"]}
        level = parents_of(c)
        for _ in range(MAX_HIERARCHY_DEPTH):
            nxt: list[str] = []
            for k in level:
                if k in seen or k not in known:
                    continue
                seen.add(k)
                anc = known[k]
                chain.append({f: v for f, v in anc.items() if f not in ("_ancestors", "_used_by", "_spend", "_knvk")})
                nxt.extend(parents_of(anc))
            level = nxt
            if not level:
                break
        c["_ancestors"] = chain


def hierarchy_path(customer: dict[str, Any]) -> list[str]:
    """The customer and the accounts above it along `parent_of`, as far as `_ancestors` reaches."""
    by_key = {a["KUNNR"]: a for a in customer.get("_ancestors", [])}
    path = [customer["KUNNR"]]
    nxt = parent_of(customer)
    while nxt and nxt in by_key and nxt not in path:
        path.append(nxt)
        nxt = parent_of(by_key[nxt])
    return path


def idoc_keys(db: Any, mestyps: tuple[str, ...], after_id: int, *,
              limit: int = 5000) -> tuple[list[tuple[int, dict[str, Any]]], int]:
    """IDocs of `mestyps` received and stored by the control plane's IDoc receiver (table mlc_idocs)
    after row id `after_id`: [(row id, parsed IDoc)], and the highest id read."""
    from sqlalchemy import select

    from ml_connector.systems.sap_ecc.idoc_models import IdocRow

    with db.session() as s:
        rows = s.execute(select(IdocRow.id, IdocRow.parsed).where(IdocRow.id > after_id, IdocRow.mestyp.in_(mestyps))
                         .order_by(IdocRow.id).limit(limit)).all()
    return [(int(r[0]), dict(r[1])) for r in rows], max([after_id, *(int(r[0]) for r in rows)])


def newest_idoc(db: Any) -> int:
    """The highest row id of the stored IDocs (0 when none)."""
    from sqlalchemy import func, select

    from ml_connector.systems.sap_ecc.idoc_models import IdocRow

    with db.session() as s:
        return int(s.scalar(select(func.max(IdocRow.id))) or 0)


def segments(parsed: dict[str, Any], name: str) -> list[dict[str, str]]:
    """The fields of every segment called `name`, at any level of a stored IDoc."""
    out: list[dict[str, str]] = []
    stack = list(reversed(parsed.get("segments") or []))
    while stack:
        seg = stack.pop()
        if seg.get("segment") == name:
            out.append(dict(seg.get("fields") or {}))
        stack.extend(reversed(seg.get("children") or []))
    return out


class CustomerStatusSource(_TableSource):
    """Customers' financial status for marketing: KNA1 with KNB1, KNKK, KNVV, KNVP, sales-order
    spend (VBAK) and `_ancestors` (the accounts above them), keyed by KUNNR.

    Full (`sync --full`, the scheduled comparison): KNA1 by key range, `page_size` customers per
    page. Incremental: the customers named by the DEBMAS IDocs that SAP pushed and the control plane
    stored since the last run (cursor `idoc_id`), plus every customer below them in the hierarchy
    (a parent's block changes its children's eligibility): no table scan, only those customers."""

    #: The stored IDocs this source reads: one arriving starts the stream's run (`systems/sap_ecc`).
    IDOC_TYPES = ("DEBMAS",)

    def __init__(self, connection: str, *, page_size: int = 500, spend: bool = True, contacts: bool = False) -> None:
        super().__init__(connection, page_size=page_size)
        self.spend = spend
        self.contacts = contacts

    def begin(self, ctx: RunContext, cursor: dict[str, Any]) -> dict[str, Any]:
        db = ctx.runtime.db
        after = int(cursor.get("idoc_id") or 0)
        if ctx.mode == "full" or not cursor:
            # Start the IDoc cursor at the newest one: this full read covers everything before it.
            newest = newest_idoc(db)
            return {"phase": "full", "after": None, "idoc_id": newest}
        idocs, newest = idoc_keys(db, self.IDOC_TYPES, after)
        ids = sorted({f["KUNNR"] for _, p in idocs for f in segments(p, "E1KNA1M") if f.get("KUNNR")})
        if ids:
            ids = sorted(set(ids) | self._descendants(self.reader(ctx), ids))
        return {"phase": "changes", "ids": ids, "offset": 0, "idoc_id": newest}

    def _descendants(self, reader: TableReader, kunnrs: list[str]) -> set[str]:
        found: set[str] = set()
        frontier = list(kunnrs)
        for _ in range(MAX_HIERARCHY_DEPTH):
            nxt: set[str] = set()
            for i in range(0, len(frontier), CHUNK_IDS):
                for r in read_all(reader, "KNVP", ["KUNNR", "PARVW", "KUNN2"], KNVP_KEY,
                                  in_list("KUNN2", frontier[i:i + CHUNK_IDS]) + " AND " +
                                  in_list("PARVW", ["RG", "WE", "RE"]), self.page_size):
                    for k in (r["KUNNR"],):
                        if k not in found and k not in kunnrs:
                            nxt.add(k)
                # nodes below them in SAP's customer hierarchy (any validity: a cheap superset)
                for r in read_all(reader, "KNVH", ["HITYP", "KUNNR", "HKUNNR"], KNVH_KEY,
                                  in_list("HKUNNR", frontier[i:i + CHUNK_IDS]), self.page_size):
                    if r["KUNNR"] not in found and r["KUNNR"] not in kunnrs:
                        nxt.add(r["KUNNR"])
                # ship-to / bill-to parties below a sold-to: the partners the sold-to names
                for r in read_all(reader, "KNVP", ["KUNNR", "PARVW", "KUNN2"], KNVP_KEY,
                                  in_list("KUNNR", frontier[i:i + CHUNK_IDS]) + " AND " +
                                  in_list("PARVW", ["WE", "RE"]), self.page_size):
                    if r["KUNN2"] and r["KUNN2"] not in found and r["KUNN2"] not in kunnrs:
                        nxt.add(r["KUNN2"])
            found |= nxt
            frontier = sorted(nxt)
            if not frontier:
                break
        return found

    def read_page(self, ctx: RunContext, state: dict[str, Any]) -> Page:
        reader = self.reader(ctx)
        if state["phase"] == "full":
            where = f"KUNNR > {quote(state['after'])}" if state["after"] else None
            page = next(iter(reader.read("KNA1", ["KUNNR"], key_fields=["KUNNR"], where=where,
                                         page_size=self.page_size)), None)
            ids = [r["KUNNR"] for r in page.rows] if page is not None else []
            done = len(ids) < self.page_size
            customers = read_customers(reader, ids, page_size=5000, spend=self.spend,
                                       contacts=self.contacts) if ids else {}
            attach_ancestors(reader, customers)
            return Page(sorted(customers.items()), dict(state, after=max(ids) if ids else state["after"]), done)
        ids = state["ids"][state["offset"]:state["offset"] + self.page_size]
        customers = read_customers(reader, ids, page_size=5000, spend=self.spend,
                                       contacts=self.contacts) if ids else {}
        attach_ancestors(reader, customers)
        off = state["offset"] + len(ids)
        return Page(sorted(customers.items()), dict(state, offset=off), off >= len(state["ids"]),
                    estimate_total=len(state["ids"]))

    def finish(self, ctx: RunContext, state: dict[str, Any]) -> dict[str, Any]:
        return {"idoc_id": state.get("idoc_id", 0)}


class SalesDocumentIdocSource(Source):
    """Sales orders (ORDERS / ORDRSP with a sold-to party E1EDKA1 AG) and deliveries (DESADV,
    basic type DELVRY) from the IDocs SAP pushed and the control plane stored, after the kept row
    id. Key: `ORDER:<VBELN>` / `DELIVERY:<VBELN>` (a changed document updates its record; an IDoc
    stored twice is one record). Purchase orders (ORDERS to a vendor, E1EDKA1 LF) are not customer
    orders and are skipped. No SAP call: the IDoc carries the document."""

    MESTYPS = ("ORDERS", "ORDRSP", "DESADV", "DELVRY")
    IDOC_TYPES = MESTYPS  # one arriving starts the stream's run (`systems/sap_ecc`)

    def __init__(self, *, page_size: int = 500) -> None:
        self.page_size = page_size

    def begin(self, ctx: RunContext, cursor: dict[str, Any]) -> dict[str, Any]:
        return {"after": 0 if ctx.mode == "full" else int(cursor.get("idoc_id") or 0)}

    def read_page(self, ctx: RunContext, state: dict[str, Any]) -> Page:
        idocs, newest = idoc_keys(ctx.runtime.db, self.MESTYPS, int(state["after"]), limit=self.page_size)
        records: dict[str, dict[str, Any]] = {}
        for row_id, parsed in idocs:
            rec = sales_document(parsed)
            if rec is not None:
                rec["_idoc_row"] = row_id
                records[rec["_key"]] = rec  # the newest IDoc of a document wins
        return Page(sorted(records.items()), {"after": newest}, len(idocs) < self.page_size)

    def finish(self, ctx: RunContext, state: dict[str, Any]) -> dict[str, Any]:
        return {"idoc_id": state.get("after", 0)}


def sales_document(parsed: dict[str, Any]) -> dict[str, Any] | None:
    """The document of a stored ORDERS/ORDRSP/DESADV IDoc as a flat record, or None when it is not
    a customer document (a purchase order) or names no document number."""
    control = parsed.get("control") or {}
    mestyp = str(control.get("MESTYP", ""))
    if mestyp in ("DESADV", "DELVRY"):
        head = next(iter(segments(parsed, "E1EDL20")), None)
        if head is None or not head.get("VBELN"):
            return None
        partner = next((p.get("PARTNER_ID", "") for p in segments(parsed, "E1ADRM1")
                        if p.get("PARTNER_Q") in ("AG", "WE")), "")
        date_ = next((d.get("NTANF", "") for d in segments(parsed, "E1EDT13") if d.get("QUALF") == "006"), "")
        items = segments(parsed, "E1EDL24")
        return {"_key": f"DELIVERY:{head['VBELN']}", "kind": "DELIVERY", "number": head["VBELN"],
                "customer": partner, "date": date_, "amount": "", "currency": "", "items": len(items),
                "docnum": control.get("DOCNUM", ""), "mestyp": mestyp}
    k01 = next(iter(segments(parsed, "E1EDK01")), None)
    if k01 is None or not k01.get("BELNR"):
        return None
    partners = {p.get("PARVW", ""): p.get("PARTN", "") for p in segments(parsed, "E1EDKA1")}
    if "AG" not in partners:
        return None  # a purchase order to a vendor (LF), not a customer's order
    total = next((s for s in segments(parsed, "E1EDS01") if s.get("SUMID") == "002"), {})
    date_ = next((d.get("DATUM", "") for d in segments(parsed, "E1EDK03") if d.get("IDDAT") == "012"), "")
    return {"_key": f"ORDER:{k01['BELNR']}", "kind": "ORDER", "number": k01["BELNR"], "customer": partners["AG"],
            "date": date_, "amount": total.get("SUMME", ""), "currency": total.get("SUNIT", k01.get("CURCY", "")),
            "items": len(segments(parsed, "E1EDP01")), "docnum": control.get("DOCNUM", ""), "mestyp": mestyp}


# ------------------------------------------------------------------ purchasing and FI line items

EKKO_FIELDS = ["EBELN", "BUKRS", "BSTYP", "BSART", "LOEKZ", "AEDAT", "LIFNR", "ZTERM", "EKORG", "WAERS", "BEDAT",
               "FRGKE"]
EKPO_FIELDS = ["EBELN", "EBELP", "LOEKZ", "TXZ01", "MATNR", "MATKL", "WERKS", "MENGE", "MEINS", "NETPR", "PEINH",
               "NETWR", "KNTTP", "VRTKZ"]
# VPROZ (DEC3,1) is left out: RFC_READ_TABLE cannot render "100.0" in 3 characters; MENGE and NETWR carry the split.
EKKN_FIELDS = ["EBELN", "EBELP", "ZEKKN", "SAKTO", "KOSTL", "PS_PSP_PNR", "AUFNR", "MENGE", "NETWR"]
BKPF_FIELDS = ["BUKRS", "BELNR", "GJAHR", "BLART", "BLDAT", "BUDAT", "BKTXT", "WAERS", "XBLNR", "STBLG", "STJAH",
               "XREVERSAL", "TCODE"]
BSEG_FIELDS = ["BUKRS", "BELNR", "GJAHR", "BUZEI", "KOART", "SHKZG", "DMBTR", "WRBTR", "HKONT", "KOSTL", "SGTXT"]


def _chunks(values: list[str], size: int = CHUNK_IDS) -> Iterator[list[str]]:
    for i in range(0, len(values), size):
        yield values[i:i + size]


class PurchaseOrderSource(_TableSource):
    """Purchase orders (EKKO, standard POs BSTYP F) of `company_codes` dated on or after
    `date_from` (EKKO-BEDAT, DATS), with `_items` (EKPO rows, each with `_accounts`: its EKKN rows).
    Every run reads the set again by EBELN key ranges (page = `page_size` POs); the ledger's content
    hashes leave only new and changed POs. State: {"after": last EBELN read}."""

    def __init__(self, connection: str, *, company_codes: list[str], date_from: str = "00000000",
                 page_size: int = 200) -> None:
        super().__init__(connection, page_size=page_size)
        self.company_codes = company_codes
        self.date_from = date_from

    def begin(self, ctx: RunContext, cursor: dict[str, Any]) -> dict[str, Any]:
        return {"after": None}

    def read_page(self, ctx: RunContext, state: dict[str, Any]) -> Page:
        reader = self.reader(ctx)
        where = (f"{in_list('BUKRS', self.company_codes)} AND BSTYP = 'F' AND BEDAT >= {quote(self.date_from)}")
        after = state.get("after")
        page = next(iter(reader.read("EKKO", EKKO_FIELDS, key_fields=["EBELN"], where=where,
                                     page_size=self.page_size, after=[after] if after else None)), None)
        if page is None or not page.rows:
            return Page([], state, True)
        heads: dict[str, dict[str, Any]] = {r["EBELN"]: {k: str(v).strip() for k, v in r.items()}
                                            for r in page.rows}
        ids = sorted(heads)
        items: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in ids}
        for chunk in _chunks(ids):
            for r in read_all(reader, "EKPO", EKPO_FIELDS, ["EBELN", "EBELP"], in_list("EBELN", chunk),
                              self.page_size * 10):
                if r["EBELN"] in items:
                    items[r["EBELN"]][r["EBELP"]] = {**r, "_accounts": []}
            for r in read_all(reader, "EKKN", EKKN_FIELDS, ["EBELN", "EBELP", "ZEKKN"], in_list("EBELN", chunk),
                              self.page_size * 10):
                item = items.get(r["EBELN"], {}).get(r["EBELP"])
                if item is not None:
                    item["_accounts"].append(r)
        records = []
        for k in ids:
            lines = [items[k][p] for p in sorted(items[k])]
            for it in lines:
                it["_accounts"].sort(key=lambda a: a["ZEKKN"])
            records.append((k, {**heads[k], "_items": lines}))
        last = page.last_key[0] if page.last_key else ids[-1]
        return Page(records, {"after": last}, len(page.rows) < self.page_size)

    def finish(self, ctx: RunContext, state: dict[str, Any]) -> dict[str, Any]:
        return {}


class CostLineSource(_TableSource):
    """FI line items on cost centers, grouped per document and cost center: one record per
    (BUKRS, GJAHR, BELNR, KOSTL), key `BUKRS/GJAHR/BELNR/KOSTL`, with the BKPF header fields and
    `_lines` (the document's BSEG rows on that cost center). Documents of `company_codes` posted on or
    after `date_from` (BKPF-BUDAT); `cost_centers` (internal format) limits the cost centers read
    (None: every cost center). A reversal (FB08) is a document of its own, read like any other.
    Every run reads the window again; the ledger keeps what was already sent."""

    def __init__(self, connection: str, *, company_codes: list[str], date_from: str = "00000000",
                 cost_centers: list[str] | None = None, page_size: int = 200) -> None:
        super().__init__(connection, page_size=page_size)
        self.company_codes = company_codes
        self.date_from = date_from
        self.cost_centers = cost_centers

    def begin(self, ctx: RunContext, cursor: dict[str, Any]) -> dict[str, Any]:
        return {"after": None}

    def read_page(self, ctx: RunContext, state: dict[str, Any]) -> Page:
        reader = self.reader(ctx)
        where = f"{in_list('BUKRS', self.company_codes)} AND BUDAT >= {quote(self.date_from)}"
        after = state.get("after")
        page = next(iter(reader.read("BKPF", BKPF_FIELDS, key_fields=["BUKRS", "BELNR", "GJAHR"], where=where,
                                     page_size=self.page_size, after=list(after) if after else None)), None)
        if page is None or not page.rows:
            return Page([], state, True)
        docs = {(r["BUKRS"], r["BELNR"], r["GJAHR"]): {k: str(v).strip() for k, v in r.items()} for r in page.rows}
        groups: dict[tuple[str, str, str, str], list[dict[str, str]]] = {}
        for bukrs in sorted({k[0] for k in docs}):
            belnrs = sorted({k[1] for k in docs if k[0] == bukrs})
            for chunk in _chunks(belnrs):
                cond = f"BUKRS = {quote(bukrs)} AND {in_list('BELNR', chunk)}"
                if self.cost_centers:
                    cond += " AND " + in_list("KOSTL", self.cost_centers)
                for r in read_all(reader, "BSEG", BSEG_FIELDS, ["BUKRS", "BELNR", "GJAHR", "BUZEI"], cond,
                                  self.page_size * 10):
                    if r.get("KOSTL") and (r["BUKRS"], r["BELNR"], r["GJAHR"]) in docs:
                        groups.setdefault((r["BUKRS"], r["GJAHR"], r["BELNR"], r["KOSTL"]), []).append(r)
        records = []
        for gkey in sorted(groups):
            bukrs, gjahr, belnr, kostl = gkey
            lines: list[dict[str, str]] = sorted(groups[gkey], key=lambda x: x["BUZEI"])
            records.append((f"{bukrs}/{gjahr}/{belnr}/{kostl}",
                            {**docs[(bukrs, belnr, gjahr)], "KOSTL": kostl, "_lines": lines}))
        last = list(page.last_key) if page.last_key else None
        return Page(records, {"after": last}, len(page.rows) < self.page_size)

    def finish(self, ctx: RunContext, state: dict[str, Any]) -> dict[str, Any]:
        return {}


class DepartmentSource(_SnapshotSource):
    """Departments: the distinct CSKS-ABTEI values ("Department", free text on the cost center master)
    of the cost centers of the company codes valid today and not locked, keyed by ABTEI, with
    `_cost_centers` (their KOSTLs) and `_company_codes`. SAP ECC has no department master of its own."""

    def __init__(self, connection: str, *, company_codes: list[str], controlling_areas: list[str],
                 page_size: int = 5000, today: Callable[[], date] = lambda: datetime.now(UTC).date()) -> None:
        super().__init__(connection, page_size=page_size)
        self.company_codes = company_codes
        self.controlling_areas = controlling_areas
        self.today = today

    def read_all(self, ctx: RunContext) -> list[tuple[str, dict[str, Any]]]:
        today = self.today().strftime("%Y%m%d")
        rows = read_all(self.reader(ctx), "CSKS", ["KOKRS", "KOSTL", "DATBI", "DATAB", "BKZKP", "BUKRS", "ABTEI"],
                        ["KOKRS", "KOSTL", "DATBI"], in_list("KOKRS", self.controlling_areas) + " AND "
                        + in_list("BUKRS", self.company_codes), self.page_size)
        out: dict[str, dict[str, Any]] = {}
        for r in rows:
            dept = str(r.get("ABTEI") or "").strip()
            if not dept or not r.get("DATAB", "00000000") <= today <= r["DATBI"] or r.get("BKZKP") == "X":
                continue
            rec = out.setdefault(dept, {"ABTEI": dept, "_cost_centers": [], "_company_codes": []})
            rec["_cost_centers"] = sorted({*rec["_cost_centers"], r["KOSTL"]})
            rec["_company_codes"] = sorted({*rec["_company_codes"], r["BUKRS"]})
        return sorted(out.items())


class CompanyCodeSource(_SnapshotSource):
    """The configured company codes (T001: BUKRS, BUTXT, ORT01, LAND1, WAERS), keyed by BUKRS."""

    def __init__(self, connection: str, *, company_codes: list[str], page_size: int = 5000) -> None:
        super().__init__(connection, page_size=page_size)
        self.company_codes = company_codes

    def read_all(self, ctx: RunContext) -> list[tuple[str, dict[str, Any]]]:
        rows = read_all(self.reader(ctx), "T001", ["BUKRS", "BUTXT", "ORT01", "LAND1", "WAERS"], ["BUKRS"],
                        in_list("BUKRS", self.company_codes), self.page_size)
        return sorted((r["BUKRS"], r) for r in rows)


class PlantSource(_SnapshotSource):
    """Plants of the configured company codes: T001W (WERKS, NAME1, ORT01, LAND1) with `BUKRS` from
    T001K (valuation area = plant), keyed by WERKS."""

    def __init__(self, connection: str, *, company_codes: list[str], page_size: int = 5000) -> None:
        super().__init__(connection, page_size=page_size)
        self.company_codes = company_codes

    def read_all(self, ctx: RunContext) -> list[tuple[str, dict[str, Any]]]:
        reader = self.reader(ctx)
        areas = {r["BWKEY"]: r["BUKRS"] for r in read_all(reader, "T001K", ["BWKEY", "BUKRS"], ["BWKEY"],
                                                          in_list("BUKRS", self.company_codes), self.page_size)}
        if not areas:
            return []
        plants = read_all(reader, "T001W", ["WERKS", "NAME1", "BWKEY", "ORT01", "LAND1"], ["WERKS"],
                          in_list("BWKEY", sorted(areas)), self.page_size)
        return sorted((r["WERKS"], {**r, "BUKRS": areas.get(r["BWKEY"], "")}) for r in plants)
