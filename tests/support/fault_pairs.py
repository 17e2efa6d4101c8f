"""The fault matrix's worlds for the other integrations' write paths: SAP Concur → Business One
(journal entries, posting confirmations back to Concur), SAP ECC → Procore (vendors, commitments,
direct costs) and SAP ECC → Marketing Cloud (Data Extension rows, journey entry events; the
customers, hierarchy and contacts streams' Data Extension rows).

Each case has a fresh target sandbox and database; the SAP ECC sandbox (a source here) is shared by
a module's cases. The faults are the sandboxes' own switches (`/_sandbox/faults`); what the targets
hold is counted as duplicates and losses, as tests/support/faults.py does for Ramp."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from ml_connector.sandbox import SandboxHandle, start_sandboxes
from tests.support.faults import Fault, World, audit_creates, open_entries, runtime, sync
from tests.support.waiting import wait_until

CONCUR_FLOW = "concur_to_b1"
#: The seeded approved reports that post (the fourth waits for a vendor Business One lacks).
CONCUR_POSTABLE = tuple(f"R000{n}F9A3C2E1B0" for n in (1, 2, 4))
PROCORE_FLOW = "ecc_to_procore"
PROCORE_STREAMS = ("vendors", "purchase_orders", "cost_allocations")
SFMC_FLOW = "customers_to_sfmc"
CUSTOMERS_DE, TRANSACTIONS_DE = "ML_SAP_Customer_Status", "ML_SAP_Transactions"
#: How many sales orders change in SAP per Marketing Cloud case (each an ORDRSP IDoc, a row, an event).
ORDERS = 6
#: The Marketing Cloud write paths under faults: the orders stream writes Data Extension rows (the
#: transactions) and journey entry events. (The customers stream writes rows the same way, from 633
#: seeded customers: a full read per case would cost a minute.)
SFMC_STREAMS = ("orders",)


@dataclass
class PairCase:
    """A case's world and what recovery switches off."""

    w: World
    reset: Callable[[], Any]
    expected: list[str]  # the source records that must arrive (reports, sales orders)


@contextmanager
def engine_here(w: World) -> Iterator[None]:
    """The engine launched in this process on the case's database (the in-process fault rows)."""
    from ml_connector.core import engine

    try:
        assert engine.connect(w.rt, role="sync") == "executor"
        yield
    finally:
        engine.shutdown()


def _quick(text: str) -> str:
    """Queue polls of 20 ms: a case costs its syncs, not the engine's waits."""
    if "queue_polling_interval:" in text:
        import re

        return re.sub(r"queue_polling_interval: [0-9.]+", "queue_polling_interval: 0.02", text, count=1)
    return text.replace("engine:\n", "engine:\n  queue_polling_interval: 0.02\n", 1)


