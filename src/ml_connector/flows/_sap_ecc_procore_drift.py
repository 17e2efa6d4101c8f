"""Helpers of the pair sap_ecc_procore (the leading underscore keeps them out of the flow pairs).

`ml-connector procore drift FLOW [--json]`: what Procore holds against what SAP says now. SAP is read
in full through the flow's own sources and mapped by its own mapping functions (so "what SAP says"
is exactly what a sync would write); each commitment (purchase order contract) and direct cost is
then looked up in Procore by its origin id and compared line by line (amount and cost code; a
contract's status too). Reported per record: missing in Procore, moved (found in the project it was
written to, which is not the one SAP's mapping names now: the next sync moves it; or, written but in
neither project, found in a third one: `procore` names where it is), a line missing, a
line Procore has that SAP does not, or a field that differs (SAP's and Procore's values). Records still parked
on a mapping are counted, not compared. Nothing is written anywhere. Periodically: the flow's
`drift` stream (option `drift_check: {cron: ...}`) runs it, records it and alerts (`sync.gap`) on
drift; a webhook on commitments starts the sync that corrects them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import typer
from rich.table import Table

from ml_connector.cli_common import DEFAULT_CONFIG, ConfigOpt, console, fail, runtime
from ml_connector.core import ledger
from ml_connector.core.flow import Outcome, Page, Report, RunContext, Source, Target
from ml_connector.core.ledger import Parked
from ml_connector.flows._sap_ecc_procore_fair import sap_source

PAIR = "sap_ecc_procore"


@dataclass
class Drift:
    kind: str          # commitment | direct_cost
    origin_id: str     # SAP-PO-<EBELN> / SAP-GL-...; lines: the line's origin id
    project: str       # Procore project number
    what: str          # missing | moved | line_missing | line_not_in_sap | differs
    line: str | None = None
    field: str | None = None
    sap: str | None = None
    procore: str | None = None


@dataclass
class DriftReport:
    flow: str
    compared: dict[str, int] = field(default_factory=dict)
    parked: dict[str, int] = field(default_factory=dict)
    drift: list[Drift] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"flow": self.flow, "compared": self.compared, "parked": self.parked,
                "drift": [asdict(d) for d in self.drift], "in_sync": not self.drift}


def _dec(value: Any) -> Decimal:
    return Decimal(str(value if value not in (None, "") else "0"))


def _desired(rt: Any, flow: str, stream: str) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """(source key, payload) of every SAP record of the stream, mapped as a full sync would (None: parked)."""
    f = rt.flow(flow)
    s = f.stream(stream)
    ctx = RunContext(rt, flow, stream, "drift", "drift", dict(getattr(f.cfg, "options", {}) or {}))
    src = sap_source(s.source)  # every SAP record, not a run's admitted changes
    state = src.begin(ctx, {})
    while True:
        page = src.read_page(ctx, state)
        for key, rec in page.records:
            m = s.map(ctx, key, rec)
            yield key, None if isinstance(m, Parked) else m.payload
        state = page.position
        if page.done:
            return


def _compare_lines(out: DriftReport, kind: str, p: dict[str, Any], have: list[dict[str, Any]],
                   code_id: Any) -> None:
    by_origin = {str(li.get("origin_id")): li for li in have}
    for ln in p["lines"]:
        got = by_origin.pop(str(ln["origin_id"]), None)
        if got is None:
            out.drift.append(Drift(kind, p["origin_id"], p["project"], "line_missing", line=ln["origin_id"],
                                   sap=str(ln["amount"])))
            continue
        if _dec(got.get("amount")) != _dec(ln["amount"]):
            out.drift.append(Drift(kind, p["origin_id"], p["project"], "differs", line=ln["origin_id"],
                                   field="amount", sap=str(_dec(ln["amount"])), procore=str(_dec(got.get("amount")))))
        want_code = code_id(ln["cost_code"])
        if want_code is not None and got.get("cost_code_id") is not None and int(got["cost_code_id"]) != want_code:
            out.drift.append(Drift(kind, p["origin_id"], p["project"], "differs", line=ln["origin_id"],
                                   field="cost_code", sap=ln["cost_code"], procore=str(got["cost_code_id"])))
    for origin, extra in by_origin.items():
        if _dec(extra.get("amount")) != 0:
            out.drift.append(Drift(kind, p["origin_id"], p["project"], "line_not_in_sap", line=origin,
                                   procore=str(_dec(extra.get("amount")))))


def _elsewhere(d: Any, kind: str, origin: str, find: Callable[[str, int, str], list[dict[str, Any]]],
               checked: set[int]) -> int | None:
    """The first other active project (by project number) holding the record `origin`, if any."""
    for _, p in sorted(d.projects().items()):
        if int(p["id"]) not in checked and find(kind, int(p["id"]), origin):
            return int(p["id"])
    return None


def drift_report(rt: Any, flow: str) -> DriftReport:
    from ml_connector.systems.procore.targets import Directory, Unresolved

    f = rt.flow(flow)
    if getattr(f, "pair", None) != PAIR:
        raise ValueError(f"flow {flow} is not a {PAIR} flow")
    client = rt.connection(f.cfg.target)
    d = Directory.of(client)
    out = DriftReport(flow)

    def code_of(pid: int, project: str) -> Any:
        def get(code: str) -> int | None:
            try:
                return d.cost_code_id(pid, code, project)
            except Unresolved:
                return None
        return get

    def find(kind: str, pid: int, origin: str) -> list[dict[str, Any]]:
        if kind == "commitment":
            return client.po_contracts(pid, origin_id=origin)
        return client.direct_costs(pid, origin_id=origin)

    for stream, kind in (("purchase_orders", "commitment"), ("cost_allocations", "direct_cost")):
        if stream not in f.cfg.streams:
            continue
        compared = parked = 0
        records = list(_desired(rt, flow, stream))
        with rt.db.read() as s:
            written = {k: str(r.target_id or "") for k, r in ledger.lookup(s, flow, stream,
                                                                           [k for k, _ in records]).items()}
        for key, p in records:
            if p is None:
                parked += 1
                continue
            compared += 1
            try:
                pid = d.project_id(p["project"])
            except Unresolved as exc:
                out.drift.append(Drift(kind, p["origin_id"], p["project"], "missing", procore=str(exc)))
                continue
            found = find(kind, pid, p["origin_id"])
            if not found:
                # Where it was written (the ledger's target id), when that is another project: the
                # record is there, in the project the mapping named before (not yet moved).
                old = written.get(key, "").partition(":")[0]
                where = None
                if old.isdigit() and int(old) != pid and find(kind, int(old), p["origin_id"]):
                    where = int(old)
                elif old.isdigit():
                    # Written (the ledger says so), but neither where the mapping says nor where it was
                    # written: moved to a third project in Procore. Only such records are looked for in
                    # every other project (a listing each), never one that was not written.
                    where = _elsewhere(d, kind, p["origin_id"], find, {pid, int(old)})
                if where is not None:
                    out.drift.append(Drift(kind, p["origin_id"], p["project"], "moved",
                                           procore=d.number_of(where) or str(where)))
                else:
                    out.drift.append(Drift(kind, p["origin_id"], p["project"], "missing"))
                continue
            rid = int(found[0]["id"])
            if kind == "commitment":
                if str(found[0].get("status") or "") != str(p["status"]):
                    out.drift.append(Drift(kind, p["origin_id"], p["project"], "differs", field="status",
                                           sap=str(p["status"]), procore=str(found[0].get("status"))))
                lines = client.po_line_items(pid, rid)
            else:
                lines = client.direct_cost_line_items(pid, rid)
            _compare_lines(out, kind, p, lines, code_of(pid, p["project"]))
        out.compared[kind] = compared
        out.parked[kind] = parked
    return out


# ------------------------------------------------------------------------- the scheduled check


def announce(rt: Any, flow: str, run_id: str, report: DriftReport) -> None:
    """A report's outcome recorded (audit `procore.drift`, its summary and first differences) and,
    when Procore drifted from SAP, an alert `sync.gap` (subject `<flow>/drift`, throttled like every
    alert), in one transaction."""
    from ml_connector.core import audit
    from ml_connector.core.alerts import Alert

    first = [asdict(d) for d in report.drift[:20]]
    alert = None
    with rt.db.session() as s:
        audit.record(s, "procore.drift", outcome="drift" if report.drift else "ok", flow=flow, stream="drift",
                     run_id=run_id, detail={"compared": report.compared, "parked": report.parked,
                                            "differences": len(report.drift), "first": first})
        if report.drift and rt.alerts is not None:
            d = report.drift[0]
            a = Alert(event="sync.gap", subject=f"{flow}/drift", flow=flow, stream="drift", run_id=run_id,
                      message=f"{flow}: {len(report.drift)} difference(s) between Procore and SAP (e.g. {d.kind} "
                              f"{d.origin_id} in project {d.project}: {d.what}"
                              f"{' ' + d.field if d.field else ''}); `ml-connector procore drift {flow}` lists them",
                      details={"differences": len(report.drift), "first": first})
            if rt.alerts.admit(s, a):
                alert = a
    if alert is not None:
        rt.alerts.dispatch(alert)


class DriftCheckSource(Source):
    """The flow's `drift` stream: each run computes the drift report (reads only), records it and
    alerts on drift (`announce`); it stages no records. Scheduled by the flow's option
    `drift_check: {cron: ...}`; the cursor keeps the last check's summary."""

    def begin(self, ctx: RunContext, cursor: dict[str, Any]) -> dict[str, Any]:
        return {"last": cursor.get("last")}

    def read_page(self, ctx: RunContext, state: dict[str, Any]) -> Page:
        report = drift_report(ctx.runtime, ctx.flow)
        announce(ctx.runtime, ctx.flow, ctx.run_id, report)
        last = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "run_id": ctx.run_id,
                "compared": report.compared, "differences": len(report.drift)}
        return Page([], {"last": last}, True)

    def finish(self, ctx: RunContext, state: dict[str, Any]) -> dict[str, Any]:
        return {"last": state.get("last")}


