"""Month-end reconciliation of the pair sap_ecc_procore (the leading underscore keeps it out of the flow
pairs): `ml-connector reconcile FLOW --period YYYY-MM` and the console's reconciliation page.

Per kind (commitments, direct costs), Procore project and cost code, for a period:
- SAP: the purchase orders dated in the period (EKKO-BEDAT) and the cost-center documents posted in it
  (BKPF-BUDAT), read through the flow's own sources and mapped by its own mapping functions (so the
  projects and cost codes are the ones the flow writes); a record parked on a mapping is counted under
  project `(unmapped)` and what it waits for;
- Procore: the contracts (contract_date) and direct costs (direct_cost_date) of the period that carry
  one of the flow's origin ids (`SAP-PO-…`, `SAP-GL-…`), in every project the flow writes to (the
  mapped projects of SAP's records and the projects in the ledger's target ids), their line items.
Records are paired by origin id. What explains each difference: a record not written yet (missing,
parked, failed), one changed in SAP after it was synced, one whose amounts differ (edited in Procore),
one only Procore has. Reads only.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from decimal import Decimal
from typing import Any

from ml_connector.core import ledger
from ml_connector.core.flow import RunContext
from ml_connector.core.ledger import Desired, Parked, content_hash
from ml_connector.core.reconcile import Explanation, Reconciliation, period_bounds, record_states
from ml_connector.flows._sap_ecc_procore_fair import sap_source

Key = tuple[str, str, str]
DIMENSIONS = ("kind", "project", "cost code")
UNMAPPED = "(unmapped)"
#: stream, kind in the totals, the payload's date field, the raw record's date field, Procore origin prefix
KINDS = (("purchase_orders", "commitments", "contract_date", "BEDAT", "SAP-PO-"),
         ("cost_allocations", "direct costs", "direct_cost_date", "BUDAT", "SAP-GL-"))


def _iso(dats: Any) -> str:
    v = str(dats or "")
    return f"{v[:4]}-{v[4:6]}-{v[6:8]}" if len(v) == 8 and v.isdigit() else v[:10]


def _mapped(rt: Any, flow: str, stream: str) -> list[tuple[str, Desired | Parked]]:
    """Every SAP record of the stream, mapped as a full sync would."""
    f = rt.flow(flow)
    s = f.stream(stream)
    ctx = RunContext(rt, flow, stream, "reconcile", "reconcile", dict(getattr(f.cfg, "options", {}) or {}))
    src = sap_source(s.source)  # every SAP record, not a run's admitted changes
    state = src.begin(ctx, {})
    out: list[tuple[str, Desired | Parked]] = []
    while True:
        page = src.read_page(ctx, state)
        out.extend((key, s.map(ctx, key, rec)) for key, rec in page.records)
        state = page.position
        if page.done:
            return out


def _lines(kind: str, p: dict[str, Any]) -> dict[Key, Decimal]:
    out: dict[Key, Decimal] = defaultdict(Decimal)
    for ln in p["lines"]:
        out[(kind, str(p["project"]), str(ln["cost_code"]))] += Decimal(str(ln["amount"]))
    return dict(out)


def _raw_amount(record: dict[str, Any]) -> Decimal:
    """What a parked SAP record amounts to: a PO's item values (deleted ones at 0), a cost-center
    group's lines (debit positive)."""
    from ml_connector.flows.sap_ecc_procore import _dec

    if "_items" in record:
        return sum((Decimal(0) if str(it.get("LOEKZ") or "").strip() else _dec(it.get("NETWR"))
                    for it in record["_items"]), Decimal(0))
    return sum(((-1 if ln.get("SHKZG") == "H" else 1) * _dec(ln.get("DMBTR")) for ln in record.get("_lines") or []),
               Decimal(0))


def reconcile_costs(flow: Any, period: str) -> Reconciliation:
    from ml_connector.systems.procore.targets import Directory, Unresolved

    first, last = (d.isoformat() for d in period_bounds(period))
    rt, name = flow.runtime, flow.name
    client = rt.connection(flow.cfg.target)
    d = Directory.of(client)
    rec = Reconciliation(name, period, "SAP ECC", "Procore", DIMENSIONS)
    numbers = {int(p["id"]): n for n, p in d.projects().items()}
    for stream, kind, date_field, sap_date, prefix in KINDS:
        if stream not in flow.cfg.streams:
            continue
        ours: dict[str, dict[Key, Decimal]] = {}
        desired: dict[str, Desired] = {}
        for key, m in _mapped(rt, name, stream):
            if isinstance(m, Parked):
                if first <= _iso(m.payload.get(sap_date)) <= last:
                    k = (kind, UNMAPPED, m.waits_for)
                    amount = _raw_amount(m.payload)
                    rec.add(k, source=amount)
                    rec.explanations.append(Explanation(k, key, "parked", amount, Decimal(0), m.waits_for))
                continue
            if not first <= str(m.payload.get(date_field) or "") <= last:
                continue
            desired[str(m.payload["origin_id"])] = m
            ours[str(m.payload["origin_id"])] = _lines(kind, m.payload)
        with rt.db.read() as s:
            keys = [m.source_key for m in desired.values()]
            states = record_states(s, name, stream, keys)
            written = ledger.lookup(s, name, stream, keys)
        pids = {int(str(r.target_id).partition(":")[0]) for r in written.values()
                if str(r.target_id or "").partition(":")[0].isdigit()}
        for m in desired.values():
            with contextlib.suppress(Unresolved):
                pids.add(d.project_id(str(m.payload["project"])))
        theirs: dict[str, dict[Key, Decimal]] = {}
        for pid in sorted(pids):
            number = numbers.get(pid, str(pid))
            heads = client.po_contracts(pid) if kind == "commitments" else client.direct_costs(pid)
            for h in heads:
                origin = str(h.get("origin_id") or "")
                if not origin.startswith(prefix) or not first <= str(h.get(date_field) or "")[:10] <= last:
                    continue
                items = (client.po_line_items(pid, int(h["id"])) if kind == "commitments"
                         else client.direct_cost_line_items(pid, int(h["id"])))
                got: dict[Key, Decimal] = defaultdict(Decimal)
                for li in items:
                    code = (li.get("cost_code") or {}).get("full_code") or str(li.get("cost_code_id") or "-")
                    got[(kind, number, str(code))] += Decimal(str(li.get("amount") or "0"))
                theirs[origin] = dict(got)
        for lines in ours.values():
            for k, v in lines.items():
                rec.add(k, source=v)
        for lines in theirs.values():
            for k, v in lines.items():
                rec.add(k, target=v)
        differing = {t.key for t in rec.differences()}
        for origin, lines in ours.items():
            m = desired[origin]
            have = theirs.get(origin, {})
            state, ledger_hash = states.get(m.source_key, ("", None))
            for k in sorted(set(lines) | set(have)):
                mine, other = lines.get(k, Decimal(0)), have.get(k, Decimal(0))
                if k not in differing or mine == other:
                    continue
                if not have:
                    why = "parked" if state == "parked" else "failed" if state in ("failed", "uncertain") \
                        else "missing"
                elif ledger_hash and ledger_hash != content_hash({**m.payload, "__active": m.active}):
                    why = "changed"
                else:
                    why = "differs"
                rec.explanations.append(Explanation(k, origin, why, mine, other, m.source_key))
        for origin, lines in theirs.items():
            if origin in ours:
                continue
            for k, v in lines.items():
                if k in differing and v:
                    rec.explanations.append(Explanation(k, origin, "only_in_target", Decimal(0), v))
    return rec
