"""The fault matrix's world: fresh sandboxes and a fresh database per case, the engine in this
process (a CLI start per sync would cost seconds), the sandboxes' own fault switches, and what the
target ends up holding, counted as duplicates and losses per stream."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from ml_connector.sandbox import SandboxHandle, start_sandboxes
from tests.support.bills import add_bill, postable_vendor, ramp_bill, sap_documents, with_ramp_webhooks
from tests.support.env import Env, make_env
from tests.support.sandboxes import in_scope_vendors, ramp_state

MASTER_FLOW = "vendors_to_ramp"
BILLS_FLOW = "bills_to_sap"
UPLOADS = "/developer/v1/accounting"  # every Ramp chart-of-accounts write path starts so
#: Ramp's sandbox state of each master-data stream: (state name, remote id field).
RAMP_RECORDS = {"vendors": ("vendors", "id"), "gl_accounts": ("gl_accounts", "id"),
                "cost_centers": ("field_options", "id"), "company_codes": ("field_options", "id"),
                "plants": ("field_options", "id"), "departments": ("field_options", "id")}
#: The accounting field (its ERP id, the flow's default option) whose options a field-option stream writes:
#: options of other fields may share an ERP id (plant 1000, company code 1000) and are another stream's.
RAMP_FIELDS = {"cost_centers": "SAP_COST_CENTER", "company_codes": "SAP_COMPANY_CODE", "plants": "SAP_PLANT",
               "departments": "SAP_DEPARTMENT"}


@dataclass
class World:
    handles: dict[str, SandboxHandle]
    env: Env
    rt: Any
    errors: list[str] = field(default_factory=list)  # runs that failed under the fault (recovered after)

    @property
    def ramp(self) -> Any:
        return self.handles["ramp"].state

    @property
    def ecc(self) -> Any:
        return self.handles["sap_ecc"].state


@dataclass
class Base:
    """What the cases share: the SAP sandbox (read by the master-data flow; each bills case posts
    its own bills) and a working directory whose database is migrated and holds the secrets."""

    ecc: SandboxHandle
    template: Path


PLACEHOLDER_RAMP = "http://127.0.0.1:9"


@contextmanager
def base(tmp: Path, *, vendors: int = 30) -> Iterator[Base]:
    handles = start_sandboxes(vendors=vendors, systems=("sap_ecc",))
    try:
        # One page per stream and quick queue polls: the faults land on the first writes, and a
        # case costs its syncs, not the engine's waits.
        (tmp / "template").mkdir()
        env = make_env(tmp / "template", handles["sap_ecc"].url, PLACEHOLDER_RAMP, options={"page_size": 100})
        # The Ramp connection's webhook intake is configured (the bills' webhook cases serve it).
        env.config.write_text(with_ramp_webhooks(env.config.read_text()).replace("queue_polling_interval: 0.2",
                                                                                 "queue_polling_interval: 0.02"))
        yield Base(handles["sap_ecc"], env.workdir)
    finally:
        for h in handles.values():
            h.stop()


@contextmanager
def bills_world(b: Base, tmp: Path) -> Iterator[World]:
    """One world for every bills case (each adds bills of its own): master data synced once."""
    with world(b, tmp) as w:
        sync(w, MASTER_FLOW)
        assert not w.errors, w.errors
        yield w


@contextmanager
def case(b: Base, tmp: Path, *, vendors: int = 30) -> Iterator[tuple[SandboxHandle, Env]]:
    """A case's fresh Ramp sandbox and a copy of the base's working directory (a fresh database)
    pointed at it. SAP's faults are reset after."""
    import shutil

    ramp = start_sandboxes(vendors=vendors, systems=("ramp",))["ramp"]
    try:
        work = tmp / "case"
        shutil.copytree(b.template, work)
        config = work / "ml-connector.yaml"
        config.write_text(config.read_text().replace(PLACEHOLDER_RAMP, ramp.url))
        yield ramp, Env(work, config, b.ecc.url, ramp.url, dict(os.environ))
    finally:
        ramp.stop()
        b.ecc.state.faults.reset()


