"""SAP ECC → Procore: vendors, purchase orders as commitments, GL cost allocations as direct costs.

Reading SAP is `systems/sap_ecc/sources.py`, writing Procore `systems/procore/targets.py`; this
module holds the pure mapping functions and the wiring (rules in docs/procore.md). SAP is only read.

- `vendors`: LFA1/LFB1 → Procore company vendors, upserted by origin_id (the SAP vendor number).
- `purchase_orders`: EKKO/EKPO/EKKN → one purchase order contract per PO in the project its WBS
  element, cost center or plant maps to (in that order of precedence), one line per item (per
  account assignment for split items) on the mapped cost code.
- `cost_allocations`: BSEG lines on cost centers → one direct cost per document and cost center in
  the cost center's project, one line per cost code (G/L accounts grouped by their mapped cost code).

Mapping tables (configuration `mappings:`, or `ml-connector mappings set`), SAP values in external
format (no leading zeros), Procore values as operators know them:
`wbs`, `cost_centers`, `plants` → Procore project number (e.g. 26-001); `cost_codes` (G/L account /
cost element) and `material_groups` (stock items without account assignment) → cost code full code
(e.g. 90-100). A record that needs a missing mapping is parked with the key it waits for and is
mapped again when that mapping is set; the values are validated against Procore's projects and cost
codes when written (an unknown one fails the record naming it).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, Literal

from pydantic import ConfigDict, Field

from ml_connector.core import ledger, mapping
from ml_connector.core.flow import Flow, FlowSchedule, RunContext, Source, Stream
from ml_connector.core.flow import Mapper as Mapper_
from ml_connector.core.ledger import Desired, Parked
from ml_connector.core.settings import SettingsModel
from ml_connector.flows._sap_ecc_procore_drift import DriftCheckSource, NoWrites
from ml_connector.flows._sap_ecc_procore_fair import FairProjects
from ml_connector.systems.procore.targets import (
    DirectCostsTarget,
    Directory,
    PurchaseOrderContractsTarget,
    VendorsTarget,
)
from ml_connector.systems.sap_ecc.sources import CostLineSource, PurchaseOrderSource, VendorSource

#: A mapping-table lookup: (table, source value) -> target value or None.
Mapped = Callable[[str, str], str | None]

MAPPING_TABLES = ("wbs", "cost_centers", "plants", "cost_codes", "material_groups", "project_moves")


def external(value: Any) -> str:
    """SAP's external format of a numeric key: leading zeros dropped ('0000001410' → '1410')."""
    v = str(value or "").strip()
    return (v.lstrip("0") or "0") if v.isdigit() else v


def _dats(value: Any) -> str | None:
    """YYYY-MM-DD of a DATS value (None when initial)."""
    v = str(value or "").strip()
    return f"{v[:4]}-{v[4:6]}-{v[6:8]}" if len(v) == 8 and v.isdigit() and v != "00000000" else None


def _dec(value: Any) -> Decimal:
    text = str(value or "0").strip() or "0"
    if text.endswith("-"):  # SAP's trailing minus
        text = "-" + text[:-1]
    return Decimal(text)


