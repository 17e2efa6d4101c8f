"""What the flows write to Procore, each with its exactly-once strategy (see core/flow.py `Target`).

Every record carries an `origin_id` derived from its SAP key (Procore: unique per resource type
within the company), so every write is either an idempotent upsert or preceded by a lookup:

- `VendorsTarget`: company vendors through `PATCH /vendors/sync` (≤ 1000 per call), matched by
  origin_id = the SAP vendor number: sending a batch twice updates, never duplicates. Deletion in
  SAP → `is_active: false`.
- `PurchaseOrderContractsTarget`: one contract per SAP PO (origin_id `SAP-PO-<EBELN>`) through
  `PATCH /purchase_order_contracts/sync` per project, then its lines through `…/{id}/line_items/sync`
  (origin_id `<EBELN>-<EBELP>[-<ZEKKN>]`). A PO changed in SAP updates the same contract and lines;
  a line deleted in SAP goes to amount 0. A subcontract PO's lines get one requisition each
  (origin_id `SAP-REQ-<line>`), created after a listing of the commitment's requisitions. `lookup`
  finds in-doubt entries by origin_id and counts them posted only when every line is there with its
  amount (and every requisition).
- `DirectCostsTarget`: one direct cost per SAP document and cost center (origin_id
  `SAP-GL-<BUKRS>-<GJAHR>-<BELNR>-<KOSTL>`), one line per cost code. Procore has no direct-cost sync
  we rely on for line items, so both the header POST and each line POST are preceded by a lookup of
  their origin_id; a POST whose answer is lost raises `ProcoreUncertainWrite` and the retry looks
  up first. Direct costs synced from an ERP are immutable in Procore: an SAP reversal arrives as
  its own document and becomes a reversing (negative) direct cost.

Project numbers, cost codes (full code, e.g. 90-100) and vendor origin ids in the payloads are
resolved to Procore ids here (`Directory`, cached per client); an unknown one fails the record with
a message naming it (validated against Procore's projects and cost codes).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from ml_connector.core.flow import Outcome, Report, RunContext, Target
from ml_connector.core.outbox import Entry
from ml_connector.systems.procore.client import ProcoreApiError, ProcoreClient
from ml_connector.systems.procore.facts import procore_facts

log = logging.getLogger(__name__)


class Unresolved(Exception):
    """A project number, cost code or vendor the payload names is not in Procore."""


class Directory:
    """Procore ids of project numbers, cost codes and vendor origin ids (cached per client)."""

    def __init__(self, client: ProcoreClient) -> None:
        self.client = client
        self._projects: dict[str, dict[str, Any]] | None = None
        self._codes: dict[int, dict[str, int]] = {}
        self._vendors: dict[str, int] = {}
        self._lock = threading.Lock()

    @staticmethod
    def of(client: ProcoreClient) -> Directory:
        d = getattr(client, "_directory", None)
        if d is None:
            d = Directory(client)
            client._directory = d  # type: ignore[attr-defined]
        return d

    def projects(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            if self._projects is None:
                self._projects = {str(p.get("project_number") or ""): p for p in self.client.projects()}
            return self._projects

    def number_of(self, project_id: int) -> str:
        """The project number of a Procore project id ('' when it is not an active project)."""
        return next((n for n, p in self.projects().items() if int(p["id"]) == project_id), "")

    def project_id(self, number: str) -> int:
        p = self.projects().get(number)
        if p is None:
            # A project created since the cache was filled: one fresh listing, then refuse.
            with self._lock:
                self._projects = None
            p = self.projects().get(number)
        if p is None:
            raise Unresolved(f"project {number} is not an active Procore project (check the project mapping)")
        return int(p["id"])

    def _load_codes(self, project_id: int) -> dict[str, int]:
        codes = {str(c.get("full_code") or c.get("code")): int(c["id"]) for c in self.client.cost_codes(project_id)}
        with self._lock:
            self._codes[project_id] = codes
        return codes

    def cost_code_id(self, project_id: int, full_code: str, project: str = "") -> int:
        with self._lock:
            codes = self._codes.get(project_id)
        fresh = codes is None
        if codes is None:
            codes = self._load_codes(project_id)
        cid = codes.get(full_code)
        if cid is None and not fresh:
            cid = self._load_codes(project_id).get(full_code)  # a cost code added since the cache was filled
        if cid is None:
            raise Unresolved(f"cost code {full_code} does not exist in Procore project {project or project_id} "
                             f"(check the cost code mapping)")
        return cid

    def vendor_id(self, origin_id: str) -> int:
        with self._lock:
            vid = self._vendors.get(origin_id)
        if vid is None:
            found = self.client.vendors(origin_id=origin_id)
            if not found:
                raise Unresolved(f"vendor {origin_id} is not in Procore yet (the vendors stream creates it)")
            vid = int(found[0]["id"])
            with self._lock:
                self._vendors[origin_id] = vid
        return vid

    def remember_vendor(self, origin_id: str, vid: int) -> None:
        with self._lock:
            self._vendors[origin_id] = vid


def _errors(item: dict[str, Any]) -> str:
    errs = item.get("errors")
    if isinstance(errs, dict):
        return "; ".join(f"{k} {', '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in errs.items())
    return str(errs)


def _amount(value: Any) -> Decimal:
    return Decimal(str(value or "0"))


#: Records of one kind in a project with this origin id (a filtered listing).
Finder = Callable[[int, str], list[dict[str, Any]]]


def _written(client: ProcoreClient, entries: list[Entry], find: Finder,
             complete: Callable[[int, int, dict[str, Any]], bool]) -> list[Outcome]:
    """The lookup of in-doubt entries: each found by its origin id in its mapped project (`find`)
    counts as posted when `complete(project id, record id, payload)` says every line is there."""
    d = Directory.of(client)
    outs = []
    for e in entries:
        try:
            pid = d.project_id(e.payload["project"])
        except Unresolved:
            continue
        found = find(pid, e.payload["origin_id"])
        if not found:
            continue
        rid = int(found[0]["id"])
        if complete(pid, rid, e.payload):
            outs.append(Outcome(e.id, "posted", target_id=f"{pid}:{rid}"))
    return outs


# --------------------------------------------------------------------------------------- vendors


class VendorsTarget(Target):
    compared = ("name", "city", "country_code", "origin_code", "origin_data")

    #: Procore webhook resources whose events hint that this stream's records may have changed.
    WEBHOOK_RESOURCES = ("Company Vendors",)

    def __init__(self, connection: str) -> None:
        self.connection = connection
        self.batch_size = procore_facts().batch.max_items  # one sync action per write call

    def lookup(self, ctx: RunContext, entries: list[Entry]) -> list[Outcome]:
        return []  # the sync action upserts by origin_id: sending again is harmless

    def write(self, ctx: RunContext, entries: list[Entry], report: Report) -> None:
        client: ProcoreClient = ctx.runtime.connection(self.connection)
        updates = [{**e.payload, "is_active": e.op != "deactivate"} for e in entries]
        answer = client.sync_vendors(updates)
        by_origin = {str(v.get("origin_id")): v for v in answer.get("entities", [])}
        failed = {str(v.get("origin_id")): v for v in answer.get("errors", [])}
        directory = Directory.of(client)
        outs = []
        for e, u in zip(entries, updates, strict=True):
            got = by_origin.get(u["origin_id"])
            if got is not None:
                directory.remember_vendor(u["origin_id"], int(got["id"]))
                outs.append(Outcome(e.id, "posted", target_id=str(got["id"]), request=u))
            elif u["origin_id"] in failed:
                bad = failed[u["origin_id"]]
                outs.append(Outcome(e.id, "failed", request=u, response=bad,
                                    error=f"Procore refused vendor {u['origin_id']}: {_errors(bad)}"))
        report(outs)

    def compare(self, found: dict[str, Any], payload: dict[str, Any], active: bool) -> str | None:
        if bool(found.get("is_active", True)) != active:
            return "reactivate" if active else "deactivate"
        return "update" if any(found.get(k) != payload.get(k) for k in self.compared if k in payload) else None

    def describe(self, op: str, payload: dict[str, Any]) -> str:
        return f"{op} Procore vendor {payload['origin_id']} {payload.get('name', '')!r}"


# --------------------------------------------------------------------- purchase order contracts


class PurchaseOrderContractsTarget(Target):
    batch_size = 100

    #: Procore webhook resources whose events hint that this stream's records may have changed.
    WEBHOOK_RESOURCES = ("Purchase Order Contracts", "Purchase Order Contract Line Items")

    def __init__(self, connection: str) -> None:
        self.connection = connection

    def _resolve(self, d: Directory, p: dict[str, Any]) -> tuple[int, dict[str, Any], list[dict[str, Any]]]:
        pid = d.project_id(p["project"])
        head = {"origin_id": p["origin_id"], "number": p["number"], "title": p["title"], "status": p["status"],
                "description": p.get("description", ""), "contract_date": p.get("contract_date"),
                "payment_terms": p.get("payment_terms"), "origin_code": p.get("origin_code"),
                "vendor_id": d.vendor_id(p["vendor"])}
        lines = [{"origin_id": ln["origin_id"], "amount": ln["amount"], "description": ln["description"],
                  "quantity": ln.get("quantity"), "unit_cost": ln.get("unit_cost"), "uom": ln.get("uom"),
                  "cost_code_id": d.cost_code_id(pid, ln["cost_code"], p["project"])} for ln in p["lines"]]
        return pid, head, lines

    def lookup(self, ctx: RunContext, entries: list[Entry]) -> list[Outcome]:
        client: ProcoreClient = ctx.runtime.connection(self.connection)

        def complete(pid: int, cid: int, p: dict[str, Any]) -> bool:
            have = {li.get("origin_id"): _amount(li.get("amount")) for li in client.po_line_items(pid, cid)}
            if not all(have.get(ln["origin_id"]) == _amount(ln["amount"]) for ln in p["lines"]):
                return False
            if not p.get("requisitions"):
                return True
            billed = {r.get("origin_id") for r in client.requisitions(pid, commitment_id=cid)}
            return all(r["origin_id"] in billed for r in p["requisitions"])

        return _written(client, entries, lambda pid, origin: client.po_contracts(pid, origin_id=origin), complete)

    def write(self, ctx: RunContext, entries: list[Entry], report: Report) -> None:
        client: ProcoreClient = ctx.runtime.connection(self.connection)
        d = Directory.of(client)
        by_project: dict[int, list[tuple[Entry, dict[str, Any], list[dict[str, Any]]]]] = {}
        refused: list[Outcome] = []
        for e in entries:
            try:
                pid, head, lines = self._resolve(d, e.payload)
            except Unresolved as exc:
                refused.append(Outcome(e.id, "failed", request=e.payload, error=f"PO {e.payload['number']}: {exc}"))
                continue
            by_project.setdefault(pid, []).append((e, head, lines))
        if refused:
            report(refused)
        for pid, items in by_project.items():
            for e, head, _ in items:
                self._move_from(client, e, pid, head)
            answer = client.sync_po_contracts(pid, [head for _, head, _ in items])
            got = {str(c.get("origin_id")): c for c in answer.get("entities", [])}
            errs = {str(c.get("origin_id")): c for c in answer.get("errors", [])}
            for e, head, lines in items:
                c = got.get(head["origin_id"])
                if c is None:
                    if head["origin_id"] in errs:
                        report([Outcome(e.id, "failed", request=head, response=errs[head["origin_id"]],
                                        error=f"Procore refused PO {head['number']}: "
                                              f"{_errors(errs[head['origin_id']])}")])
                    continue
                cid = int(c["id"])
                la = client.sync_po_line_items(pid, cid, lines)
                if la.get("errors"):
                    report([Outcome(e.id, "failed", target_id=f"{pid}:{cid}", request=lines, response=la["errors"],
                                    error=f"Procore refused lines of PO {head['number']}: "
                                          + " | ".join(f"{x.get('origin_id')}: {_errors(x)}" for x in la["errors"]))])
                    continue
                problems = self._requisitions(client, pid, cid, e.payload.get("requisitions") or [])
                if problems:
                    report([Outcome(e.id, "failed", target_id=f"{pid}:{cid}", request=e.payload["requisitions"],
                                    error=f"Procore refused requisitions of PO {head['number']}: "
                                          + " | ".join(problems))])
                    continue
                report([Outcome(e.id, "posted", target_id=f"{pid}:{cid}", request={"contract": head, "lines": lines})])

    @staticmethod
    def _move_from(client: ProcoreClient, e: Entry, pid: int, head: dict[str, Any]) -> None:
        """A PO whose project mapping changed since its contract was written (the ledger's target id
        names another project): the contract there is closed with its lines at 0, and its origin id
        renamed `<origin id>@<old project id>` (Procore keeps origin ids unique in the company), so the
        sync that follows creates the contract in the new project. Each step is idempotent: a retry
        after a crash finds the old contract already renamed and goes on with the sync."""
        old_pid, _, old_cid = str(e.target_id or "").partition(":")
        if not old_pid.isdigit() or not old_cid.isdigit() or int(old_pid) == pid:
            return
        try:
            old = client.po_contract(int(old_pid), int(old_cid))
        except ProcoreApiError as exc:
            if exc.status == 404:
                return  # deleted in Procore meanwhile: nothing to close
            raise
        if old.get("origin_id") != head["origin_id"]:
            return  # already moved away (a retry)
        new_number = Directory.of(client).number_of(pid)
        zero = [{"origin_id": li["origin_id"], "amount": "0.00"} for li in old.get("line_items") or []
                if li.get("origin_id") and _amount(li.get("amount"))]
        if zero:
            client.sync_po_line_items(int(old_pid), int(old_cid), zero)
        client.update_po_contract(int(old_pid), int(old_cid), {
            "status": "Closed", "origin_id": f"{head['origin_id']}@{old_pid}",
            "description": f"[moved to project {new_number} by the SAP project mapping] "
                           f"{old.get('description') or ''}"[:255]})

    @staticmethod
    def _requisitions(client: ProcoreClient, pid: int, cid: int, wanted: list[dict[str, Any]]) -> list[str]:
        """Create the contract's requisitions that are not there yet (one listing of the commitment's
        requisitions before any POST; a POST whose answer is lost raises `ProcoreUncertainWrite` and
        the retry lists again). A requisition already there is left as it is. Problems, one a line."""
        if not wanted:
            return []
        have = {r.get("origin_id") for r in client.requisitions(pid, commitment_id=cid)}
        problems = []
        for r in wanted:
            if r["origin_id"] in have:
                continue
            item = {"origin_id": r["origin_id"], "invoice_number": r["invoice_number"], "status": "draft",
                    "billing_date": r.get("billing_date"), "origin_data": r.get("origin_data")}
            try:
                client.create_requisition(pid, cid, item)
            except ProcoreApiError as exc:
                if exc.status == 422 and "origin_id" in exc.message:
                    # Billed already, against the contract this PO had before it moved project: a
                    # requisition is the subcontractor's invoice, it does not move with the PO.
                    continue
                problems.append(f"{r['origin_id']}: {exc.message}")
        return problems

    @staticmethod
    def requests_for(payload: dict[str, Any], seen: set[str]) -> int:
        """Procore requests a write of this contract costs, for budgeting (fair scheduling): its
        project's contract sync and its line-item sync; with requisitions, one listing and one POST
        each; the first contract of a project or vendor in a run (`seen`, updated) also lists the
        project's cost codes or looks the vendor up. A move (closing the old contract) costs three
        more, not counted: it is rare."""
        reqs = payload.get("requisitions") or []
        first = {f"codes:{payload.get('project')}", f"vendor:{payload.get('vendor')}"} - seen
        seen |= first
        return 2 + (1 + len(reqs) if reqs else 0) + len(first)

    def describe(self, op: str, payload: dict[str, Any]) -> str:
        total = sum((_amount(ln["amount"]) for ln in payload["lines"]), Decimal(0))
        return (f"{op} Procore PO contract {payload['number']} in project {payload['project']}: vendor "
                f"{payload['vendor']}, {len(payload['lines'])} line(s), {total}")


# ---------------------------------------------------------------------------------- direct costs


class DirectCostsTarget(Target):
    batch_size = 50

    #: Procore webhook resources whose events hint that this stream's records may have changed.
    WEBHOOK_RESOURCES = ("Direct Costs", "Direct Cost Line Items")

    def __init__(self, connection: str, *, vendor_origin_id: str, vendor_name: str) -> None:
        self.connection = connection
        self.vendor_origin_id = vendor_origin_id
        self.vendor_name = vendor_name

    def _vendor(self, client: ProcoreClient) -> int:
        """The company vendor direct costs are booked against (the company's own payroll / internal
        allocations), created once through the idempotent sync."""
        d = Directory.of(client)
        try:
            return d.vendor_id(self.vendor_origin_id)
        except Unresolved:
            answer = client.sync_vendors([{"origin_id": self.vendor_origin_id, "name": self.vendor_name}])
            for v in answer.get("entities", []):
                d.remember_vendor(self.vendor_origin_id, int(v["id"]))
            return d.vendor_id(self.vendor_origin_id)

    def lookup(self, ctx: RunContext, entries: list[Entry]) -> list[Outcome]:
        client: ProcoreClient = ctx.runtime.connection(self.connection)

        def complete(pid: int, did: int, p: dict[str, Any]) -> bool:
            have = {li.get("origin_id") for li in client.direct_cost_line_items(pid, did)}
            return all(ln["origin_id"] in have for ln in p["lines"])

        return _written(client, entries, lambda pid, origin: client.direct_costs(pid, origin_id=origin), complete)

    def write(self, ctx: RunContext, entries: list[Entry], report: Report) -> None:
        client: ProcoreClient = ctx.runtime.connection(self.connection)
        d = Directory.of(client)
        vendor_id = self._vendor(client)
        for e in entries:
            p = e.payload
            try:
                pid = d.project_id(p["project"])
                lines = [{"origin_id": ln["origin_id"], "amount": ln["amount"], "description": ln["description"],
                          "cost_code_id": d.cost_code_id(pid, ln["cost_code"], p["project"])} for ln in p["lines"]]
            except Unresolved as exc:
                report([Outcome(e.id, "failed", request=p, error=f"GL document {p['invoice_number']}: {exc}")])
                continue
            found = client.direct_costs(pid, origin_id=p["origin_id"])  # lookup before every create
            if found:
                did = int(found[0]["id"])
            else:
                item = {"origin_id": p["origin_id"], "invoice_number": p["invoice_number"], "vendor_id": vendor_id,
                        "direct_cost_type": p["direct_cost_type"], "status": "approved",
                        "direct_cost_date": p["direct_cost_date"], "description": p["description"],
                        "origin_data": p.get("origin_data")}
                try:
                    did = int(client.create_direct_cost(pid, item)["id"])
                except ProcoreApiError as exc:
                    report([Outcome(e.id, "failed", request=item, error=f"Procore refused direct cost "
                                                                          f"{p['invoice_number']}: {exc.message}")])
                    continue
            have = {li.get("origin_id") for li in client.direct_cost_line_items(pid, did)}
            problems = []
            for ln in lines:
                if ln["origin_id"] in have:
                    continue
                try:
                    client.create_direct_cost_line_item(pid, did, ln)
                except ProcoreApiError as exc:
                    problems.append(f"{ln['origin_id']}: {exc.message}")
            if problems:
                report([Outcome(e.id, "failed", target_id=f"{pid}:{did}", request=lines,
                                error=f"Procore refused lines of direct cost {p['invoice_number']}: "
                                      + " | ".join(problems))])
            else:
                report([Outcome(e.id, "posted", target_id=f"{pid}:{did}", request={"lines": lines})])

    def requests_for(self, payload: dict[str, Any], seen: set[str]) -> int:
        """Procore requests a write of this direct cost costs, for budgeting (fair scheduling): the
        lookup, the POST, the line listing and one POST per line; the first of a project or of the
        run (`seen`, updated) also lists the project's cost codes or looks the internal vendor up."""
        first = {f"codes:{payload.get('project')}", f"vendor:{self.vendor_origin_id}"} - seen
        seen |= first
        return 3 + len(payload.get("lines") or []) + len(first)

    def describe(self, op: str, payload: dict[str, Any]) -> str:
        total = sum((_amount(ln["amount"]) for ln in payload["lines"]), Decimal(0))
        return (f"{op} Procore direct cost {payload['invoice_number']} in project {payload['project']}: "
                f"{len(payload['lines'])} cost code(s), {total}")


def check_mappings(client: ProcoreClient, projects: dict[str, str], cost_codes: dict[str, str]) -> list[str]:
    """Mapping tables checked against Procore: `projects` (SAP value → project number) must name
    active projects, `cost_codes` (SAP value → cost code full code) codes that exist in every mapped
    project (a line may land in any of them). One line per problem, naming the table entry."""
    d = Directory.of(client)
    problems = []
    known = d.projects()
    pids = {}
    for source, number in sorted(projects.items()):
        p = known.get(number)
        if p is None:
            problems.append(f"{source} → project {number}: no active Procore project has this number")
        else:
            pids[number] = int(p["id"])
    for source, code in sorted(cost_codes.items()):
        missing = []
        for number, pid in sorted(pids.items()):
            try:
                d.cost_code_id(pid, code, number)
            except Unresolved:
                missing.append(number)
        if missing:
            problems.append(f"{source} → cost code {code}: not in project(s) {', '.join(missing)}")
    return problems