@contextmanager
def world(b: Base, tmp: Path, *, vendors: int = 30) -> Iterator[World]:
    """A case's world (`case`), the engine launched in this process."""
    from ml_connector.core import engine

    with case(b, tmp, vendors=vendors) as (ramp, env), runtime(env) as rt:
        try:
            assert engine.connect(rt, role="sync") == "executor"
            yield World({"sap_ecc": b.ecc, "ramp": ramp}, env, rt)
        finally:
            engine.shutdown()


@contextmanager
def runtime(env: Env) -> Iterator[Any]:
    """The environment's runtime in this process: its database, vault and connections (no engine)."""
    from ml_connector.config import load_config
    from ml_connector.core.runtime import Runtime

    rt = Runtime(load_config(env.config), env.config)
    try:
        yield rt
    finally:
        rt.close()


def sync(w: World, flow: str, streams: tuple[str, ...] = ()) -> None:
    """Each stream of `flow` (or `streams`), one run after another; a run the fault made fail is
    noted, not raised (`recover` follows, as an operator's next sync and `replay --all` would)."""
    from ml_connector.core import engine

    for stream in streams or w.rt.config.flows[flow].streams:
        run_id = engine.start_sync(flow, stream)
        try:
            engine.wait(run_id, timeout=180, poll=0.05)
        except RuntimeError as exc:
            w.errors.append(f"{stream}: {exc}")


def recover(w: World, flow: str, reset: Callable[[], Any] | None = None, streams: tuple[str, ...] = ()) -> None:
    """Faults off (`reset`; default: the Ramp and SAP sandboxes'); where a run failed or writes wait
    for an operator: the next sync, then `replay --all` of what still waits."""
    from ml_connector.core import engine, outbox

    if reset is not None:
        reset()
    else:
        w.ramp.faults = []
        w.ramp.token_lifetime, w.ramp.latency = 864000.0, 0.0
        w.ecc.faults.reset()
        w.ecc.fi.faults.update(reset=True)
    with w.rt.db.session() as s:
        waiting = bool(outbox.failures(s, flow=flow, limit=1))
    if w.errors or waiting:
        sync(w, flow, streams)
    with w.rt.db.session() as s:
        ids = [r.id for r in outbox.failures(s, flow=flow)]
    if ids:
        engine.replay(ids)


def audit_creates(w: World, flow: str, stream: str) -> Counter[str]:
    """`record.create ok` audit rows per source record (a record recorded twice is a duplicate too)."""
    from ml_connector.core.models import AuditRow

    with w.rt.db.session() as s:
        rows = s.execute(select(AuditRow.source, func.count()).where(
            AuditRow.flow == flow, AuditRow.stream == stream, AuditRow.event == "record.create",
            AuditRow.outcome == "ok").group_by(AuditRow.source))
        return Counter({str(src): int(n) for src, n in rows})


def open_entries(w: World, flow: str, stream: str) -> int:
    """Writes not done: failed, in doubt or never sent (after recovery, each one is a loss)."""
    from ml_connector.core.models import OutboxRow

    with w.rt.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(OutboxRow).where(
            OutboxRow.flow == flow, OutboxRow.stream == stream,
            OutboxRow.state.in_(("pending", "in_flight", "uncertain", "failed")))) or 0)


def ledger_active(w: World, flow: str, stream: str) -> set[str]:
    """The source records the engine holds as active in the target."""
    from ml_connector.core.models import RecordRow

    with w.rt.db.session() as s:
        return set(s.scalars(select(RecordRow.source_key).where(
            RecordRow.flow == flow, RecordRow.stream == stream, RecordRow.active.is_(True))))