def _money(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01'))}"


# ----------------------------------------------------------------------------------- vendors


def vendor_to_procore(key: str, record: dict[str, Any]) -> Desired:
    """An SAP vendor (LFA1 + `_company_codes` LFB1 rows) → a Procore company vendor.

    origin_id = the vendor number (internal format); origin_code = its external format; the tax id
    (STCD1) and payment terms (LFB1-ZTERM of the first company code) go to origin_data. Deleted
    (LFA1-LOEVM, or LFB1-LOEVM in every company code read) → inactive."""
    name = " ".join(p for p in (str(record.get("NAME1", "")).strip(), str(record.get("NAME2", "")).strip()) if p)
    ccs = record.get("_company_codes") or {}
    deleted = str(record.get("LOEVM", "")).strip() == "X" or (
        bool(ccs) and all(str(c.get("LOEVM", "")).strip() == "X" for c in ccs.values()))
    terms = next((str(c.get("ZTERM", "")).strip() for _, c in sorted(ccs.items()) if c.get("ZTERM")), "")
    data = [f"tax id {str(record.get('STCD1', '')).strip()}" if str(record.get("STCD1", "")).strip() else "",
            f"payment terms {terms}" if terms else ""]
    payload = {"origin_id": key, "name": (name or external(key))[:255], "origin_code": external(key),
               "city": str(record.get("ORT01", "")).strip() or None,
               "country_code": str(record.get("LAND1", "")).strip() or None,
               "origin_data": "; ".join(d for d in data if d) or None}
    return Desired(key, payload, active=not deleted)


# --------------------------------------------------------------------------- purchase orders


def po_project(po: dict[str, Any], mapped: Mapped) -> tuple[str | None, str]:
    """(Procore project number, what it waits for): the first mapped of the PO's WBS element, cost
    center (EKKN, first assigned item) and plant (EKPO-WERKS, first item); when none is mapped, the
    most specific one present is what the PO waits for."""
    candidates: list[tuple[str, str]] = []
    items = po.get("_items") or []
    for table, field, rows in (("wbs", "PS_PSP_PNR", [a for it in items for a in it.get("_accounts") or []]),
                               ("cost_centers", "KOSTL", [a for it in items for a in it.get("_accounts") or []]),
                               ("plants", "WERKS", items)):
        value = next((external(r.get(field)) for r in rows if external(r.get(field)) not in ("", "0")), "")
        if value:
            candidates.append((table, value))
    for table, value in candidates:
        project = mapped(table, value)
        if project:
            return project, ""
    table, value = candidates[0] if candidates else ("plants", "-")
    return None, mapping.waits_for(table, value)


def po_to_contract(key: str, po: dict[str, Any], *, mapped: Mapped, status: str = "Approved",
                   requisition_types: tuple[str, ...] = ("ZSUB",)) -> Desired | Parked:
    """An SAP purchase order (EKKO + `_items` EKPO with `_accounts` EKKN) → a Procore PO contract.

    One line per item, or per account assignment of an item split over several (amount EKKN-NETWR);
    the cost code of a line comes from its G/L account (EKKN-SAKTO → `cost_codes`), else from its
    material group (EKPO-MATKL → `material_groups`). Items deleted in SAP (EKPO-LOEKZ) stay as
    lines of amount 0, a deleted PO (EKKO-LOEKZ) becomes status Closed with every line at 0, so a
    change in SAP updates the same contract instead of leaving stale amounts.

    A PO of a document type in `requisition_types` (EKKO-BSART; a subcontract billed by progress)
    asks for line-level requisitions: one draft requisition per line with an amount, origin id
    `SAP-REQ-<line origin id>`, created once (a line added later gets its own; one already there
    is left alone: the subcontractor bills against it in Procore)."""
    project, waits = po_project(po, mapped)
    if project is None:
        return Parked(key, waits, payload=po)
    ebeln = str(po.get("EBELN") or key)
    po_deleted = bool(str(po.get("LOEKZ", "")).strip())
    lines = []
    for it in po.get("_items") or []:
        deleted = po_deleted or bool(str(it.get("LOEKZ", "")).strip())
        accounts = it.get("_accounts") or []
        parts = accounts if len(accounts) > 1 else [accounts[0] if accounts else {}]
        for acc in parts:
            gl = external(acc.get("SAKTO"))
            table, value = ("cost_codes", gl) if gl not in ("", "0") else ("material_groups",
                                                                          str(it.get("MATKL", "")).strip() or "-")
            code = mapped(table, value)
            if not code:
                return Parked(key, mapping.waits_for(table, value), payload=po)
            amount = _dec(acc.get("NETWR") if len(parts) > 1 else it.get("NETWR"))
            qty = _dec(acc.get("MENGE") if len(parts) > 1 else it.get("MENGE"))
            suffix = f"-{acc['ZEKKN']}" if len(parts) > 1 else ""
            lines.append({"origin_id": f"{ebeln}-{it.get('EBELP')}{suffix}", "cost_code": code,
                          "amount": _money(Decimal(0) if deleted else amount),
                          "quantity": str(qty.normalize()) if not deleted else "0",
                          "unit_cost": str(it.get("NETPR") or "0"), "uom": str(it.get("MEINS") or ""),
                          "description": (("[deleted in SAP] " if deleted else "")
                                          + f"{external(it.get('EBELP'))} {str(it.get('TXZ01') or '').strip()}")[:255]})
    if not lines:
        return Parked(key, mapping.waits_for("purchase_orders", f"{ebeln} has no items"), payload=po)
    payload: dict[str, Any] = {"origin_id": f"SAP-PO-{ebeln}", "number": ebeln, "title": f"SAP PO {ebeln}",
               "status": "Closed" if po_deleted else status, "project": project,
               "vendor": str(po.get("LIFNR") or ""), "origin_code": ebeln,
               "description": f"SAP purchase order {ebeln}, company code {po.get('BUKRS', '')}, "
                              f"currency {po.get('WAERS', '')}",
               "contract_date": _dats(po.get("BEDAT")), "payment_terms": str(po.get("ZTERM") or "") or None,
               "lines": lines}
    if str(po.get("BSART") or "").strip() in requisition_types and not po_deleted:
        payload["requisitions"] = [
            {"origin_id": f"SAP-REQ-{ln['origin_id']}", "line": ln["origin_id"],
             "invoice_number": ln["origin_id"][:50],
             "billing_date": _dats(po.get("BEDAT")),
             "origin_data": f"SAP PO {ebeln} line {ln['origin_id']}: {ln['amount']} on cost code {ln['cost_code']}"}
            for ln in lines if Decimal(ln["amount"])]
    return Desired(key, payload)


def held_for_review(key: str, po: dict[str, Any], desired: Desired, before: str | None,
                    mapped: Mapped) -> Parked | None:
    """With `on_project_change: park`: a PO whose contract sits in project `before` but which now
    maps to another waits for an operator's approval, `project_moves <EBELN> → <new project>`
    (`ml-connector mappings set FLOW project_moves 4500000123 26-012`); then it moves like with
    `move`. None: nothing to hold (new PO, same project, or the move approved)."""
    new = str(desired.payload["project"])
    if not before or before == new:
        return None
    ebeln = external(po.get("EBELN") or key)
    if mapped("project_moves", ebeln) == new:
        return None
    return Parked(key, mapping.waits_for("project_moves", ebeln), payload=po,
                  reason=f"PO {ebeln} maps to project {new} now, its contract is in project {before}: "
                         f"approve the move with `mappings set project_moves {ebeln} {new}`")


# --------------------------------------------------------------------------- cost allocations


def cost_lines_to_direct_cost(key: str, group: dict[str, Any], *, mapped: Mapped,
                              direct_cost_type: str = "expense") -> Desired | Parked:
    """One document's BSEG lines on one cost center (`_lines`, BKPF fields on the record) → a
    Procore direct cost in the cost center's project, one line per cost code.

    Amounts are in local currency (DMBTR), debit (SHKZG S) positive, credit negative: a reversal
    document (FB08, BKPF-XREVERSAL 2) therefore becomes a reversing direct cost. The origin id is
    the document and cost center, each line's the origin id and its cost code."""
    kostl = external(group.get("KOSTL"))
    project = mapped("cost_centers", kostl)
    if not project:
        return Parked(key, mapping.waits_for("cost_centers", kostl), payload=group)
    totals: dict[str, Decimal] = {}
    texts: dict[str, list[str]] = {}
    for ln in group.get("_lines") or []:
        gl = external(ln.get("HKONT"))
        code = mapped("cost_codes", gl)
        if not code:
            return Parked(key, mapping.waits_for("cost_codes", gl), payload=group)
        amount = _dec(ln.get("DMBTR"))
        totals[code] = totals.get(code, Decimal(0)) + (-amount if ln.get("SHKZG") == "H" else amount)
        text = str(ln.get("SGTXT") or "").strip()
        if text and text not in texts.setdefault(code, []):
            texts[code].append(text)
    bukrs, gjahr, belnr = (str(group.get(k) or "") for k in ("BUKRS", "GJAHR", "BELNR"))
    origin = f"SAP-GL-{bukrs}-{gjahr}-{belnr}-{kostl}"
    reversal = str(group.get("XREVERSAL") or "") == "2"
    what = (f"Reversal of SAP document {group.get('STBLG', '')}/{group.get('STJAH', '')}: " if reversal else "")
    lines = [{"origin_id": f"{origin}-{code}", "cost_code": code, "amount": _money(total),
              "description": (what + ("; ".join(texts.get(code, [])) or f"G/L cost center {kostl}"))[:255]}
             for code, total in sorted(totals.items())]
    payload = {"origin_id": origin, "project": project, "invoice_number": f"{belnr}/{gjahr}"[:50],
               "direct_cost_type": direct_cost_type, "direct_cost_date": _dats(group.get("BUDAT")),
               "description": (what + (str(group.get("BKTXT") or "").strip() or f"SAP document {belnr}")
                               + f" (cost center {kostl})")[:255],
               "origin_data": f"SAP {bukrs}/{belnr}/{gjahr} cost center {kostl}", "lines": lines}
    return Desired(key, payload)


# ------------------------------------------------------------------------------------- wiring

# Read by the configuration loader (without importing this module) to check a flow's `streams`.
STREAMS = ("vendors", "purchase_orders", "cost_allocations", "drift")


class DriftCheck(SettingsModel):
    """`options.drift_check`: when the `drift` stream (list it in the flow's `streams`) compares
    Procore with SAP and alerts on drift (cron, 5 fields, or 6 with seconds first)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cron: str
    timezone: str | None = None


class Options(SettingsModel):
    """The flow's `options` in ml-connector.yaml, validated when the configuration is loaded (a wrong
    type or an unknown key is refused there, with file, line and field); `_build` reads them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    company_codes: list[str] = ["1000"]           # BUKRS read
    page_size: int = Field(default=200, ge=1, le=100_000)
    vendor_page_size: int = Field(default=1000, ge=1, le=100_000)
    overlap_seconds: float = Field(default=3600, ge=0)
    po_from: str | None = None                    # POs created on or after (2024-10-01 or 20241001)
    postings_from: str | None = None              # BSEG lines posted on or after
    cost_centers: list[str] | None = None         # cost centers whose GL lines become direct costs (None: all)
    direct_cost_type: str = "expense"
    po_status: str = "Approved"
    requisition_doc_types: list[str] = ["ZSUB"]   # EKKO-BSART of POs whose lines get requisitions
    on_project_change: Literal["move", "park"] = "move"  # a PO mapped to another project: move or hold
    drift_check: DriftCheck | None = None         # the scheduled drift report (stream `drift`)
    writes_per_run: int | None = Field(default=None, ge=1)  # optional cap: contracts / direct costs per run
    # Requests of the company's hourly Procore budget a PO or cost run leaves for others (webhooks' syncs,
    # the drift check, other flows); None: 2% of the hourly limit (flows/_sap_ecc_procore_fair.py).
    budget_reserve: int | None = Field(default=None, ge=0)
    # Seconds a PO or cost run waits for Procore's window to give budget back before it ends `waiting`.
    budget_wait: float = Field(default=60.0, ge=0)
    internal_vendor: str = "SAP-INTERNAL"
    internal_vendor_name: str = "Internal cost allocations (SAP)"


