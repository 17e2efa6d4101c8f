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
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from ml_connector.core import outbox
from ml_connector.core.flow import Flow, Outcome, Page, RunContext, Stream
from ml_connector.core.ledger import Desired, Parked
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

    # -- reading -------------------------------------------------------------

    def _reader(self, ctx: RunContext) -> Any:
        from ml_connector.systems.sap_ecc.table_reader import TableReader

        return TableReader(ctx.runtime.connection(self.flow.cfg.source))

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
        for e in others:
            outbox.begin_attempt(db, [e.id])
            try:
                target = e.target_id
                if not target:
                    found = ramp.get_accounting_vendor_by_remote_id(e.payload["id"])
                    target = found["ramp_id"] if found else None
                if not target:
                    report([Outcome(e.id, "failed", error=f"vendor {e.payload['id']} is not in Ramp to {e.op}")])
                    continue
                if e.op == "deactivate":
                    ramp.deactivate_accounting_vendor(target)
                    resp: Any = {"ramp_id": target, "is_active": False}
                elif e.op == "reactivate":
                    resp = ramp.update_accounting_vendor(target, name=e.payload["name"], code=e.payload["code"],
                                                         reactivate=True)
                else:
                    resp = ramp.update_accounting_vendor(target, name=e.payload["name"], code=e.payload["code"])
                report([Outcome(e.id, "posted", target_id=target, request=e.payload, response=resp)])
            except RampApiError as exc:
                report([Outcome(e.id, "failed", error=str(exc), request=e.payload)])

    def _create_batch(self, ramp: Any, db: Any, batch: list[Entry], report: Callable[[list[Outcome]], None],
                      api_error: type[Exception], uncertain: type[Exception], depth: int = 0) -> None:
        if not batch:
            return
        outbox.begin_attempt(db, [e.id for e in batch])
        items = [{"id": e.payload["id"], "name": e.payload["name"], "code": e.payload["code"]} for e in batch]
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


class SapEccRampFlow(Flow):
    pair = "sap_ecc_ramp"

    def streams(self) -> dict[str, Stream]:
        if not hasattr(self, "_streams"):
            self._streams: dict[str, Stream] = {"vendors": VendorStream(self)}
        return self._streams


FLOW = SapEccRampFlow