def master_figures(w: World, stream: str) -> tuple[int, int]:
    """(duplicates, losses) of a master-data stream in Ramp. Duplicates: records of one remote id
    beyond the first, and creates recorded more than once. Losses: writes not done, records the
    ledger holds active that Ramp lacks or holds inactive and, for vendors, every active SAP vendor
    Ramp lacks or holds with another name (SAP is the reference there)."""
    name, key = RAMP_RECORDS[stream]
    held = ramp_state(w.env.ramp_url, name)
    if stream in RAMP_FIELDS:
        fields = {f["ramp_id"] for f in ramp_state(w.env.ramp_url, "fields") if f["id"] == RAMP_FIELDS[stream]}
        held = [r for r in held if r.get("field_id") in fields]
    ids = Counter(str(r[key]) for r in held)
    duplicates = sum(n - 1 for n in ids.values()) + sum(n - 1 for n in audit_creates(w, MASTER_FLOW, stream).values())
    active = {str(r[key]): r for r in held if r.get("is_active", True)}
    losses = open_entries(w, MASTER_FLOW, stream)
    losses += len(ledger_active(w, MASTER_FLOW, stream) - set(active))
    if stream == "vendors":
        want = {k: v["name"] for k, v in in_scope_vendors(w.ecc).items() if v["active"]}
        losses += sum(1 for k, n in want.items() if k not in active or active[k].get("name") != n)
    return duplicates, losses


def add_bills(w: World, case: str, n: int = 3) -> list[str]:
    """`n` approved bills of postable vendors (master data must be in Ramp: sync MASTER_FLOW first)."""
    return [add_bill(w.env, postable_vendor(w.handles, i),
                     [{"amount": f"{100 + i}.00", "memo": f"fault matrix {case} {i}", "gl_account": "0000600000",
                       "cost_center": "0000001000"}], invoice_number=f"FM-{case[:8]}-{i}")["id"] for i in range(n)]


def bill_figures(w: World, bills: list[str]) -> tuple[int, int]:
    """(duplicates, losses) of bills: SAP documents per bill beyond one; bills without a document,
    or not reported to Ramp as synced, and writes not done."""
    docs = {b: len(sap_documents(w.handles, b)) for b in bills}
    duplicates = sum(max(n - 1, 0) for n in docs.values())
    losses = sum(1 for b in bills if docs[b] == 0 or ramp_bill(w.env, b)["sync_status"] != "BILL_SYNCED")
    return duplicates, losses + open_entries(w, BILLS_FLOW, "bills")


@dataclass(frozen=True)
class Fault:
    arm: Callable[[World], Any]
    hit: Callable[[World], bool]  # the fault happened (a case whose fault never struck proves nothing)


def _ramp_faults(n: int, kind: str, path: str, method: str | None = "POST") -> Fault:
    return Fault(lambda w: w.ramp.fail_next(n, kind, path=path, method=method),
                 lambda w: int(w.ramp.faults_injected) >= n)


def _sap_faults(n: int, kind: str) -> Fault:
    return Fault(lambda w: w.ecc.faults.update(fail_next=n, fail_kind=kind),
                 lambda w: w.ecc.faults.fail_next == 0)


def _expire_ramp_tokens(w: World) -> None:
    """The token the engine holds is expired now, the next ones live half a second: new ones mid-run."""
    w.ramp.tokens_issued = 0
    w.ramp.expire_tokens_now()
    _short_tokens(w)


def _short_tokens(w: World) -> None:
    w.ramp.token_lifetime, w.ramp.latency = 0.5, 0.02  # tokens die mid-run; the client gets new ones


#: Faults on the SAP → Ramp writes (Ramp's uploads), armed on a fresh world before the first sync.
MASTER_FAULTS: dict[str, Fault] = {
    # Without Retry-After the client waits 1 s, then 2 s: two 429s in a row cost 3 s.
    "429 storm": _ramp_faults(2, "429", UPLOADS),
    "5xx": _ramp_faults(1, "503", UPLOADS),
    "dropped connection": _ramp_faults(2, "drop", UPLOADS),
    "timeout after commit": _ramp_faults(3, "timeout_after_commit", UPLOADS),
    "token expiry": Fault(_short_tokens, lambda w: int(w.ramp.tokens_issued) >= 2),
}