def _dats_option(value: Any, default: str = "00000000") -> str:
    """An option date (2025-01-31 or 20250131) as DATS."""
    text = str(value or "").replace("-", "").strip()
    return text if len(text) == 8 and text.isdigit() else default


class SapEccProcoreFlow(Flow):
    pair = "sap_ecc_procore"

    def streams(self) -> dict[str, Stream]:
        if not hasattr(self, "_streams"):
            self._streams: dict[str, Stream] = self._build()
        return self._streams

    def _build(self) -> dict[str, Stream]:
        opts = dict(getattr(self.cfg, "options", {}) or {})
        sap, procore = str(self.cfg.source), str(self.cfg.target)
        company_codes = [str(c) for c in opts.get("company_codes", ["1000"])]
        page_size = int(opts.get("page_size", 200))
        scope = opts.get("cost_centers")
        cost_centers = [str(c).zfill(10) for c in scope] if scope else None
        dc_type = str(opts.get("direct_cost_type", "expense"))
        po_status = str(opts.get("po_status", "Approved"))
        req_types = tuple(str(t) for t in opts.get("requisition_doc_types", ["ZSUB"]))

        def mapped(ctx: RunContext) -> Mapped:
            def get(table: str, value: str) -> str | None:
                with ctx.runtime.db.read() as s:  # committed state; takes no write lock
                    return mapping.get(s, ctx.flow, table, value)
            return get

        vendors = Stream(
            "vendors",
            VendorSource(sap, company_codes=company_codes, page_size=int(opts.get("vendor_page_size", 1000)),
                         overlap_seconds=float(opts.get("overlap_seconds", 3600))),
            lambda ctx, key, rec: vendor_to_procore(key, rec),
            VendorsTarget(procore))
        park_moves = str(opts.get("on_project_change", "move")) == "park"

        def contract_project(ctx: RunContext, key: str) -> str | None:
            """The project number the PO's contract was written to (the ledger's target id)."""
            with ctx.runtime.db.read() as s:
                row = ledger.lookup(s, ctx.flow, ctx.stream, [key]).get(key)
            pid = str(row.target_id or "").partition(":")[0] if row is not None else ""
            if not pid.isdigit():
                return None
            return Directory.of(ctx.runtime.connection(procore)).number_of(int(pid)) or None

        def map_po(ctx: RunContext, key: str, rec: dict[str, Any]) -> Desired | Parked:
            get = mapped(ctx)
            d = po_to_contract(key, rec, mapped=get, status=po_status, requisition_types=req_types)
            if park_moves and isinstance(d, Desired):
                return held_for_review(key, rec, d, contract_project(ctx, key), get) or d
            return d

        cap = opts.get("writes_per_run")
        reserve = opts.get("budget_reserve")
        budget_wait = float(opts.get("budget_wait", 60.0))
        contracts = PurchaseOrderContractsTarget(procore)
        direct_costs = DirectCostsTarget(procore, vendor_origin_id=str(opts.get("internal_vendor", "SAP-INTERNAL")),
                                         vendor_name=str(opts.get("internal_vendor_name",
                                                                  "Internal cost allocations (SAP)")))

        def fair(source: Source, mapper: Mapper_, target: PurchaseOrderContractsTarget | DirectCostsTarget) -> Source:
            """Writes within Procore's remaining hourly budget (less the reserve), at most `writes_per_run`,
            shared round-robin by project."""
            return FairProjects(source, mapper, connection=procore, target=target,
                                reserve=int(reserve) if reserve is not None else None,
                                max_records=int(cap) if cap else None, wait=budget_wait)

        def map_costs(ctx: RunContext, key: str, rec: dict[str, Any]) -> Desired | Parked:
            return cost_lines_to_direct_cost(key, rec, mapped=mapped(ctx), direct_cost_type=dc_type)

        purchase_orders = Stream(
            "purchase_orders",
            fair(PurchaseOrderSource(sap, company_codes=company_codes, date_from=_dats_option(opts.get("po_from")),
                                     page_size=page_size), map_po, contracts),
            map_po, contracts,
            mapping_tables=("wbs", "cost_centers", "plants", "cost_codes", "material_groups", "project_moves"))
        cost_allocations = Stream(
            "cost_allocations",
            fair(CostLineSource(sap, company_codes=company_codes, date_from=_dats_option(opts.get("postings_from")),
                                cost_centers=cost_centers, page_size=page_size), map_costs, direct_costs),
            map_costs, direct_costs,
            mapping_tables=("cost_centers", "cost_codes"))
        drift = Stream("drift", DriftCheckSource(), lambda ctx, key, rec: Desired(key, rec), NoWrites(procore))
        streams = {s.name: s for s in (vendors, purchase_orders, cost_allocations, drift)}
        assert tuple(streams) == STREAMS, "STREAMS must list the streams built here"
        return streams

    def schedules(self) -> list[FlowSchedule]:
        """The periodic drift report (`drift_check`), as runs of the `drift` stream."""
        check = dict(getattr(self.cfg, "options", {}) or {}).get("drift_check")
        if not check:
            return []
        check = check if isinstance(check, DriftCheck) else DriftCheck.model_validate(check)
        return [FlowSchedule("drift", check.cron, ("drift",), "incremental", check.timezone)]

    @property
    def reconciles(self) -> bool:
        """Whether `reconcile` applies: the flow syncs purchase orders or cost allocations."""
        return bool({"purchase_orders", "cost_allocations"} & set(self.cfg.streams))

    def reconcile(self, period: str) -> Any:
        """Month-end totals per kind, project and cost code, SAP against Procore
        (flows/_sap_ecc_procore_reconcile.py)."""
        if not self.reconciles:
            raise ValueError(f"flow {self.name}: reconciliation compares purchase orders and cost allocations, "
                             "which this flow does not sync")
        from ml_connector.flows._sap_ecc_procore_reconcile import reconcile_costs

        return reconcile_costs(self, period)

    def procore_drift(self) -> dict[str, Any]:
        """The drift report (flows/_sap_ecc_procore_drift.py) as JSON; the control plane's
        `GET /api/procore/drift/{flow}` (systems/procore) asks a flow for it by this name."""
        from ml_connector.flows._sap_ecc_procore_drift import drift_report

        return drift_report(self.runtime, self.name).to_dict()


FLOW = SapEccProcoreFlow
