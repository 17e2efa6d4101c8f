"""Does SAP know this master record? Company codes, vendors, G/L accounts and cost centers, checked
before a document is posted against them (RFC_READ_TABLE by key, one small read per record).

`MasterDataCheck.missing(...)` answers with the keys SAP lacks, in the order a person would fix
them (company code, vendor, G/L accounts, cost centers), each as `<kind>:<key>` (the key a parked
record waits for, e.g. `cost_center:1000/0000009999`). Answers are cached for the life of the
check object: a flow builds one per run, so a record created in SAP is seen by the next run.
"""

from __future__ import annotations

from typing import Any

from ml_connector.systems.sap_ecc.client import RfcCaller
from ml_connector.systems.sap_ecc.table_reader import TableReader, quote

#: kind -> (table, key fields, predicate on the row that makes it postable)
KINDS = ("company_code", "vendor", "gl_account", "cost_center")


def wait_key(kind: str, key: str) -> str:
    return f"{kind}:{key}"


class MasterDataCheck:
    def __init__(self, caller: RfcCaller, *, reader: TableReader | None = None) -> None:
        self.reader = reader or TableReader.probed(caller)
        self._known: dict[tuple[str, str], bool] = {}
        self._periods: dict[str, list[tuple[tuple[int, int], tuple[int, int]]]] = {}
        self.reads = 0

    def _rows(self, table: str, fields: list[str], keys: list[str], where: str) -> list[dict[str, Any]]:
        self.reads += 1
        return [r for page in self.reader.read(table, fields, key_fields=keys, where=where, page_size=50)
                for r in page.rows]

    def _exists(self, kind: str, key: str, on: str) -> bool:
        cached = self._known.get((kind, key))
        if cached is not None:
            return cached
        if kind == "company_code":
            ok = bool(self._rows("T001", ["BUKRS"], ["BUKRS"], f"BUKRS = {quote(key)}"))
        elif kind == "vendor":
            bukrs, lifnr = key.split("/", 1)
            rows = self._rows("LFB1", ["BUKRS", "LIFNR", "LOEVM"], ["LIFNR", "BUKRS"],
                              f"LIFNR = {quote(lifnr)} AND BUKRS = {quote(bukrs)}")
            ok = any(r.get("LOEVM", "").strip() != "X" for r in rows)
        elif kind == "gl_account":
            bukrs, saknr = key.split("/", 1)
            rows = self._rows("SKB1", ["BUKRS", "SAKNR", "XSPEB", "XLOEB"], ["BUKRS", "SAKNR"],
                              f"BUKRS = {quote(bukrs)} AND SAKNR = {quote(saknr)}")
            ok = any(r.get("XSPEB", "").strip() != "X" and r.get("XLOEB", "").strip() != "X" for r in rows)
        elif kind == "cost_center":
            bukrs, kostl = key.split("/", 1)
            rows = self._rows("CSKS", ["KOKRS", "KOSTL", "DATBI", "DATAB", "BKZKP", "BUKRS"],
                              ["KOKRS", "KOSTL", "DATBI"], f"KOSTL = {quote(kostl)} AND BUKRS = {quote(bukrs)}")
            ok = any(r.get("DATAB", "00000000") <= on <= r.get("DATBI", "99991231")
                     and r.get("BKZKP", "").strip() != "X" for r in rows)
        else:
            raise ValueError(f"unknown master data kind {kind!r} (one of {', '.join(KINDS)})")
        self._known[(kind, key)] = ok
        return ok

    def missing(self, company_code: str, *, vendor: str = "", gl_accounts: list[str] | tuple[str, ...] = (),
                cost_centers: list[str] | tuple[str, ...] = (), on: str = "") -> list[str]:
        """The wait keys of what SAP lacks for a posting in `company_code` on `on` (YYYYMMDD; a cost
        center must be valid that day and not locked; an account not blocked or flagged for deletion
        in the company code; the vendor defined in it)."""
        if not self._exists("company_code", company_code, on):
            return [wait_key("company_code", company_code)]
        wanted = ([("vendor", f"{company_code}/{vendor}")] if vendor else []) + \
            [("gl_account", f"{company_code}/{g}") for g in dict.fromkeys(gl_accounts) if g] + \
            [("cost_center", f"{company_code}/{c}") for c in dict.fromkeys(cost_centers) if c]
        return [wait_key(k, key) for k, key in wanted if not self._exists(k, key, on)]


    # -- posting periods (T001-OPVAR, T001B '+' row; periods = calendar months, variant K4) -----

    def _open_intervals(self, bukrs: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        cached = self._periods.get(bukrs)
        if cached is not None:
            return cached
        t001 = self._rows("T001", ["BUKRS", "OPVAR"], ["BUKRS"], f"BUKRS = {quote(bukrs)}")
        var = (t001[0].get("OPVAR") or "").strip() if t001 else ""
        rows = self._rows("T001B", ["RRCTY", "BUKVS", "MKOAR", "BKONT", "FRYE1", "FRPE1", "TOYE1", "TOPE1",
                                    "FRYE2", "FRPE2", "TOYE2", "TOPE2"], ["RRCTY", "BUKVS", "MKOAR", "BKONT"],
                          f"BUKVS = {quote(var or bukrs)} AND MKOAR = '+'")
        out = []
        for r in rows:
            for a, b, c, d in (("FRYE1", "FRPE1", "TOYE1", "TOPE1"), ("FRYE2", "FRPE2", "TOYE2", "TOPE2")):
                lo_y = int(str(r.get(a) or "0").strip() or 0)
                if lo_y:
                    out.append(((lo_y, int(str(r.get(b) or "0").strip() or 0)),
                                (int(str(r.get(c) or "0").strip() or 0), int(str(r.get(d) or "0").strip() or 0))))
        self._periods[bukrs] = out
        return out

    def period_open(self, bukrs: str, on: str) -> bool:
        """Is the posting period of `on` (YYYYMMDD) open in `bukrs`?"""
        want = (int(on[:4]), int(on[4:6]))
        return any(lo <= want <= hi for lo, hi in self._open_intervals(bukrs))

    def next_open(self, bukrs: str, on: str) -> str | None:
        """The first day (YYYYMMDD) of the first open period after `on`'s period, or None."""
        want = (int(on[:4]), int(on[4:6]))
        starts = []
        for lo, hi in self._open_intervals(bukrs):
            start = max(lo, want)
            if start <= hi:
                y, m = start
                if m > 12:  # special periods 13-16 take no normal posting date: the next year
                    y, m = y + 1, 1
                starts.append((y, max(m, 1)))
        return f"{min(starts)[0]:04d}{min(starts)[1]:02d}01" if starts else None