#: Faults on the Ramp → SAP writes (SAP postings, and the report of each posting back to Ramp).
SYNCS = "/developer/v1/accounting/syncs"
BILL_FAULTS: dict[str, Fault] = {
    "SAP 5xx": _sap_faults(2, "system_failure"),
    "SAP dropped connection": _sap_faults(1, "drop"),
    "SAP session expired": _sap_faults(1, "logon"),
    "Ramp timeout after commit (report)": _ramp_faults(1, "timeout_after_commit", SYNCS),
    "Ramp 429 storm (report)": _ramp_faults(2, "429", SYNCS),
    "SAP timeout after commit": Fault(lambda w: w.ecc.fi.faults.update(fail_after_commit=1,
                                                                        fail_after_commit_mode="system_failure"),
                                      lambda w: w.ecc.fi.faults.fail_after_commit == 0),
    "Ramp 429 storm (bill reads)": _ramp_faults(3, "429", "/developer/v1/bills", "GET"),
    "Ramp token expired mid-run": Fault(lambda w: _expire_ramp_tokens(w), lambda w: int(w.ramp.tokens_issued) >= 1),
}

#: Faults on the status back to SAP (paid: cleared, reported to Ramp; rejected: payment block).
STATUS_FAULTS: dict[str, Fault] = {k: BILL_FAULTS[k] for k in (
    "SAP 5xx", "SAP timeout after commit", "Ramp timeout after commit (report)", "Ramp 429 storm (report)",
    "Ramp token expired mid-run")}


@contextmanager
def crash_bills_world(b: Base, tmp: Path) -> Iterator[World]:
    """A bills world for crash cases: master data synced into a fresh Ramp sandbox by a sync process
    (the engine never runs in this process here: the crash cases' processes are this database's workers)."""
    from tests.support.crashes import cli

    with case(b, tmp) as (ramp, env), runtime(env) as rt:
        assert cli(env, "sync", MASTER_FLOW) == 0
        yield World({"sap_ecc": b.ecc, "ramp": ramp}, env, rt)


def paid_and_rejected(w: World, tag: str, post: Callable[[], Any] | None = None) -> tuple[str, str, str]:
    """Two bills posted in SAP (`post`; default: by a sync process), then one paid and one rejected
    in Ramp: (paid bill, rejected bill, the payment's reference)."""
    from tests.support.bills import pay_bill, reject_bill
    from tests.support.crashes import cli

    paid, rejected = add_bills(w, tag, 2)
    if post is None:
        cli(w.env, "sync", BILLS_FLOW, "--stream", "bills")
    else:
        post()
    assert bill_figures(w, [paid, rejected]) == (0, 0)
    reference = f"FM-PAY-{tag}"
    pay_bill(w.env, paid, payment_date="2025-07-01", reference=reference)
    reject_bill(w.env, rejected)
    return paid, rejected, reference


def paid_figures(w: World, paid: str, reference: str) -> tuple[int, int]:
    """(duplicates, losses) of a paid bill: SAP documents beyond one, payment documents beyond one;
    no invoice, the invoice still open or cleared by no payment, the payment not reported to Ramp."""
    from tests.support.bills import vendor_items

    ecc = w.ecc
    payments = [r for r in ecc.data.rows("BKPF", ecc.client) if r.get("XBLNR") == reference]
    docs = sap_documents(w.handles, paid)
    duplicates = max(len(docs) - 1, 0) + max(len(payments) - 1, 0)
    if not docs:
        return duplicates, 1
    items = vendor_items(w.handles, docs[0])
    cleared_by = {r["AUGBL"] for r in items["cleared"]}
    losses = int(bool(items["open"]) or not payments or cleared_by != {payments[0]["BELNR"]})
    return duplicates, losses + int(ramp_bill(w.env, paid)["sync_status"] != "BILL_AND_PAYMENT_SYNCED")