def _admin(url: str, body: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(url, json=body, timeout=10)
    r.raise_for_status()
    return dict(r.json())


# ----------------------------------------------------------------------------- Concur → Business One


@contextmanager
def concur_case(tmp: Path) -> Iterator[PairCase]:
    """The Concur and Business One sandboxes, the seeded reports and five copies, postings confirmed
    back to Concur (both write paths of the flow)."""
    from tests.support.concur import concur_world, copy_report, pair_env

    with concur_world() as cw:
        reports = [*CONCUR_POSTABLE, *(copy_report(cw, CONCUR_POSTABLE[2], f"R04{n:02d}FAULTS") for n in range(5))]
        env = pair_env(tmp / "case", cw)
        text = _quick(env.config.read_text())
        env.config.write_text(text.replace("dimension_fields: {1: Custom1, 2: Custom2}",
                                           "dimension_fields: {1: Custom1, 2: Custom2}\n"
                                           "      confirm_to_concur: true\n      system_id: B1-FAULTS", 1))
        with runtime(env) as rt:
            def reset() -> None:
                _admin(f"{cw.b1.info['admin']}/faults", {"clear_faults": True})
                _admin(f"{cw.c['admin']}/faults", {"clear_faults": True})

            yield PairCase(World({"concur": cw.concur, "sap_b1": cw.b1}, env, rt), reset, reports)


def concur_figures(case: PairCase) -> tuple[int, int]:
    """(duplicates, losses): journal entries per report beyond one, confirmations per report beyond
    one; reports without a journal entry or a confirmed posting in Concur, writes not done."""
    w = case.w
    b1, concur = w.handles["sap_b1"], w.handles["concur"]
    jes = Counter(je.get("Reference3") for je in httpx.get(f"{b1.info['admin']}/state/JournalEntries",
                                                           timeout=30).json()["JournalEntries"])
    with concur.state.lock:
        confirmed = Counter(c["docId"] for c in concur.state.confirmations)
        status = dict(concur.state.fis_status)
    duplicates = sum(max(jes[f"concur:report:{r}"] - 1, 0) + max(confirmed[f"fis-exp-{r}"] - 1, 0)
                     for r in case.expected)
    losses = sum(int(jes[f"concur:report:{r}"] == 0) + int(status.get(f"fis-exp-{r}") != "POSTING_CONFIRMED_SUCCESS")
                 for r in case.expected)
    return duplicates, losses + open_entries(w, CONCUR_FLOW, "expense_reports")


def _b1(kw: dict[str, Any], hit: str) -> Fault:
    return Fault(lambda w: _admin(f"{w.handles['sap_b1'].info['admin']}/faults", kw),
                 lambda w: int(w.handles["sap_b1"].state.faults_injected[hit]) >= 1)


def _expire_mid_run(w: World, system: str, calls: Callable[[], int], expire: Callable[[], Any],
                    latency: float = 0.0) -> None:
    """Every token `system` issued expired once it has answered three calls of the run (the client
    holds a token it believes valid, and must get a new one); `latency`: each call slowed so."""
    if latency:
        _admin(f"{w.handles[system].info['admin']}/faults", {"latency": latency})
    start = calls()

    def watch() -> None:
        wait_until(lambda: calls() >= start + 3, timeout=120, interval=0.01)
        expire()

    threading.Thread(target=watch, name="expire-tokens", daemon=True).start()


def _concur(w: World) -> Any:
    return w.handles["concur"].state


CONCUR_FAULTS: dict[str, Fault] = {
    "B1 timeout after commit": _b1({"after_commit_next": 2, "after_commit_kind": "drop"}, "after_commit_drop"),
    "B1 dropped connection": _b1({"fail_next": 2, "fail_kind": "drop", "fail_resource": "POST JournalEntries"},
                                 "drop"),
    "B1 5xx storm": _b1({"fail_next": 3, "fail_kind": "http_503", "fail_resource": "POST JournalEntries"}, "http_503"),
    "B1 session expired": _b1({"expire_sessions_after": 4}, "expire_sessions"),
    "Concur 429 storm": Fault(lambda w: _admin(f"{w.handles['concur'].info['admin']}/faults",
                                               {"fail_next": 3, "fail_kind": "429"}),
                              lambda w: w.handles["concur"].state.faults.fail_next == 0),
    "Concur token expiry": Fault(lambda w: _expire_mid_run(w, "concur", lambda: _concur(w).requests,
                                                           lambda: _concur(w).set_faults(expire_tokens=True), 0.05),
                                 lambda w: sum(w.handles["concur"].state.token_requests.values()) >= 2),
}


# ----------------------------------------------------------------------------- SAP ECC → Procore


@contextmanager
def procore_case(ecc: SandboxHandle, tmp: Path) -> Iterator[PairCase]:
    """A fresh Procore sandbox (rate limits out of the way) and database; SAP ECC shared."""
    from tests.support.procore import procore_admin, procore_env

    procore = start_sandboxes(systems=("procore",))["procore"]
    try:
        handles = {"sap_ecc": ecc, "procore": procore}
        procore_admin(handles, "/_sandbox/limits", {"spike": 100000, "hourly": 100000})
        (tmp / "case").mkdir()
        env = procore_env(tmp / "case", handles)
        env.config.write_text(_quick(env.config.read_text()))
        with runtime(env) as rt:
            def reset() -> None:
                procore_admin(handles, "/_sandbox/faults", {"reset": True})

            yield PairCase(World(handles, env, rt), reset, [])
    finally:
        procore.stop()


def procore_figures(case: PairCase) -> tuple[int, int]:
    """(duplicates, losses): vendors, commitments, direct costs and their lines per SAP origin beyond
    one; every (project, cost code) total of commitments and direct costs that differs from SAP's,
    vendors the ledger holds that Procore lacks, every active SAP vendor of the flow's company codes
    that Procore lacks or holds inactive or under another name, writes not done."""
    from ml_connector.core.models import RecordRow
    from ml_connector.demo_ecc_procore import DEMO_OPTIONS, procore_totals, sap_totals
    from ml_connector.flows.sap_ecc_procore import external
    from tests.support.sandboxes import in_scope_vendors

    w = case.w
    st = w.handles["procore"].state
    with st.lock:
        origins = Counter(r["origin_id"] for r in [*st.contracts.values(), *st.direct_costs.values()])
        lines = Counter((r["id"], li["origin_id"]) for r in [*st.contracts.values(), *st.direct_costs.values()]
                        for li in r["line_items"])
        vendors = Counter(v.get("origin_id") for v in st.vendors.values() if v.get("origin_id"))
        vendor_ids = {str(i) for i in st.vendors}
        by_origin = {str(v["origin_id"]): v for v in st.vendors.values() if v.get("origin_id")}
    duplicates = sum(n - 1 for c in (origins, lines, vendors) for n in c.values())
    want, got = sap_totals(w.ecc), procore_totals(st)
    losses = 0
    for kind in ("commitments", "direct_costs"):
        expect = {k: v for k, v in want[kind].items() if v}
        losses += sum(1 for k in set(expect) | set(got[kind]) if expect.get(k) != got[kind].get(k))
    with w.rt.db.session() as s:
        held = set(s.scalars(select(RecordRow.target_id).where(
            RecordRow.flow == PROCORE_FLOW, RecordRow.stream == "vendors", RecordRow.active.is_(True))))
    losses += len({str(t) for t in held if t} - vendor_ids)
    sap = in_scope_vendors(w.ecc, tuple(DEMO_OPTIONS["company_codes"]))
    for lifnr, v in sap.items():
        got = by_origin.get(lifnr)
        name = v["name"] if v["name"] != lifnr else external(lifnr)
        losses += int(v["active"] and (got is None or not got.get("is_active", True) or got.get("name") != name[:255]))
    return duplicates, losses + sum(open_entries(w, PROCORE_FLOW, s) for s in PROCORE_STREAMS)


def _procore(n: int, kind: str) -> Fault:
    from tests.support.procore import procore_admin

    # Only the writes (sync actions): a fault on a read would prove nothing about them.
    return Fault(lambda w: procore_admin(w.handles, "/_sandbox/faults", {"fail_next": n, "kind": kind,
                                                                       "retry_after": 0.2, "path": "/sync"}),
                 lambda w: w.handles["procore"].state.faults.fail_next == 0)


PROCORE_FAULTS: dict[str, Fault] = {
    "429 storm": _procore(3, "429"),
    "5xx storm": _procore(3, "503"),
    "dropped connection": _procore(2, "drop"),
    "timeout after commit": _procore(2, "drop_after_commit"),
    "token expiry": _procore(2, "expire_tokens"),
}


# ----------------------------------------------------------------------------- SAP ECC → Marketing Cloud


@contextmanager
def sfmc_case(ecc: SandboxHandle, tmp: Path) -> Iterator[PairCase]:
    """A fresh Marketing Cloud sandbox and database, the control plane's IDoc receiver on it, and
    ORDERS sales orders changed in SAP (their ORDRSP IDocs stored): the orders stream's input."""
    from ml_connector.systems.sap_ecc.idoc_receiver import SqlIdocStore
    from tests.support.sfmc import idoc_endpoint, make_sfmc_env, push_idocs_to

    mc = start_sandboxes(systems=("sfmc",))["sfmc"]
    try:
        (tmp / "case").mkdir()
        env = make_sfmc_env(tmp / "case", ecc.url, mc.info, options="      page_size: 100\n")
        env.config.write_text(_quick(env.config.read_text()))
        with idoc_endpoint(env) as endpoint, runtime(env) as rt:
            push_idocs_to(ecc.url, endpoint)
            st = ecc.state
            orders = sorted(r["VBELN"] for r in st.data.rows("VBAK", st.client) if r.get("KUNNR"))[:ORDERS]
            for n, vbeln in enumerate(orders):
                st.data.update_sales_order(vbeln, BSTNK=f"FM-{tmp.name[-12:]}-{n}")
            wait_until(lambda: len(SqlIdocStore(endpoint.db).list(mestyp="ORDRSP")) >= ORDERS, timeout=30)

            def reset() -> None:
                _admin(f"{mc.info['admin']}/faults", {"throttle_next": 0, "fail_next": 0, "latency": 0.0})

            yield PairCase(World({"sap_ecc": ecc, "sfmc": mc}, env, rt), reset, orders)
    finally:
        mc.stop()


def sfmc_figures(case: PairCase) -> tuple[int, int]:
    """(duplicates, losses): rows recorded as created more than once, journey entry events per order
    beyond one; orders without their transactions row or their event, writes not done."""
    from tests.support.sfmc import de_rows, mc_events

    w = case.w
    mc = w.handles["sfmc"].info
    events = Counter(str((e.get("Data") or {}).get("OrderNumber")) for e in mc_events(mc))
    duplicates = sum(n - 1 for n in audit_creates(w, SFMC_FLOW, "orders").values())
    duplicates += sum(max(events[o] - 1, 0) for o in case.expected)
    trans = de_rows(mc, TRANSACTIONS_DE, missing_ok=True)
    losses = sum(int(o not in trans) + int(events[o] == 0) for o in case.expected)
    return duplicates, losses + open_entries(w, SFMC_FLOW, "orders")


def _mc(**kw: Any) -> Fault:
    def hit(w: World) -> bool:
        f = w.handles["sfmc"].state.faults
        return bool(f.fail_next == 0 and f.throttle_next == 0)

    return Fault(lambda w: _admin(f"{w.handles['sfmc'].info['admin']}/faults", kw), hit)


def _mc_calls(w: World) -> int:
    stats = w.handles["sfmc"].state.stats
    return int(stats["rest_calls"]) + int(stats["soap_calls"])


SFMC_FAULTS: dict[str, Fault] = {
    "429 storm": _mc(throttle_next=3, retry_after=0),
    "5xx storm": _mc(fail_next=3, kind="5xx"),
    "dropped connection": _mc(fail_next=2, kind="drop"),
    "timeout after commit": _mc(fail_next=2, kind="timeout_after_commit"),
    "token expiry": Fault(lambda w: _expire_mid_run(w, "sfmc", lambda: _mc_calls(w),
                                                    w.handles["sfmc"].state.expire_tokens),
                          lambda w: w.handles["sfmc"].state.stats["token_requests"] >= 2),
}


# ----------------------------------------------------------------------------- Marketing Cloud master data

#: The streams that write a Data Extension's rows from SAP's customers (a full read on a first run).
SFMC_MASTER_STREAMS = ("customers", "hierarchy", "contacts")
#: Customers per page: a case's first run reads several pages (a kill at the second lands after one
#: page was delivered, so recovery resumes a part-done run).
SFMC_MASTER_PAGE = 10


@contextmanager
def small_ecc() -> Iterator[SandboxHandle]:
    """An SAP ECC sandbox with a small logistics seed (29 customers, 106 partner functions, 46 contact
    persons): a full read of its customers costs a case little."""
    from ml_connector.systems.sap_ecc.facts import ecc_facts
    from ml_connector.systems.sap_ecc.sandbox.app import EccSandbox
    from ml_connector.systems.sap_ecc.sandbox.data import EccData
    from ml_connector.systems.sap_ecc.sandbox.seed_logistics import seed_logistics

    client = ecc_facts().sandbox.client
    data = EccData(clients=(client,))
    data.seed_vendors(20, 42, client=client)
    seed_logistics(data, seed=42, client=client, purchase_orders=20, customers=24, sales_orders=40)
    handle = start_sandboxes(systems=("sap_ecc",), states={"sap_ecc": EccSandbox(data=data, client=client)})["sap_ecc"]
    try:
        yield handle
    finally:
        handle.stop()


@contextmanager
def sfmc_master_case(ecc: SandboxHandle, tmp: Path) -> Iterator[PairCase]:
    """A fresh Marketing Cloud sandbox and database for the customers, hierarchy and contacts
    streams (read from SAP directly: no IDocs needed); SAP ECC shared and left unchanged."""
    from tests.support.sfmc import make_sfmc_env

    mc = start_sandboxes(systems=("sfmc",))["sfmc"]
    try:
        (tmp / "case").mkdir()
        env = make_sfmc_env(tmp / "case", ecc.url, mc.info, options=f"      page_size: {SFMC_MASTER_PAGE}\n")
        env.config.write_text(_quick(env.config.read_text()))
        with runtime(env) as rt:
            def reset() -> None:
                _admin(f"{mc.info['admin']}/faults", {"throttle_next": 0, "fail_next": 0, "latency": 0.0})

            yield PairCase(World({"sap_ecc": ecc, "sfmc": mc}, env, rt), reset, [])
    finally:
        mc.stop()


def _master_spec(stream: str) -> Any:
    from ml_connector.flows.sap_ecc_sfmc import contacts_de, customer_de, hierarchy_de

    return {"customers": customer_de, "hierarchy": hierarchy_de, "contacts": contacts_de}[stream]()


def sfmc_master_rows(case: PairCase, stream: str) -> list[dict[str, str]]:
    """Every row of the stream's Data Extension in the case's Marketing Cloud sandbox, over HTTP."""
    r = httpx.get(f"{case.w.handles['sfmc'].info['admin']}/des/{_master_spec(stream).key}/rows", timeout=30)
    if r.status_code == 404:  # never created: nothing arrived
        return []
    r.raise_for_status()
    return list(r.json()["rows"])


def sfmc_master_expected(ecc: SandboxHandle, tmp: Path) -> dict[str, list[dict[str, str]]]:
    """What the customers, hierarchy and contacts Data Extensions hold after one uninterrupted sync
    of each stream from `ecc` (no faults), on a fresh sandbox: the reference every case's target
    must equal after its recovery. A full comparison right after must find nothing to write (else
    the reference itself would be in question, and every full run would rewrite records)."""
    from ml_connector.core import engine

    with sfmc_master_case(ecc, tmp) as case, engine_here(case.w):
        sync(case.w, SFMC_FLOW, SFMC_MASTER_STREAMS)
        assert not case.w.errors, case.w.errors
        rows = {s: sfmc_master_rows(case, s) for s in SFMC_MASTER_STREAMS}
        for s in SFMC_MASTER_STREAMS:
            run_id = engine.start_sync(SFMC_FLOW, s, full=True)
            engine.wait(run_id, timeout=120, poll=0.05)
            assert engine.progress(run_id)["written"] == 0, (s, engine.progress(run_id))
            assert sfmc_master_rows(case, s) == rows[s], s
    assert all(rows.values()), {s: len(r) for s, r in rows.items()}
    return rows


def sfmc_master_figures(case: PairCase, stream: str, expected: list[dict[str, str]]) -> tuple[int, int]:
    """(duplicates, losses) of a Data Extension keyed by its primary key. Duplicates: rows of one key
    beyond the first, rows the reference lacks (a stale or stray row) and creates recorded more than
    once. Losses: reference rows missing or holding other content, writes not done."""
    spec = _master_spec(stream)

    def key(r: dict[str, str]) -> tuple[str, ...]:
        return tuple(str(r.get(k, "")) for k in spec.primary_keys)

    held = sfmc_master_rows(case, stream)
    count = Counter(key(r) for r in held)
    want = {key(r): r for r in expected}
    got = {key(r): r for r in held}
    duplicates = sum(n - 1 for n in count.values()) + len(set(got) - set(want))
    duplicates += sum(n - 1 for n in audit_creates(case.w, SFMC_FLOW, stream).values())
    losses = sum(1 for k, r in want.items() if got.get(k) != r)
    return duplicates, losses + open_entries(case.w, SFMC_FLOW, stream)
