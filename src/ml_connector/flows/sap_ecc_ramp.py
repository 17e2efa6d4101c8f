"""SAP ECC ↔ Ramp. Stream `vendors`: LFA1/LFB1 → Ramp accounting vendors.

- Full load: LFA1 by key range, joined with LFB1 of the configured company codes.
- Incremental: the vendor change documents (CDHDR, object class KRED) since the
  last run's watermark, minus an overlap window, name the vendors to re-read;
  the ledger's content hashes drop the ones that did not really change.
- Upsert by external id (the SAP vendor number, internal format); a deletion
  flag in SAP (LFA1-LOEVM, or LFB1-LOEVM in every configured company code)
  deactivates the vendor in Ramp; clearing it reactivates the vendor.
- Ramp's chart-of-accounts uploads are all-or-nothing and not idempotent, so
  every create is preceded, on any doubt, by a lookup by remote id.

Stream `gl_accounts`: SKA1 + SKAT + SKB1 of the configured company codes' chart
(T001-KTOPL) → Ramp GL accounts. Stream `cost_centers`: CSKS valid today + CSKT
→ the options of the Ramp accounting field "Cost Center" (id SAP_COST_CENTER).
Stream `bills` (Ramp → SAP): approved bills (`sync_ready=true`) → FI vendor
invoices (BLART KR) posted exactly once through `DocumentPoster`, then reported
with `POST /accounting/syncs`. See docs/sap-ecc-ramp.md for the rules.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from ml_connector.core import outbox
from ml_connector.core.flow import Flow, Outcome, Page, RunContext, Stream
from ml_connector.core.ledger import Change, Desired, Parked
from ml_connector.core.outbox import Entry

log = logging.getLogger(__name__)

LFA1_FIELDS = ["LIFNR", "NAME1", "NAME2", "LAND1", "ORT01", "KTOKK", "LOEVM", "SPERR", "STCD1", "ERDAT"]
LFB1_FIELDS = ["LIFNR", "BUKRS", "LOEVM", "SPERR", "ZTERM", "AKONT"]
CHUNK_IDS = 400  # vendor ids per IN-list query (keeps OPTIONS at a few dozen lines)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _in_list(field: str, values: list[str]) -> str:
    return f"{field} IN ( " + " , ".join(_quote(v) for v in values) + " )"


class VendorStream(Stream):
    name = "vendors"

    def __init__(self, flow: SapEccRampFlow) -> None:
        self.flow = flow
        self.target_connection = flow.cfg.target
        opts = dict(getattr(flow.cfg, "options", {}) or {})
        self.company_codes: list[str] = [str(c) for c in opts.get("company_codes", ["1000"])]
        self.page_size = int(opts.get("page_size", 5000))
        self.overlap = float(opts.get("overlap_seconds", 3600))
        self.deactivate_blocked = bool(opts.get("deactivate_blocked", False))
        self._gens: dict[str, tuple[str, Any, Any]] = {}
        # Ramp's published upload item is {id, name}; `code` is sent too (the SAP number
        # without leading zeros) until a Ramp answers that it does not know the field.
        self.send_code_on_upload = bool(opts.get("vendor_code_on_upload", True))

    # -- reading -------------------------------------------------------------

    def _reader(self, ctx: RunContext) -> Any:
        from ml_connector.systems.sap_ecc.table_reader import TableReader

        return TableReader.probed(ctx.runtime.connection(self.flow.cfg.source))

    def _sap_now(self, ctx: RunContext) -> dict[str, str]:
        """SAP's local time (change documents are stamped in it): UTC + RFCSI's RFCTZONE."""
        caller = ctx.runtime.connection(self.flow.cfg.source)
        info = caller.call("RFC_SYSTEM_INFO", {}).get("RFCSI_EXPORT", {})
        try:
            offset = int(str(info.get("RFCTZONE", "0")).strip() or 0)
        except ValueError:
            offset = 0
        now = datetime.now(UTC) + timedelta(seconds=offset)
        return {"date": now.strftime("%Y%m%d"), "time": now.strftime("%H%M%S")}

    def begin(self, ctx: RunContext, cursor: dict[str, Any]) -> dict[str, Any]:
        started = self._sap_now(ctx)
        wm = cursor.get("watermark")
        if ctx.mode == "full" or not wm:
            return {"phase": "full", "after": None, "started": started}
        since = datetime.strptime(wm["date"] + wm["time"], "%Y%m%d%H%M%S") - timedelta(seconds=self.overlap)
        ids = self._changed_vendors(ctx, since.strftime("%Y%m%d"), since.strftime("%H%M%S"))
        return {"phase": "changes", "ids": ids, "offset": 0, "started": started}

    def _changed_vendors(self, ctx: RunContext, date: str, tm: str) -> list[str]:
        where = (f"OBJECTCLAS = 'KRED' AND ( UDATE > {_quote(date)} OR "
                 f"( UDATE = {_quote(date)} AND UTIME >= {_quote(tm)} ) )")
        ids: set[str] = set()
        for page in self._reader(ctx).read("CDHDR", ["OBJECTCLAS", "OBJECTID", "CHANGENR", "UDATE", "UTIME"],
                                           key_fields=["OBJECTCLAS", "OBJECTID", "CHANGENR"], where=where,
                                           page_size=self.page_size):
            ids.update(r["OBJECTID"].strip() for r in page.rows)
        return sorted(i for i in ids if i)

    def read_page(self, ctx: RunContext, state: dict[str, Any]) -> Page:
        reader = self._reader(ctx)
        if state["phase"] == "full":
            page, done = self._next_lfa1_page(ctx, reader, state["after"])
            rows = page.rows if page is not None else []
            vendors = {r["LIFNR"]: r for r in rows}
            after = page.last_key[0] if page is not None and page.last_key else state["after"]
            if vendors:
                lo, hi = min(vendors), max(vendors)
                where = (f"LIFNR >= {_quote(lo)} AND LIFNR <= {_quote(hi)} AND "
                         + _in_list("BUKRS", self.company_codes))
                self._attach_company_codes(reader, vendors, where)
            return Page(self._records(vendors), dict(state, after=after), done)
        ids: list[str] = state["ids"]
        off = int(state["offset"])
        take = ids[off:off + self.page_size]
        vendors = {}
        for i in range(0, len(take), CHUNK_IDS):
            chunk = take[i:i + CHUNK_IDS]
            for p in reader.read("LFA1", LFA1_FIELDS, key_fields=["LIFNR"], where=_in_list("LIFNR", chunk),
                                 page_size=self.page_size):
                vendors.update({r["LIFNR"]: r for r in p.rows})
        for i in range(0, len(take), CHUNK_IDS):
            chunk = [v for v in take[i:i + CHUNK_IDS] if v in vendors]
            if chunk:
                self._attach_company_codes(reader, vendors, _in_list("LIFNR", chunk) + " AND "
                                           + _in_list("BUKRS", self.company_codes))
        new_off = off + len(take)
        return Page(self._records(vendors), dict(state, offset=new_off), new_off >= len(ids),
                    estimate_total=len(ids))

    def _next_lfa1_page(self, ctx: RunContext, reader: Any, after: str | None) -> tuple[Any, bool]:
        """The next LFA1 page after `after`, and whether it is the last one.

        The reader is a generator; within one process it is kept between steps
        together with a one-page lookahead (which tells whether this page is the
        last). After a restart a new generator resumes from the committed key.
        """
        cached = self._gens.get(ctx.run_id)
        if cached is None or cached[0] != after:
            gen = reader.read("LFA1", LFA1_FIELDS, key_fields=["LIFNR"], page_size=self.page_size,
                              after=[after] if after else None)
            page = next(gen, None)
        else:
            _, gen, page = cached
        if page is None:
            self._gens.pop(ctx.run_id, None)
            return None, True
        lookahead = next(gen, None)
        if lookahead is None:
            self._gens.pop(ctx.run_id, None)
            return page, True
        self._gens[ctx.run_id] = (page.last_key[0], gen, lookahead)
        return page, False

    def _attach_company_codes(self, reader: Any, vendors: dict[str, dict[str, Any]], where: str) -> None:
        for p in reader.read("LFB1", LFB1_FIELDS, key_fields=["LIFNR", "BUKRS"], where=where,
                             page_size=self.page_size * 4):
            for r in p.rows:
                v = vendors.get(r["LIFNR"])
                if v is not None:
                    v.setdefault("_company_codes", {})[r["BUKRS"]] = r

    def _records(self, vendors: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
        # Vendors not created in any configured company code are out of scope.
        return [(k, v) for k, v in sorted(vendors.items()) if v.get("_company_codes")]

    def finish(self, ctx: RunContext, state: dict[str, Any]) -> dict[str, Any]:
        return {"watermark": state.get("started")}

    # -- mapping -------------------------------------------------------------

    def map(self, ctx: RunContext, key: str, record: dict[str, Any]) -> Desired | Parked:
        name = " ".join(p for p in (record.get("NAME1", "").strip(), record.get("NAME2", "").strip()) if p)
        ccs = record.get("_company_codes", {})
        deleted = record.get("LOEVM", "").strip() == "X" or (
            bool(ccs) and all(c.get("LOEVM", "").strip() == "X" for c in ccs.values()))
        blocked = record.get("SPERR", "").strip() == "X"
        active = not deleted and not (blocked and self.deactivate_blocked)
        payload = {"id": key, "name": name or key, "code": key.lstrip("0") or key}
        return Desired(key, payload, active=active)

    def describe_change(self, op: str, payload: dict[str, Any]) -> str:
        return f"{op} Ramp accounting vendor id={payload['id']} name={payload['name']!r} code={payload['code']}"

    # -- delivery ------------------------------------------------------------

    def deliver(self, ctx: RunContext, entries: list[Entry], report: Callable[[list[Outcome]], None]) -> None:
        from ml_connector.systems.ramp.client import RampApiError, RampUncertainWrite

        ramp = ctx.runtime.connection(self.target_connection)
        db = ctx.runtime.db
        pending: list[Entry] = []
        # 1. Entries a crash or a timeout left in doubt: look them up first.
        for e in entries:
            if e.state in ("in_flight", "uncertain") and e.op == "create":
                found = ramp.get_accounting_vendor_by_remote_id(e.payload["id"])
                if found is not None:
                    report([Outcome(e.id, "posted", target_id=found["ramp_id"], response=found)])
                    continue
            pending.append(e)
        creates = [e for e in pending if e.op == "create"]
        others = [e for e in pending if e.op != "create"]
        batch_max = 500
        for i in range(0, len(creates), batch_max):
            self._create_batch(ramp, db, creates[i:i + batch_max], report, RampApiError, RampUncertainWrite)
        # Updates are idempotent (PATCH/DELETE of a known id): mark them in flight in
        # one transaction, report in chunks.
        outbox.begin_attempt(db, [e.id for e in others])
        done: list[Outcome] = []
        for e in others:
            if len(done) >= 50:
                report(done)
                done = []
            try:
                target = e.target_id
                if not target:
                    found = ramp.get_accounting_vendor_by_remote_id(e.payload["id"])
                    target = found["ramp_id"] if found else None
                if not target:
                    done.append(Outcome(e.id, "failed", error=f"vendor {e.payload['id']} is not in Ramp to {e.op}"))
                    continue
                if e.op == "deactivate":
                    ramp.deactivate_accounting_vendor(target)
                    resp: Any = {"ramp_id": target, "is_active": False}
                elif e.op == "reactivate":
                    resp = ramp.update_accounting_vendor(target, name=e.payload["name"], code=e.payload["code"],
                                                         reactivate=True)
                else:
                    resp = ramp.update_accounting_vendor(target, name=e.payload["name"], code=e.payload["code"])
                done.append(Outcome(e.id, "posted", target_id=target, request=e.payload, response=resp))
            except RampApiError as exc:
                done.append(Outcome(e.id, "failed", error=str(exc), request=e.payload))
        if done:
            report(done)

    def _create_batch(self, ramp: Any, db: Any, batch: list[Entry], report: Callable[[list[Outcome]], None],
                      api_error: type[Exception], uncertain: type[Exception], depth: int = 0) -> None:
        if not batch:
            return
        outbox.begin_attempt(db, [e.id for e in batch])
        items = [self._upload_item(e.payload) for e in batch]
        try:
            resp = ramp.create_accounting_vendors(items)
        except uncertain:
            # The upload may or may not have happened: ask Ramp, never re-POST blindly.
            self._resolve_by_lookup(ramp, db, batch, report, api_error, uncertain, depth)
            return
        except api_error as exc:
            status = getattr(exc, "status", 0)
            if status >= 500 or status == 429:
                raise
            if self.send_code_on_upload and refuses_field(getattr(exc, "additional_info", None), "vendors", "code"):
                # Nothing was applied (the upload is all or nothing): upload {id, name} from now on.
                # Updates still set the code (PATCH documents it).
                self.send_code_on_upload = False
                log.warning("Ramp refused the field `code` in a vendor upload: uploading vendors as "
                            "{id, name} from now on")
                self._create_batch(ramp, db, batch, report, api_error, uncertain, depth)
                return
            # All-or-nothing upload rejected: adopt vendors that already exist,
            # split the rest until the offending records are isolated.
            if len(batch) == 1:
                found = ramp.get_accounting_vendor_by_remote_id(batch[0].payload["id"])
                if found is not None:
                    report([Outcome(batch[0].id, "posted", target_id=found["ramp_id"], response=found)])
                else:
                    report([Outcome(batch[0].id, "failed", error=str(exc), request=items[0])])
                return
            mid = len(batch) // 2
            self._create_batch(ramp, db, batch[:mid], report, api_error, uncertain, depth)
            self._create_batch(ramp, db, batch[mid:], report, api_error, uncertain, depth)
            return
        by_id = {v["id"]: v for v in resp.get("vendors", [])}
        outs = []
        for e, item in zip(batch, items, strict=True):
            v = by_id.get(e.payload["id"])
            if v is None:
                outs.append(Outcome(e.id, "uncertain", error="Ramp's answer did not list this vendor"))
            else:
                outs.append(Outcome(e.id, "posted", target_id=v["ramp_id"], request=item, response=v))
        report(outs)

    def _upload_item(self, payload: dict[str, Any]) -> dict[str, Any]:
        item = {"id": payload["id"], "name": payload["name"]}
        if self.send_code_on_upload:
            item["code"] = payload["code"]
        return item

    def _resolve_by_lookup(self, ramp: Any, db: Any, batch: list[Entry], report: Callable[[list[Outcome]], None],
                           api_error: type[Exception], uncertain: type[Exception], depth: int) -> None:
        missing = []
        outs = []
        for e in batch:
            found = ramp.get_accounting_vendor_by_remote_id(e.payload["id"])
            if found is not None:
                outs.append(Outcome(e.id, "posted", target_id=found["ramp_id"], response=found))
            else:
                missing.append(e)
        if missing and depth >= 3:
            # Still in doubt after repeated timeouts: leave them uncertain for replay
            # (which looks them up again) rather than risk a duplicate.
            outs += [Outcome(e.id, "uncertain", error="Ramp did not confirm the upload") for e in missing]
            missing = []
        report(outs)
        if missing:
            time.sleep(0.05 * (depth + 1))
            self._create_batch(ramp, db, missing, report, api_error, uncertain, depth + 1)


# --------------------------------------------------------------------------- shared helpers


def refuses_field(info: Any, list_key: str, field: str) -> bool:
    """Whether a rejected upload's `additional_info` says an item has an unknown `field`
    (Ramp's validation detail: {list_key: {index: {field: [messages]}}})."""
    items = info.get(list_key) if isinstance(info, dict) else None
    if not isinstance(items, dict):
        return False
    for errs in items.values():
        msgs = errs.get(field) if isinstance(errs, dict) else None
        if isinstance(msgs, list) and any("unknown field" in str(m).lower() for m in msgs):
            return True
    return False

#: SAP language keys (1 character) for the ISO codes a configuration may name.
_SPRAS = {"EN": "E", "DE": "D", "FR": "F", "ES": "S", "IT": "I", "NL": "N", "PT": "P", "JA": "J", "ZH": "1"}
#: Default balance-sheet classification by the first digit of the account number.
_BS_BY_DIGIT = {"0": "ASSET", "1": "ASSET", "2": "LIABILITY", "3": "EQUITY"}
COST_CENTER_FIELD_ID = "SAP_COST_CENTER"


def _spras(value: Any) -> str:
    text = str(value or "E").strip().upper()
    return _SPRAS.get(text, text[:1] or "E")


def _strip_zeros(value: str) -> str:
    v = value.strip()
    return (v.lstrip("0") or v) if v.isdigit() else v


def _alpha(value: str, width: int = 10) -> str:
    """SAP internal format of a numeric key (ALPHA conversion); other values as they are."""
    v = str(value or "").strip()
    return v.zfill(width) if v.isdigit() else v


def _read_all(reader: Any, table: str, fields: list[str], key_fields: list[str], where: str,
              page_size: int) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for page in reader.read(table, fields, key_fields=key_fields, where=where, page_size=page_size):
        rows.extend({k: str(v).strip() for k, v in r.items()} for r in page.rows)
    return rows


def gl_classification(saknr: str, ska1: dict[str, str], skb1: list[dict[str, str]],
                      overrides: dict[str, str] | None = None, revenue_prefixes: tuple[str, ...] = ("8",)) -> str:
    """Ramp's classification of an SAP G/L account (documented in docs/sap-ecc-ramp.md).

    1. `options.gl_classification` {number prefix: classification}: the longest matching prefix wins.
    2. Balance-sheet accounts (SKA1-XBILK = X): reconciliation accounts for vendors (SKB1-MITKZ K)
       are LIABILITY, for customers (D) ASSET; otherwise by the first digit of the number
       (0/1 ASSET, 2 LIABILITY, 3 EQUITY, else ASSET).
    3. P&L accounts (XBILK blank; GVTYP set): REVENUE when the number starts with a revenue prefix
       (default 8), else EXPENSE.
    """
    number = _strip_zeros(saknr)
    for prefix in sorted(overrides or {}, key=len, reverse=True):
        if number.startswith(str(prefix)):
            return str((overrides or {})[prefix]).upper()
    if ska1.get("XBILK") == "X":
        kinds = {r.get("MITKZ", "") for r in skb1}
        if "K" in kinds:
            return "LIABILITY"
        if "D" in kinds:
            return "ASSET"
        return _BS_BY_DIGIT.get(number[:1], "ASSET")
    return "REVENUE" if number.startswith(revenue_prefixes) else "EXPENSE"


# --------------------------------------------------------------------------- chart streams (SAP → Ramp)


class _ChartStream(Stream):
    """A chart-of-accounts upload to Ramp (all-or-nothing batches of ≤ 500, not idempotent):
    the same adopt / bisect / lookup-before-recreate delivery as vendors. Subclasses read SAP
    and provide the Ramp calls."""

    kind = "record"

    def __init__(self, flow: SapEccRampFlow) -> None:
        self.flow = flow
        self.sap_connection = flow.connection_of("sap_ecc")
        self.target_connection = flow.connection_of("ramp")
        opts = dict(getattr(flow.cfg, "options", {}) or {})
        self.opts = opts
        self.company_codes: list[str] = [str(c) for c in opts.get("company_codes", ["1000"])]
        self.page_size = int(opts.get("page_size", 5000))
        self.language = _spras(opts.get("language", "E"))

    def _reader(self, ctx: RunContext) -> Any:
        from ml_connector.systems.sap_ecc.table_reader import TableReader

        return TableReader.probed(ctx.runtime.connection(self.sap_connection))

    def begin(self, ctx: RunContext, cursor: dict[str, Any]) -> dict[str, Any]:
        return {"read": False}

    def read_page(self, ctx: RunContext, state: dict[str, Any]) -> Page:
        # Charts are small (hundreds to a few thousand rows): one page; the ledger's hashes
        # drop what did not change.
        return Page(self.read_all(ctx), {"read": True}, True)

    def finish(self, ctx: RunContext, state: dict[str, Any]) -> dict[str, Any]:
        return {}

    def read_all(self, ctx: RunContext) -> list[tuple[str, dict[str, Any]]]:
        raise NotImplementedError

    # -- Ramp hooks ------------------------------------------------------------------------
    def lookup(self, ctx: RunContext, ramp: Any, item_id: str) -> dict[str, Any] | None:
        raise NotImplementedError

    def create(self, ctx: RunContext, ramp: Any, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def item(self, payload: dict[str, Any]) -> dict[str, Any]:
        return dict(payload)

    def update(self, ctx: RunContext, ramp: Any, target: str, payload: dict[str, Any], reactivate: bool) -> Any:
        raise NotImplementedError

    def deactivate(self, ctx: RunContext, ramp: Any, target: str) -> None:
        raise NotImplementedError

    # -- delivery --------------------------------------------------------------------------
    def deliver(self, ctx: RunContext, entries: list[Entry], report: Callable[[list[Outcome]], None]) -> None:
        from ml_connector.systems.ramp.client import RampApiError

        ramp = ctx.runtime.connection(self.target_connection)
        db = ctx.runtime.db
        pending: list[Entry] = []
        for e in entries:  # in doubt after a crash or timeout: look up before anything is re-sent
            if e.state in ("in_flight", "uncertain") and e.op == "create":
                found = self.lookup(ctx, ramp, e.payload["id"])
                if found is not None:
                    report([Outcome(e.id, "posted", target_id=found["ramp_id"], response=found)])
                    continue
            pending.append(e)
        creates = [e for e in pending if e.op == "create"]
        for i in range(0, len(creates), 500):
            self._create_batch(ctx, ramp, db, creates[i:i + 500], report)
        for e in (e for e in pending if e.op != "create"):
            outbox.begin_attempt(db, [e.id])
            try:
                target = e.target_id
                if not target:
                    found = self.lookup(ctx, ramp, e.payload["id"])
                    target = found["ramp_id"] if found else None
                if not target:
                    report([Outcome(e.id, "failed", error=f"{self.kind} {e.payload['id']} is not in Ramp to {e.op}")])
                    continue
                if e.op == "deactivate":
                    self.deactivate(ctx, ramp, target)
                    resp: Any = {"ramp_id": target, "is_active": False}
                else:
                    resp = self.update(ctx, ramp, target, e.payload, e.op == "reactivate")
                report([Outcome(e.id, "posted", target_id=target, request=e.payload, response=resp)])
            except RampApiError as exc:
                report([Outcome(e.id, "failed", error=str(exc), request=e.payload)])

    def _create_batch(self, ctx: RunContext, ramp: Any, db: Any, batch: list[Entry],
                      report: Callable[[list[Outcome]], None], depth: int = 0) -> None:
        from ml_connector.systems.ramp.client import RampApiError, RampUncertainWrite

        if not batch:
            return
        outbox.begin_attempt(db, [e.id for e in batch])
        items = [self.item(e.payload) for e in batch]
        try:
            created = self.create(ctx, ramp, items)
        except RampUncertainWrite:
            self._resolve_by_lookup(ctx, ramp, db, batch, report, depth)
            return
        except RampApiError as exc:
            if exc.status >= 500 or exc.status == 429:
                raise
            if len(batch) == 1:  # isolated: adopt it if it exists, else it is the bad one
                found = self.lookup(ctx, ramp, batch[0].payload["id"])
                if found is not None:
                    report([Outcome(batch[0].id, "posted", target_id=found["ramp_id"], response=found)])
                else:
                    report([Outcome(batch[0].id, "failed", error=str(exc), request=items[0])])
                return
            mid = len(batch) // 2
            self._create_batch(ctx, ramp, db, batch[:mid], report, depth)
            self._create_batch(ctx, ramp, db, batch[mid:], report, depth)
            return
        by_id = {r["id"]: r for r in created}
        outs = []
        for e, item in zip(batch, items, strict=True):
            r = by_id.get(e.payload["id"])
            if r is None:
                outs.append(Outcome(e.id, "uncertain", error=f"Ramp's answer did not list this {self.kind}"))
            else:
                outs.append(Outcome(e.id, "posted", target_id=r["ramp_id"], request=item, response=r))
        report(outs)

    def _resolve_by_lookup(self, ctx: RunContext, ramp: Any, db: Any, batch: list[Entry],
                           report: Callable[[list[Outcome]], None], depth: int) -> None:
        missing, outs = [], []
        for e in batch:
            found = self.lookup(ctx, ramp, e.payload["id"])
            if found is not None:
                outs.append(Outcome(e.id, "posted", target_id=found["ramp_id"], response=found))
            else:
                missing.append(e)
        if missing and depth >= 3:
            outs += [Outcome(e.id, "uncertain", error="Ramp did not confirm the upload") for e in missing]
            missing = []
        report(outs)
        if missing:
            time.sleep(0.05 * (depth + 1))
            self._create_batch(ctx, ramp, db, missing, report, depth + 1)


class GLAccountStream(_ChartStream):
    """SKA1 + SKAT + SKB1 → Ramp GL accounts (id = SAKNR internal, code = SAKNR without zeros)."""

    name = "gl_accounts"
    kind = "GL account"

    def read_all(self, ctx: RunContext) -> list[tuple[str, dict[str, Any]]]:
        reader = self._reader(ctx)
        ccs = _in_list("BUKRS", self.company_codes)
        charts = sorted({r["KTOPL"] for r in _read_all(reader, "T001", ["BUKRS", "KTOPL"], ["BUKRS"], ccs,
                                                       self.page_size) if r.get("KTOPL")})
        if not charts:
            return []
        in_chart = _in_list("KTOPL", charts)
        ska1 = _read_all(reader, "SKA1", ["KTOPL", "SAKNR", "XBILK", "GVTYP", "KTOKS", "XLOEV", "XSPEB"],
                         ["KTOPL", "SAKNR"], in_chart, self.page_size)
        texts = {(r["KTOPL"], r["SAKNR"]): r for r in _read_all(
            reader, "SKAT", ["SPRAS", "KTOPL", "SAKNR", "TXT20", "TXT50"], ["SPRAS", "KTOPL", "SAKNR"],
            f"SPRAS = {_quote(self.language)} AND {in_chart}", self.page_size)}
        per_cc: dict[str, list[dict[str, str]]] = {}
        for r in _read_all(reader, "SKB1", ["BUKRS", "SAKNR", "XSPEB", "XLOEB", "MITKZ"], ["BUKRS", "SAKNR"],
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

    def map(self, ctx: RunContext, key: str, record: dict[str, Any]) -> Desired | Parked:
        text = record.get("_text") or {}
        skb1 = record.get("_company_codes") or []
        name = text.get("TXT50") or text.get("TXT20") or _strip_zeros(key)
        classification = gl_classification(
            key, record, skb1, dict(self.opts.get("gl_classification") or {}),
            tuple(str(p) for p in self.opts.get("revenue_prefixes", ["8"])))
        blocked = record.get("XLOEV") == "X" or record.get("XSPEB") == "X" or all(
            r.get("XSPEB") == "X" or r.get("XLOEB") == "X" for r in skb1)
        payload = {"id": key, "name": name, "code": _strip_zeros(key), "classification": classification}
        return Desired(key, payload, active=not blocked)

    def describe_change(self, op: str, payload: dict[str, Any]) -> str:
        return (f"{op} Ramp GL account id={payload['id']} code={payload['code']} name={payload['name']!r} "
                f"classification={payload['classification']}")

    def lookup(self, ctx: RunContext, ramp: Any, item_id: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = ramp.get_gl_account_by_remote_id(item_id)
        return found

    def create(self, ctx: RunContext, ramp: Any, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return list(ramp.create_gl_accounts(items).get("gl_accounts", []))

    def update(self, ctx: RunContext, ramp: Any, target: str, payload: dict[str, Any], reactivate: bool) -> Any:
        # Ramp's PATCH takes name and code only: a changed classification is not sent.
        return ramp.update_gl_account(target, name=payload["name"], code=payload["code"],
                                      reactivate=reactivate or None)

    def deactivate(self, ctx: RunContext, ramp: Any, target: str) -> None:
        ramp.deactivate_gl_account(target)


class CostCenterStream(_ChartStream):
    """CSKS (valid today) + CSKT → options of the Ramp accounting field "Cost Center"."""

    name = "cost_centers"
    kind = "cost center"

    def __init__(self, flow: SapEccRampFlow) -> None:
        super().__init__(flow)
        self.field_id = str(self.opts.get("cost_center_field_id", COST_CENTER_FIELD_ID))
        self.field_name = str(self.opts.get("cost_center_field_name", "Cost Center"))
        self.controlling_areas = [str(c) for c in self.opts.get("controlling_areas", self.company_codes)]
        self._field_ramp_id: str | None = None

    def read_all(self, ctx: RunContext) -> list[tuple[str, dict[str, Any]]]:
        reader = self._reader(ctx)
        today = datetime.now(UTC).strftime("%Y%m%d")
        where = _in_list("KOKRS", self.controlling_areas) + " AND " + _in_list("BUKRS", self.company_codes)
        rows = _read_all(reader, "CSKS", ["KOKRS", "KOSTL", "DATBI", "DATAB", "BKZKP", "BUKRS"],
                         ["KOKRS", "KOSTL", "DATBI"], where, self.page_size)
        texts = {(r["KOKRS"], r["KOSTL"], r["DATBI"]): r for r in _read_all(
            reader, "CSKT", ["SPRAS", "KOKRS", "KOSTL", "DATBI", "KTEXT", "LTEXT"],
            ["SPRAS", "KOKRS", "KOSTL", "DATBI"],
            f"SPRAS = {_quote(self.language)} AND " + _in_list("KOKRS", self.controlling_areas), self.page_size)}
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

    def map(self, ctx: RunContext, key: str, record: dict[str, Any]) -> Desired | Parked:
        text = record.get("_text") or {}
        value = text.get("KTEXT") or text.get("LTEXT") or _strip_zeros(key)
        active = bool(record.get("_valid_today")) and record.get("BKZKP") != "X"
        return Desired(key, {"id": key, "value": value, "code": _strip_zeros(key)}, active=active)

    def describe_change(self, op: str, payload: dict[str, Any]) -> str:
        return (f"{op} Ramp field option ({self.field_name}) id={payload['id']} code={payload['code']} "
                f"value={payload['value']!r}")

    def field(self, ramp: Any) -> str:
        """The Ramp field's ramp_id; POST /accounting/fields is idempotent on id (and reactivates)."""
        if self._field_ramp_id is None:
            rec = ramp.upsert_accounting_field(self.field_id, self.field_name, input_type="SINGLE_CHOICE")
            self._field_ramp_id = str(rec["ramp_id"])
        return self._field_ramp_id

    def lookup(self, ctx: RunContext, ramp: Any, item_id: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = ramp.get_field_option_by_remote_id(self.field(ramp), item_id)
        return found

    def create(self, ctx: RunContext, ramp: Any, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return list(ramp.create_field_options(self.field(ramp), items).get("options", []))

    def update(self, ctx: RunContext, ramp: Any, target: str, payload: dict[str, Any], reactivate: bool) -> Any:
        return ramp.update_field_option(target, value=payload["value"], code=payload["code"],
                                        reactivate=reactivate or None)

    def deactivate(self, ctx: RunContext, ramp: Any, target: str) -> None:
        ramp.deactivate_field_option(target)


# --------------------------------------------------------------------------- bills (Ramp → SAP)

_SYNC_NAMESPACE = uuid.UUID("5b0c1f8e-7d1a-4c6e-9a51-6d2b8f0e4a10")


def _money(value: Any, currency: str) -> Decimal:
    """A Ramp amount in major units: {amount: <int minor units>, currency_code} (canonical), or a bare
    decimal in major units (the bill-create form of R1)."""
    from ml_connector.systems.sap_ecc.posting import CURRENCY_DECIMALS

    if isinstance(value, dict):
        ccy = str(value.get("currency_code") or currency).upper()
        return Decimal(int(value.get("amount") or 0)).scaleb(-CURRENCY_DECIMALS.get(ccy, 2))
    return Decimal(str(value or 0))


def _date(value: Any) -> str:
    """YYYY-MM-DD of an ISO date or datetime ('' when missing)."""
    return str(value or "")[:10]


class BillStream(Stream):
    """Approved Ramp bills → SAP FI vendor invoices (exactly once), reported back to Ramp."""

    name = "bills"

    def __init__(self, flow: SapEccRampFlow) -> None:
        self.flow = flow
        self.ramp_connection = flow.connection_of("ramp")
        self.target_connection = flow.connection_of("sap_ecc")
        opts = dict(getattr(flow.cfg, "options", {}) or {})
        self.page_size = max(2, min(int(opts.get("bill_page_size", 100)), 100))
        self.entity_filter: str | None = opts.get("entity_id")
        self.cost_center_field_id = str(opts.get("cost_center_field_id", COST_CENTER_FIELD_ID))
        self.doc_type = str(opts.get("document_type", "KR"))
        self.xblnr_prefix = str(opts.get("xblnr_prefix", "RMP"))

    # -- reading ---------------------------------------------------------------------------
    def begin(self, ctx: RunContext, cursor: dict[str, Any]) -> dict[str, Any]:
        # Bills leave the sync_ready set once reported, so every run reads the set from the start.
        return {"start": None}

    def read_page(self, ctx: RunContext, state: dict[str, Any]) -> Page:
        ramp = ctx.runtime.connection(self.ramp_connection)
        bills, nxt = ramp.list_bills_page(sync_ready=True, entity_id=self.entity_filter,
                                          page_size=self.page_size, start=state.get("start"))
        return Page([(str(b["id"]), b) for b in bills], {"start": nxt}, nxt is None)

    def finish(self, ctx: RunContext, state: dict[str, Any]) -> dict[str, Any]:
        return {}

    # -- mapping ---------------------------------------------------------------------------
    def _mapped(self, ctx: RunContext, table: str, value: str) -> str | None:
        """A mapping-table value (committed state; takes no write lock)."""
        from ml_connector.core import mapping

        with ctx.runtime.db.read() as s:
            return mapping.get(s, ctx.flow, table, value)

    def _selection(self, sels: list[dict[str, Any]], kind: str) -> str:
        for sel in sels or []:
            cat = sel.get("category_info") or {}
            if kind == "GL_ACCOUNT" and cat.get("type") == "GL_ACCOUNT":
                return str(sel.get("external_id") or "")
            if kind == "COST_CENTER" and (cat.get("type") == "COST_CENTER"
                                          or cat.get("external_id") == self.cost_center_field_id):
                return str(sel.get("external_id") or "")
        return ""

    def map(self, ctx: RunContext, key: str, record: dict[str, Any]) -> Desired | Parked:
        from ml_connector.core import mapping
        from ml_connector.systems.sap_ecc.posting import format_amount, xblnr_for

        bill = record
        entity = str(bill.get("entity_id") or "")
        bukrs = self._mapped(ctx, "entities", entity)
        if not bukrs:
            return Parked(key, mapping.waits_for("entities", entity or "-"), payload=bill)
        vendor = bill.get("vendor") or {}
        lifnr = str(vendor.get("remote_id") or "") or self._mapped(ctx, "vendors", str(vendor.get("id") or ""))
        if not lifnr:
            # A Bill Pay vendor not linked to an accounting (SAP) vendor: an operator maps it.
            return Parked(key, mapping.waits_for("vendors", str(vendor.get("id") or vendor.get("name") or "-")),
                          payload=bill)
        total = bill.get("amount") or {}
        ccy = str(total.get("currency_code") or "USD").upper() if isinstance(total, dict) else "USD"
        problems: list[str] = []
        default_gl = self._selection(bill.get("accounting_field_selections") or [], "GL_ACCOUNT")
        default_cc = self._selection(bill.get("accounting_field_selections") or [], "COST_CENTER")
        lines = []
        for n, li in enumerate(bill.get("line_items") or [], start=1):
            sels = li.get("accounting_field_selections") or []
            gl = self._selection(sels, "GL_ACCOUNT") or default_gl
            cc = self._selection(sels, "COST_CENTER") or default_cc
            if not gl:
                problems.append(f"line {n}: no GL account selected; code the line in Ramp")
            lines.append({"gl_account": _alpha(gl), "cost_center": _alpha(cc),
                          "amount": format_amount(_money(li.get("amount"), ccy), ccy),
                          "text": str(li.get("memo") or "")[:50]})
        if not lines:
            problems.append("the bill has no line items")
        gross = sum((Decimal(ln["amount"]) for ln in lines), Decimal(0))
        if isinstance(total, dict) and lines and gross != _money(total, ccy):
            problems.append(f"the lines add up to {gross} {ccy}, the bill says {_money(total, ccy)} {ccy}")
        credit = gross < 0
        if credit:
            for ln in lines:
                ln["amount"] = format_amount(-Decimal(ln["amount"]), ccy)
        issued = _date(bill.get("issued_at"))
        posting = _date(bill.get("posting_date") or bill.get("accounting_date")) or issued
        today = datetime.now(UTC).strftime("%Y-%m-%d")
        payload = {"bill_id": key, "invoice_number": str(bill.get("invoice_number") or ""),
                   "entity_id": entity, "company_code": bukrs, "vendor": _alpha(lifnr), "currency": ccy,
                   "doc_date": issued or today, "posting_date": posting or today,
                   "xblnr": xblnr_for(key, self.xblnr_prefix), "credit_memo": credit, "lines": lines,
                   "problems": problems}
        return Desired(key, payload)

    def _invoice(self, p: dict[str, Any]) -> Any:
        from ml_connector.systems.sap_ecc.posting import GLLine, VendorInvoice

        return VendorInvoice(
            source_id=p["bill_id"], company_code=p["company_code"], vendor=p["vendor"], currency=p["currency"],
            doc_date=date.fromisoformat(p["doc_date"]), posting_date=date.fromisoformat(p["posting_date"]),
            lines=tuple(GLLine(gl_account=ln["gl_account"], amount=Decimal(ln["amount"]),
                               cost_center=ln["cost_center"], text=ln["text"]) for ln in p["lines"]),
            credit_memo=bool(p["credit_memo"]), doc_type=("KG" if p["credit_memo"] else self.doc_type),
            header_text=f"Ramp {p['invoice_number']}"[:25], vendor_text=p["invoice_number"][:50],
            reference=p["xblnr"])

    def describe_change(self, op: str, payload: dict[str, Any]) -> str:
        p = payload
        gross = sum((Decimal(ln["amount"]) for ln in p["lines"]), Decimal(0))
        lines = ", ".join(f"GL {_strip_zeros(ln['gl_account']) or '?'}/CC {_strip_zeros(ln['cost_center']) or '-'} "
                          f"{ln['amount']}" for ln in p["lines"])
        kind = "credit memo" if p["credit_memo"] else "invoice"
        return (f"post SAP vendor {kind} for Ramp bill {p['invoice_number']} ({p['bill_id']}): company code "
                f"{p['company_code']}, vendor {_strip_zeros(p['vendor'])}, {gross} {p['currency']}, "
                f"XBLNR {p['xblnr']}, lines [{lines}]")

    def preview(self, ctx: RunContext, change: Change) -> str | None:
        """Dry run: BAPI_ACC_DOCUMENT_CHECK (writes nothing), after the BKPF lookup by XBLNR."""
        from ml_connector.systems.sap_ecc.posting import DocumentPoster, PostingError, fiscal_year_of

        p = change.payload
        if p.get("problems"):
            return "would FAIL (reported to Ramp): " + "; ".join(p["problems"])
        try:
            inv = self._invoice(p)
            poster = DocumentPoster(ctx.runtime.connection(self.target_connection))
            ref = poster.find_posted(inv.company_code, p["xblnr"], fiscal_year_of(inv))
            if ref is not None:
                return (f"already posted in SAP as {ref.belnr}/{ref.bukrs}/{ref.gjahr}: only the Ramp "
                        "report would be sent")
            poster.check(inv)
            return "SAP check (BAPI_ACC_DOCUMENT_CHECK): OK, SAP would accept it"
        except PostingError as exc:
            return f"SAP check (BAPI_ACC_DOCUMENT_CHECK): SAP would REFUSE it: {exc}"
        except Exception as exc:  # the preview must not break the listing
            return f"SAP check not possible: {type(exc).__name__}: {exc}"

    # -- delivery --------------------------------------------------------------------------
    def _report_failure(self, ramp: Any, p: dict[str, Any], message: str) -> str:
        """failed_syncs to Ramp (users see the message); '' or a note when the report itself failed."""
        from ml_connector.systems.ramp.client import RampError

        key = str(uuid.uuid5(_SYNC_NAMESPACE, f"{p['bill_id']}:failed:{message}"))
        try:
            ramp.post_accounting_sync(key, "BILL_SYNC", failed=[{"id": p["bill_id"],
                                                                 "error": {"message": message[:1000]}}])
            return ""
        except RampError as exc:
            log.warning("reporting the failure of bill %s to Ramp failed: %s", p["bill_id"], exc)
            return f" (reporting it to Ramp failed too: {exc})"

    def deliver(self, ctx: RunContext, entries: list[Entry], report: Callable[[list[Outcome]], None]) -> None:
        from ml_connector.systems.ramp.client import RampError
        from ml_connector.systems.sap_ecc.posting import DocumentPoster, OutcomeUnknownError, PostingError

        poster = DocumentPoster(ctx.runtime.connection(self.target_connection))
        ramp = ctx.runtime.connection(self.ramp_connection)
        db = ctx.runtime.db
        for e in entries:
            p = e.payload
            outbox.begin_attempt(db, [e.id])
            if p.get("problems"):
                msg = "; ".join(p["problems"])
                report([Outcome(e.id, "failed", error=msg + self._report_failure(ramp, p, msg), request=p)])
                continue
            try:
                # Exactly once: BKPF lookup by XBLNR first; an uncertain call is resolved by lookup.
                res = poster.post(self._invoice(p))
            except PostingError as exc:
                msg = f"SAP refused the document: {exc}"
                report([Outcome(e.id, "failed", error=msg + self._report_failure(ramp, p, msg), request=p)])
                continue
            except OutcomeUnknownError as exc:
                report([Outcome(e.id, "uncertain", error=str(exc), request=p)])
                continue
            doc = f"{res.belnr}/{res.bukrs}/{res.gjahr}"
            key = str(uuid.uuid5(_SYNC_NAMESPACE, f"{p['bill_id']}:{doc}"))
            try:
                sync = ramp.post_accounting_sync(key, "BILL_SYNC",
                                                 successful=[{"id": p["bill_id"], "reference_id": doc}])
            except RampError as exc:
                # Not re-posted on replay: post() finds the document by XBLNR; only this is re-sent.
                report([Outcome(e.id, "failed", request=p,
                                error=f"posted in SAP as {doc} (XBLNR {p['xblnr']}), but the report to Ramp "
                                      f"failed: {exc}; replay re-sends the report only")])
                continue
            report([Outcome(e.id, "posted", target_id=doc, request=p,
                            response={"document": doc, "xblnr": res.xblnr, "already_posted": res.already_posted,
                                      "recovered": res.recovered, "sync_id": sync.get("sync_id")})])


class SapEccRampFlow(Flow):
    pair = "sap_ecc_ramp"

    def connection_of(self, ctype: str) -> str:
        """The flow's connection (source or target) of type `ctype`."""
        conns = self.runtime.config.connections
        for name in (self.cfg.source, self.cfg.target):
            c = conns.get(name)
            if c is not None and c.type == ctype:
                return str(name)
        return str(self.cfg.source if ctype == "sap_ecc" else self.cfg.target)

    def streams(self) -> dict[str, Stream]:
        if not hasattr(self, "_streams"):
            self._streams: dict[str, Stream] = {"vendors": VendorStream(self), "gl_accounts": GLAccountStream(self),
                                                "cost_centers": CostCenterStream(self), "bills": BillStream(self)}
        return self._streams


FLOW = SapEccRampFlow