def bill_status_figures(w: World, paid: str, rejected: str, reference: str) -> tuple[int, int]:
    """(duplicates, losses) of the status back to SAP: those of the paid bill (`paid_figures`), the
    rejected bill's SAP documents beyond one; its invoice not blocked for payment; writes not done."""
    from tests.support.bills import vendor_items

    duplicates, losses = paid_figures(w, paid, reference)
    docs = sap_documents(w.handles, rejected)
    duplicates += max(len(docs) - 1, 0)
    blocks = {r["ZLSPR"] for r in vendor_items(w.handles, docs[0])["open"]} if docs else set()
    return duplicates, losses + int(blocks != {"A"}) + open_entries(w, BILLS_FLOW, "bill_status")


@dataclass
class Intake:
    """The control plane's Ramp webhook intake (the real router) on a world's runtime, on loopback."""

    w: World
    port: int
    url: str
    server: Any = None

    def start(self) -> None:
        from fastapi import FastAPI

        from ml_connector.core.servers import serve_in_thread
        from ml_connector.systems.ramp.webhooks import router

        app = FastAPI()
        app.include_router(router(self.w.rt, "ramp", self.w.rt.config.connections["ramp"].webhooks))
        self.server = serve_in_thread(app, name="ramp-webhooks", port=self.port)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def secret(self) -> str:
        return str(next(s["secret"] for s in self.w.ramp.webhooks.values() if s["endpoint_url"] == self.url))

    def deliveries(self, bill: str) -> list[dict[str, Any]]:
        """Ramp's deliveries of events about `bill` to this intake, oldest first."""
        with self.w.ramp.lock:
            subs = {i for i, s in self.w.ramp.webhooks.items() if s["endpoint_url"] == self.url}
            return [dict(d) for d in self.w.ramp.webhook_deliveries.values()
                    if d["webhook_id"] in subs and bill in d["body"]]

    def deliver(self, delivery: dict[str, Any]) -> Any:
        """What Ramp's sender does: POST the event's raw body, signed with the subscription's secret."""
        import httpx

        from ml_connector.systems.ramp.webhooks import SIGNATURE_HEADER, signature

        raw = str(delivery["body"]).encode()
        return httpx.post(self.url, content=raw, timeout=30,
                          headers={SIGNATURE_HEADER: signature(self.secret(), raw), "Content-Type": "application/json"})


@contextmanager
def webhook_intake(w: World) -> Iterator[Intake]:
    """An intake subscribed in the world's Ramp sandbox (the verification answered: active), Ramp's
    sender trying each event once (a failed delivery is dropped, not retried)."""
    from ml_connector.core.servers import free_port
    from ml_connector.systems.ramp.webhooks import subscribe
    from tests.support.waiting import wait_until

    port = free_port()
    intake = Intake(w, port, f"http://127.0.0.1:{port}/webhooks/ramp")
    intake.start()
    saved = w.ramp.webhook_max_attempts
    try:
        w.ramp.webhook_max_attempts = 1
        sub = subscribe(w.rt, "ramp", intake.url)
        wait_until(lambda: w.ramp.webhooks[sub["id"]]["status"] == "active", timeout=30, interval=0.05)
        yield intake
    finally:
        intake.stop()
        with w.ramp.lock:
            for s in w.ramp.webhooks.values():
                if s["endpoint_url"] == intake.url:
                    s["status"] = "disabled"  # later cases' events go nowhere
        w.ramp.webhook_max_attempts = saved


def settled(w: World, timeout: float = 90) -> None:
    """Wait until no sync run is queued or running (what webhooks started has ended)."""
    from ml_connector.core.models import RunRow
    from tests.support.waiting import wait_until

    def idle() -> bool:
        from dbos import DBOS

        with w.rt.db.read() as s:
            running = s.scalar(select(func.count()).select_from(RunRow).where(RunRow.status == "running"))
        queued = [h for h in DBOS.list_workflows(status=["PENDING", "ENQUEUED"]) if h.name == "mlc.sync"]
        return not running and not queued

    wait_until(idle, timeout=timeout, interval=0.1)
