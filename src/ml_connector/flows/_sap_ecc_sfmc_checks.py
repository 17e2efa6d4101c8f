"""Helpers of the pair sap_ecc_sfmc (the leading underscore keeps them out of the flow pairs).

Checks of the SAP ECC → Marketing Cloud pair that run beside the streams:

- `audience_check`: before a send, every member of a send list Data Extension is checked against a
  fresh read of SAP's credit and block data (and the accounts above it); ineligible members are
  flagged (or removed), and their rows in the customer status DE are corrected on the spot.
- `sync_gaps`: every customer change SAP announced (DEBMAS IDoc) must be visible in Marketing
  Cloud within `max_lag`; a customer whose row still differs from SAP after that is a gap: it is
  recorded (audit event `sync.gap`, the queryable history), alerted (alert event `sync.gap`) and
  corrected by writing SAP's current state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.table import Table

from ml_connector.flows.sap_ecc_sfmc import (
    SapEccSfmcFlow,
    customer_status_row,
    eligibility,
)
from ml_connector.systems.sap_ecc.sources import attach_ancestors, read_customers
from ml_connector.systems.sap_ecc.table_reader import TableReader
from ml_connector.systems.sfmc.client import SfmcClient
from ml_connector.systems.sfmc.targets import split

#: Columns a send list may name its member by (the first one present is used).
MEMBER_COLUMNS = ("CustomerNumber", "SubscriberKey", "ContactKey", "AccountNumber")
FLAG_COLUMNS = ("EligibleForMarketing", "Eligible")
REASON_COLUMNS = ("IneligibleReason", "ExclusionReason")
#: The status columns a gap is judged on (what marketing segments on).
GAP_COLUMNS = ("EligibleForMarketing", "CreditBlocked", "OrderBlock", "DeliveryBlock", "PostingBlocked",
               "DeletionFlag", "AccountStatus", "CreditLimit")


def pair_flow(rt: Any, flow: str | None) -> tuple[str, SapEccSfmcFlow]:
    """The configured flow of pair sap_ecc_sfmc (the only one, when `flow` is None)."""
    names = [n for n, f in rt.config.flows.items() if f.pair == SapEccSfmcFlow.pair]
    if flow is None:
        if len(names) != 1:
            raise ValueError(f"name the flow (--flow): flows of pair sap_ecc_sfmc: {', '.join(names) or 'none'}")
        flow = names[0]
    if flow not in names:
        raise ValueError(f"flow {flow!r} is not a sap_ecc_sfmc flow (those are: {', '.join(names) or 'none'})")
    f = rt.flow(flow)
    assert isinstance(f, SapEccSfmcFlow)
    return flow, f


def fresh_customers(rt: Any, f: SapEccSfmcFlow, kunnrs: list[str]) -> dict[str, dict[str, Any]]:
    reader = TableReader.probed(rt.connection(f.cfg.source))
    customers = read_customers(reader, sorted(set(kunnrs)), spend=True)
    attach_ancestors(reader, customers)
    return customers


@dataclass
class Member:
    key: str
    name: str
    eligible: bool
    reasons: list[str]
    action: str = "kept"   # kept | flagged | removed


@dataclass
class AudienceReport:
    de_key: str
    member_column: str
    members: list[Member] = field(default_factory=list)
    corrected: int = 0      # customer status rows brought up to date

    @property
    def excluded(self) -> list[Member]:
        return [m for m in self.members if not m.eligible]

    def to_dict(self) -> dict[str, Any]:
        return {"de_key": self.de_key, "member_column": self.member_column, "checked": len(self.members),
                "ineligible": len(self.excluded), "status_rows_corrected": self.corrected,
                "members": [m.__dict__ for m in self.members]}

    def table(self, *, all_members: bool = False) -> Table:
        t = Table(title=f"Send list {self.de_key}: {len(self.members)} checked, {len(self.excluded)} ineligible",
                  title_justify="left", expand=False)
        t.add_column("member", no_wrap=True)
        t.add_column("name", max_width=22, overflow="ellipsis", no_wrap=True)
        t.add_column("ok", no_wrap=True)
        t.add_column("action", no_wrap=True)
        t.add_column("why (from SAP)", overflow="fold", max_width=28)
        for m in self.members if all_members else self.excluded:
            t.add_row(m.key, m.name, "[green]yes[/green]" if m.eligible else "[red]no[/red]", m.action,
                      "; ".join(m.reasons))
        return t


def audience_check(rt: Any, de_key: str, *, flow: str | None = None, remove: bool = False,
                   member_column: str | None = None) -> AudienceReport:
    """Check the send list `de_key` against SAP now; flag (default) or remove ineligible members."""
    _, f = pair_flow(rt, flow)
    opts = f.options()
    mc: SfmcClient = rt.connection(f.cfg.target)
    held = mc.describe_de(de_key)
    if held is None:
        raise ValueError(f"Marketing Cloud has no Data Extension with external key {de_key!r}")
    names = [fl.name for fl in held.fields]
    col = member_column or next((c for c in MEMBER_COLUMNS if c in names), None)
    if col is None or col not in names:
        raise ValueError(f"send list {de_key}: no member column ({', '.join(MEMBER_COLUMNS)}); its columns are "
                         f"{', '.join(names)}; name one with --member-column")
    pks = [fl.name for fl in held.fields if fl.primary] or [col]
    rows = mc.retrieve_rows(de_key, names)
    report = AudienceReport(de_key, col)
    customers = fresh_customers(rt, f, [r[col] for r in rows if r.get(col)])
    flag = next((c for c in FLAG_COLUMNS if c in names), None)
    reason_col = next((c for c in REASON_COLUMNS if c in names), None)
    flagged: list[tuple[dict[str, Any], dict[str, Any]]] = []
    removed: list[dict[str, Any]] = []
    for r in rows:
        key = r.get(col, "")
        rec = customers.get(key)
        if rec is None:
            m = Member(key, "", False, ["not a customer in SAP"])
        else:
            ok, why = eligibility(rec, opts)
            m = Member(key, str(rec.get("NAME1") or "").strip(), ok, why)
        report.members.append(m)
        if m.eligible:
            continue
        keys = {k: r.get(k, "") for k in pks}
        if remove:
            removed.append(keys)
            m.action = "removed"
        elif flag:
            values = {flag: "False"}
            if reason_col:
                values[reason_col] = "; ".join(m.reasons)[:250]
            flagged.append((keys, values))
            m.action = "flagged"
        else:
            m.action = "reported"
    if removed:
        mc.delete_rows(de_key, removed)
    if flagged:
        mc.update_rows(de_key, flagged, upsert=False)
    report.corrected = correct_status_rows(mc, f, customers, [m.key for m in report.members if m.key in customers])
    return report


def correct_status_rows(mc: SfmcClient, f: SapEccSfmcFlow, customers: dict[str, dict[str, Any]],
                        keys: list[str], columns: tuple[str, ...] | None = None) -> int:
    """Write SAP's current state to the customer status rows of `keys` that differ from it (on
    `columns`, default all); returns how many were written."""
    if not keys:
        return 0
    spec = f.specs()[0]
    opts = f.options()
    held = {}
    for i in range(0, len(keys), 200):
        chunk = keys[i:i + 200]
        flt = mc.simple_filter("CustomerNumber", "IN", *chunk) if len(chunk) > 1 \
            else mc.simple_filter("CustomerNumber", "equals", chunk[0])
        held.update({r["CustomerNumber"]: r for r in mc.retrieve_rows(spec.key, [x.name for x in spec.fields], flt)})
    fix = []
    for k in keys:
        want = customer_status_row(k, customers[k], opts=opts).payload["rows"][0]
        have = held.get(k, {})
        cols = columns or tuple(want)
        if any(str(want.get(c, "")) != str(have.get(c, "")) for c in cols):
            fix.append(split(spec, want))
    if fix:
        mc.upsert_rows(spec.key, fix)
    return len(fix)


# ------------------------------------------------------------------------------------ sync gaps


@dataclass
class Gap:
    customer: str
    announced_at: str
    lag_seconds: float
    fields: dict[str, tuple[str, str]]   # column -> (in Marketing Cloud, in SAP)


def sync_gaps(rt: Any, *, flow: str | None = None, max_lag: float = 60.0, window: float = 86400.0,
              now: datetime | None = None) -> list[Gap]:
    """The customers announced by a DEBMAS IDoc between `window` and `max_lag` seconds ago whose
    status row in Marketing Cloud still differs from SAP; each is audited, alerted and corrected.
    Every check is recorded (audit event `sync.gap_check`, its result): `latest_gap_check`."""
    from ml_connector.core import audit

    name, _ = pair_flow(rt, flow)
    now = now or datetime.now(UTC)
    checked: list[str] = []
    gaps = _sync_gaps(rt, name, max_lag, window, now, checked)
    with rt.db.session() as s:
        audit.record(s, "sync.gap_check", outcome="gaps" if gaps else "ok", flow=name, stream="customers",
                     detail={"checked_at": now.isoformat(), "max_lag": max_lag, "window": window,
                             "checked": len(checked), "gaps": [_gap_dict(g) for g in gaps][:200]})
    return gaps


def _gap_dict(g: Gap) -> dict[str, Any]:
    return {"customer": g.customer, "announced_at": g.announced_at, "lag_seconds": round(g.lag_seconds, 1),
            "fields": {c: {"sfmc": a, "sap": b} for c, (a, b) in g.fields.items()}}


def latest_gap_check(rt: Any, flow: str) -> dict[str, Any]:
    """The result of the latest gap check of `flow` (`checked_at` None: none has run yet)."""
    from sqlalchemy import select

    from ml_connector.core.models import AuditRow

    with rt.db.session() as s:
        row = s.scalars(select(AuditRow).where(AuditRow.event == "sync.gap_check", AuditRow.flow == flow)
                        .order_by(AuditRow.id.desc()).limit(1)).first()
        if row is None:
            return {"flow": flow, "checked_at": None, "max_lag": None, "checked": 0, "gaps": []}
        return {"flow": flow, "outcome": row.outcome, **(row.detail or {})}


def _sync_gaps(rt: Any, name: str, max_lag: float, window: float, now: datetime, checked: list[str]) -> list[Gap]:
    from sqlalchemy import select

    from ml_connector.core import audit
    from ml_connector.core.alerts import Alert
    from ml_connector.systems.sap_ecc.idoc_models import IdocRow
    from ml_connector.systems.sap_ecc.sources import segments

    _, f = pair_flow(rt, name)
    with rt.db.session() as s:
        rows = s.execute(select(IdocRow.received_at, IdocRow.parsed).where(
            IdocRow.mestyp == "DEBMAS", IdocRow.received_at >= now - timedelta(seconds=window),
            IdocRow.received_at <= now - timedelta(seconds=max_lag)).order_by(IdocRow.id)).all()
    announced: dict[str, datetime] = {}
    for at, parsed in rows:
        for seg in segments(dict(parsed), "E1KNA1M"):
            if seg.get("KUNNR"):
                stamp = at if at.tzinfo else at.replace(tzinfo=UTC)
                announced[seg["KUNNR"]] = min(announced.get(seg["KUNNR"], stamp), stamp)
    if not announced:
        return []
    customers = fresh_customers(rt, f, list(announced))
    mc: SfmcClient = rt.connection(f.cfg.target)
    spec = f.specs()[0]
    opts = f.options()
    keys = sorted(k for k in announced if k in customers)
    checked.extend(keys)
    held: dict[str, dict[str, str]] = {}
    for i in range(0, len(keys), 200):
        chunk = keys[i:i + 200]
        flt = mc.simple_filter("CustomerNumber", "IN", *chunk) if len(chunk) > 1 \
            else mc.simple_filter("CustomerNumber", "equals", chunk[0])
        found = mc.retrieve_rows(spec.key, [*GAP_COLUMNS, "CustomerNumber"], flt)
        held.update({r["CustomerNumber"]: r for r in found})
    gaps: list[Gap] = []
    for k in keys:
        want = customer_status_row(k, customers[k], opts=opts).payload["rows"][0]
        have = held.get(k, {})
        diff = {c: (str(have.get(c, "")), str(want[c])) for c in GAP_COLUMNS if str(have.get(c, "")) != str(want[c])}
        if diff:
            gaps.append(Gap(k, announced[k].isoformat(), (now - announced[k]).total_seconds(), diff))
    if not gaps:
        return []
    correct_status_rows(mc, f, customers, [g.customer for g in gaps])
    alerts = []
    with rt.db.session() as s:
        for g in gaps:
            audit.record(s, "sync.gap", outcome="corrected", flow=name, stream="customers", source=f"sap:{g.customer}",
                         target=f"sfmc:{spec.key}", detail=_gap_dict(g))
        if rt.alerts is not None:
            alert = Alert(event="sync.gap", subject=f"{name}/customers",
                          message=f"{name}: {len(gaps)} customer change(s) from SAP not in Marketing Cloud after "
                                  f"{max_lag:.0f} s (e.g. {gaps[0].customer}: "
                                  f"{', '.join(gaps[0].fields)}); corrected now",
                          flow=name, stream="customers", details={"customers": [g.customer for g in gaps][:50]})
            if rt.alerts.admit(s, alert):
                alerts.append(alert)
    for a in alerts:
        rt.alerts.dispatch(a)
    return gaps


def gap_history(rt: Any, *, limit: int = 50, flow: str | None = None) -> list[dict[str, Any]]:
    """The recorded gaps (of `flow`, or of every flow), newest first (audit events `sync.gap`)."""
    from sqlalchemy import select

    from ml_connector.core.models import AuditRow

    with rt.db.session() as s:
        q = select(AuditRow).where(AuditRow.event == "sync.gap").order_by(AuditRow.id.desc()).limit(limit)
        if flow is not None:
            q = q.where(AuditRow.flow == flow)
        return [{"at": r.at.isoformat() if r.at else "", "flow": r.flow, **(r.detail or {})} for r in s.scalars(q)]