class NoWrites(Target):
    """The target of the `drift` stream, which reads and writes nothing (its source stages no record)."""

    batch_size = 1

    def __init__(self, connection: str) -> None:
        self.connection = connection

    def lookup(self, ctx: RunContext, entries: list[Any]) -> list[Outcome]:
        return []

    def write(self, ctx: RunContext, entries: list[Any], report: Report) -> None:
        raise RuntimeError("the drift stream writes nothing")


# ------------------------------------------------------------------------------------------ CLI

procore_app = typer.Typer(no_args_is_help=True, help="SAP ECC → Procore: drift between Procore and SAP.")


@procore_app.command("drift")
def drift(flow: str = typer.Argument(..., help="A sap_ecc_procore flow."), config: ConfigOpt = DEFAULT_CONFIG,
          as_json: bool = typer.Option(False, "--json")) -> None:
    """Compare Procore's commitments and direct costs with a fresh read of SAP (exit 1 on drift)."""
    rt = runtime(config)
    try:
        report = drift_report(rt, flow)
    except (ValueError, KeyError) as exc:
        raise fail(str(exc.args[0] if exc.args else exc), 2) from None
    finally:
        rt.close()
    if as_json:
        print(json.dumps(report.to_dict(), default=str))
    else:
        t = Table("kind", "origin id", "project", "drift", "line", "field", "SAP", "Procore",
                  title=f"{flow}: Procore against SAP")
        for x in report.drift:
            t.add_row(x.kind, x.origin_id, x.project, x.what, x.line or "", x.field or "", x.sap or "",
                      x.procore or "")
        console.print(t)
        console.print(f"compared {report.compared}, parked (not compared) {report.parked}: "
                      f"{len(report.drift)} difference(s)", highlight=False)
    if report.drift:
        raise typer.Exit(1)


def register_commands(app: typer.Typer) -> None:
    app.add_typer(procore_app, name="procore")
