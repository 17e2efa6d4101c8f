"""What the flows write to Marketing Cloud, each with its exactly-once strategy.

- `DataExtensionRowsTarget`: rows of a Data Extension the flow declares (created or validated on
  first use). Payload `{"rows": [row, ...]}` for one source record. Strategy: idempotent upsert on
  the primary key (REST rowset, or the async rows API for large batches): a write in doubt is
  simply sent again (`lookup` finds nothing to resolve). With `replace_by` (a column naming the
  source record, e.g. the account of a set of partner rows), rows of that record no longer in the
  payload are deleted; a record with no rows then names its `replace_by` value in the payload,
  `{"rows": [], "owner": value}`, so that a full run can tell that Marketing Cloud holds none for
  it. A full run compares the rows Marketing Cloud holds (`current`), so a row changed or lost
  there is corrected.
- `TransactionsJourneyTarget`: a sales document's row in the transactions DE and, for a new
  order, a journey entry event. Journey events are not idempotent (no key, no lookup), so the row
  is written first with `JourneyEvent = "sending"`, the event fired, then the row stamped with the
  event instance id. An entry in doubt is looked up by its row: stamped = posted; still "sending" =
  the event may or may not have started the journey: failed for an operator (at most once, never
  twice); no row = written again.
"""

from __future__ import annotations

import logging
from typing import Any

from ml_connector.core.flow import Outcome, Report, RunContext, Target
from ml_connector.core.outbox import Entry
from ml_connector.systems.sfmc.client import SfmcClient, SfmcError, SfmcRefused, SfmcUncertainWrite
from ml_connector.systems.sfmc.schema import DeSpec

log = logging.getLogger(__name__)


def _norm(v: Any) -> str:
    return "" if v is None else str(v)


def row_key(spec: DeSpec, row: dict[str, Any]) -> tuple[str, ...]:
    return tuple(_norm(row.get(k)) for k in spec.primary_keys)


def split(spec: DeSpec, row: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    keys = set(spec.primary_keys)
    return ({k: v for k, v in row.items() if k in keys}, {k: v for k, v in row.items() if k not in keys})


class _DeTarget(Target):
    def __init__(self, connection: str, spec: DeSpec) -> None:
        self.connection = connection
        self.spec = spec
        self._ready: set[int] = set()  # id() of the clients the DE was ensured with

    def client(self, ctx: RunContext) -> SfmcClient:
        c: SfmcClient = ctx.runtime.connection(self.connection)
        if id(c) not in self._ready:
            outcome = c.ensure_de(self.spec)
            log.info("Data Extension %s: %s", self.spec.key, outcome)
            self._ready.add(id(c))
        return c

    def held_rows(self, c: SfmcClient, column: str, values: list[str]) -> list[dict[str, str]]:
        """The rows whose `column` is one of `values` (IN filter, in chunks)."""
        cols = [f.name for f in self.spec.fields]
        out: list[dict[str, str]] = []
        for i in range(0, len(values), 200):
            chunk = values[i:i + 200]
            flt = c.simple_filter(column, "IN", *chunk) if len(chunk) > 1 \
                else c.simple_filter(column, "equals", chunk[0])
            out.extend(c.retrieve_rows(self.spec.key, cols, flt))
        return out


class DataExtensionRowsTarget(_DeTarget):
    batch_size = 500

    def __init__(self, connection: str, spec: DeSpec, *, replace_by: str | None = None) -> None:
        super().__init__(connection, spec)
        self.replace_by = replace_by

    def lookup(self, ctx: RunContext, entries: list[Entry]) -> list[Outcome]:
        return []  # upserts: an entry in doubt is written again

    def write(self, ctx: RunContext, entries: list[Entry], report: Report) -> None:
        c = self.client(ctx)
        rows = [(e, r) for e in entries for r in e.payload.get("rows", [])]
        pairs = [split(self.spec, r) for _, r in rows]
        try:
            if len(pairs) > c.facts.batch.async_from_rows:
                c.async_upsert(self.spec.key, [{**k, **v} for k, v in pairs])
            elif pairs:
                c.upsert_rows(self.spec.key, pairs)
            if self.replace_by:
                self._drop_stale(c, entries)
        except SfmcRefused as exc:
            if len(entries) == 1:
                report([Outcome(entries[0].id, "failed", error=str(exc), request=entries[0].payload)])
                return
            # One refused row fails the whole call: write one record at a time to isolate it.
            for e in entries:
                self.write(ctx, [e], report)
            return
        report([Outcome(e.id, "posted", target_id=e.source_key) for e in entries])

    def _drop_stale(self, c: SfmcClient, entries: list[Entry]) -> None:
        assert self.replace_by is not None
        want = {row_key(self.spec, r) for e in entries for r in e.payload.get("rows", [])}
        owners = sorted({e.source_key for e in entries})
        stale = [r for r in self.held_rows(c, self.replace_by, owners) if row_key(self.spec, r) not in want]
        if stale:
            c.delete_rows(self.spec.key, [dict(zip(self.spec.primary_keys, row_key(self.spec, r), strict=True))
                                          for r in stale])

    def current(self, ctx: RunContext, payloads: list[dict[str, Any]]) -> dict[int, tuple[str, dict[str, Any]]] | None:
        c = self.client(ctx)
        first = self.spec.primary_keys[0]
        owner_col = self.replace_by or first
        owners: dict[str, int] = {}
        # A record with no rows (an account without contacts) is held as it should be when Marketing
        # Cloud has no rows for it either: absent from the answer, it would be created on every full run.
        empty: dict[int, str] = {}
        for i, p in enumerate(payloads):
            for r in p.get("rows", []):
                owners.setdefault(_norm(r.get(owner_col)), i)
            if self.replace_by and not p.get("rows") and p.get("owner"):
                empty[i] = _norm(p["owner"])
                owners.setdefault(empty[i], i)
        if not owners:
            return {}
        held: dict[int, list[dict[str, str]]] = {i: [] for i in empty}
        for r in self.held_rows(c, owner_col, sorted(owners)):
            at = owners.get(_norm(r.get(owner_col)))
            if at is not None:
                held.setdefault(at, []).append(r)
        return {i: (_norm(payloads[i]["rows"][0].get(owner_col)) if payloads[i].get("rows") else empty.get(i, ""),
                    {"rows": rows})
                for i, rows in held.items()}

    def compare(self, found: dict[str, Any], payload: dict[str, Any], active: bool) -> str | None:
        have = {row_key(self.spec, r): r for r in found.get("rows", [])}
        want = payload.get("rows", [])
        if self.replace_by and set(have) - {row_key(self.spec, r) for r in want}:
            return "update"
        for r in want:
            h = have.get(row_key(self.spec, r))
            if h is None or any(_norm(v) != _norm(h.get(k)) for k, v in r.items()):
                return "update"
        return None

    def describe(self, op: str, payload: dict[str, Any]) -> str:
        rows = payload.get("rows", [])
        first = rows[0] if rows else {}
        keys = ", ".join(f"{k}={first.get(k)}" for k in self.spec.primary_keys)
        return f"{op} {len(rows)} row(s) of Data Extension {self.spec.key} ({keys})"


class TransactionsJourneyTarget(_DeTarget):
    batch_size = 50

    def __init__(self, connection: str, spec: DeSpec, *, event_column: str = "JourneyEvent") -> None:
        super().__init__(connection, spec)
        self.event_column = event_column

    def lookup(self, ctx: RunContext, entries: list[Entry]) -> list[Outcome]:
        c = self.client(ctx)
        first = self.spec.primary_keys[0]
        by_key = {row_key(self.spec, r): r
                  for r in self.held_rows(c, first, sorted({_norm(e.payload["row"][first]) for e in entries}))}
        out: list[Outcome] = []
        for e in entries:
            held = by_key.get(row_key(self.spec, e.payload["row"]))
            if held is None:
                continue  # never written: write again
            stamp = held.get(self.event_column, "")
            if not e.payload.get("event"):
                out.append(Outcome(e.id, "posted", target_id=e.source_key, found={"row": held}))
            elif stamp and stamp != "sending":
                out.append(Outcome(e.id, "posted", target_id=stamp))
            elif stamp == "sending":
                out.append(Outcome(e.id, "failed", request=e.payload,
                                   error="the journey entry event may or may not have been sent (answer lost); "
                                         "check the contact's journey history in Marketing Cloud before replaying"))
        return out

    def write(self, ctx: RunContext, entries: list[Entry], report: Report) -> None:
        c = self.client(ctx)
        for e in entries:
            row = dict(e.payload["row"])
            event = e.payload.get("event") if e.op == "create" else None
            try:
                if event:
                    c.upsert_rows(self.spec.key, [split(self.spec, {**row, self.event_column: "sending"})])
                    iid = c.fire_event(event["contact"], event["key"], event["data"])
                    c.upsert_rows(self.spec.key, [split(self.spec, {**row, self.event_column: iid})])
                    report([Outcome(e.id, "posted", target_id=iid, request=e.payload)])
                else:
                    c.upsert_rows(self.spec.key, [split(self.spec, row)])
                    report([Outcome(e.id, "posted", target_id=e.source_key)])
            except SfmcUncertainWrite:
                report([Outcome(e.id, "uncertain", request=e.payload)])
            except SfmcRefused as exc:
                report([Outcome(e.id, "failed", error=str(exc), request=e.payload)])
            except SfmcError:
                raise

    def describe(self, op: str, payload: dict[str, Any]) -> str:
        r = payload.get("row", {})
        ev = " + journey entry event" if payload.get("event") and op == "create" else ""
        return f"{op} {r.get('DocumentType')} {r.get('DocumentNumber')} of customer {r.get('CustomerNumber')}{ev}"
