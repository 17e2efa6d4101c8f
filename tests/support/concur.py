"""SAP Concur → Business One: master data and documents for the mapping tests, the two sandboxes
and a configured environment for the flow's integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from ml_connector.demo_concur_b1 import FLOW as FLOW
from ml_connector.demo_concur_b1 import INVOICE_FLOW as INVOICE_FLOW
from ml_connector.demo_concur_b1 import pair_config, pair_secrets
from ml_connector.flows.concur_sap_b1 import MasterData
from ml_connector.sandbox import SandboxHandle, start_sandboxes


def master() -> MasterData:
    """A small Business One: two expense accounts, cost centres in dimensions 1 and 2, suppliers
    (two with the same name and two with the same tax id, for the ambiguity cases)."""
    return MasterData.build(
        accounts=["6010", "6020", "6030", "2000"],
        rules=[(1, "CC01"), (1, "CC02"), (1, "SPLIT12"), (2, "DEPT1")],
        vendors=[("V1", "Delta Air Lines, Inc.", "58-0218548"), ("V2", "Marriott International", ""),
                 ("V3", "Acme Print", ""), ("V4", "ACME PRINT LLC", ""),
                 ("V5", "North Star GmbH", "11-111"), ("V6", "North Star Services", "11 111")])


def no_mappings(table: str, value: str) -> str | None:
    return None


def mappings(**tables: dict[str, str]) -> Any:
    def get(table: str, value: str) -> str | None:
        return tables.get(table, {}).get(value)
    return get


def allocation(pct: str, account: str, cc: str | None = None, dept: str | None = None) -> dict[str, Any]:
    return {"ID": f"A-{account}-{cc}-{pct}", "Percentage": f"{float(pct):.8f}", "AccountCode1": account,
            "Custom1": {"Code": cc, "Value": cc} if cc else None,
            "Custom2": {"Code": dept, "Value": dept} if dept else None}


def entry(eid: str, vendor: str, amount: float, allocations: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    return {"ID": eid, "ExpenseTypeCode": "AIRFR", "ExpenseTypeName": "Airfare", "VendorDescription": vendor,
            "PostedAmount": amount, "TransactionDate": "2026-11-01", "IsPersonal": False,
            "Allocations": allocations, **kw}


def report(entries: list[dict[str, Any]], rid: str = "R1", currency: str = "USD") -> dict[str, Any]:
    return {"ID": rid, "Name": "Client visit", "CurrencyCode": currency, "OwnerLoginID": "ana@x.example",
            "ProcessingPaymentDate": "2026-11-05T10:00:00", "SubmitDate": "2026-11-04T10:00:00",
            "Entries": entries}


def payment_request(lines: list[tuple[str, str, str]], vendor: str = "Regus Business Centre",
                    code: str = "REGUS01", tax: str | None = None, shipping_amount: str = "0.00",
                    tax_amount: str = "0.00") -> dict[str, Any]:
    pr: dict[str, Any] = {
        "ID": "PR1", "InvoiceNumber": "INV-1", "InvoiceDate": "2026-11-01", "PaymentDueDate": "2026-12-01",
        "CurrencyCode": "USD", "ShippingAmount": shipping_amount, "TaxAmount": tax_amount,
        "VendorRemitAddress": {"Name": vendor}, "VendorRemitToIdentifier": {"VendorCode": code},
        "LineItems": {"LineItem": [{"LineItemId": f"L{n}", "Description": "Rent", "TotalPrice": amount,
                                    "ApprovedLineItemAmount": amount,
                                    "Allocations": {"Allocation": [{"Percentage": "100",
                                                                    "AllocationAccountCode": account,
                                                                    "Custom1": {"Code": cc}}]}}
                                   for n, (amount, account, cc) in enumerate(lines, start=1)]}}
    if tax:
        pr["Custom5"] = {"Value": tax}
    return pr


def sums(lines: list[dict[str, Any]], side: str) -> Decimal:
    return sum((Decimal(str(ln.get(side) or 0)) for ln in lines), Decimal(0))


# --------------------------------------------------------------------------- sandboxes and environment


@dataclass
class ConcurWorld:
    concur: SandboxHandle
    b1: SandboxHandle

    @property
    def c(self) -> dict[str, Any]:
        return self.concur.info

    def concur_admin(self, what: str, **kw: Any) -> dict[str, Any]:
        r = httpx.post(f"{self.c['admin']}/{what}", json=kw, timeout=10)
        r.raise_for_status()
        return dict(r.json())

    def b1_admin(self, what: str, **kw: Any) -> dict[str, Any]:
        r = httpx.post(f"{self.b1.info['admin']}/{what}", json=kw, timeout=10)
        r.raise_for_status()
        return dict(r.json())

    def concur_stats(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.c['admin']}/stats", timeout=10).json())

    def b1_stats(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.b1.info['admin']}/stats", timeout=10).json())

    def journal_entries(self) -> list[dict[str, Any]]:
        return list(httpx.get(f"{self.b1.info['admin']}/state/JournalEntries", timeout=10).json()["JournalEntries"])

    def report_entries(self) -> list[dict[str, Any]]:
        """The journal entries of expense reports (not payment requests) in the Business One sandbox."""
        return [je for je in self.journal_entries() if str(je.get("Reference3")).startswith("concur:report:")]

    def entries_for(self, source_key: str) -> list[dict[str, Any]]:
        return [je for je in self.journal_entries() if je.get("Reference3") == f"concur:{source_key}"]


@contextmanager
def concur_world(*, b1_login_seconds: float = 0.0) -> Iterator[ConcurWorld]:
    handles = start_sandboxes(systems=("concur", "sap_b1"))
    try:
        handles["sap_b1"].state.set_config(login_seconds=b1_login_seconds)
        yield ConcurWorld(handles["concur"], handles["sap_b1"])
    finally:
        for h in handles.values():
            h.stop()


def write_pair_config(workdir: Path, concur: dict[str, Any], b1: dict[str, Any], **kw: Any) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "ml-connector.yaml"
    path.write_text(pair_config(concur, b1, **kw), encoding="utf-8")
    return path


def pair_env(workdir: Path, world: ConcurWorld, **kw: Any) -> Any:
    """A working directory with the pair's configuration and its secrets stored; `.cli(...)` runs
    the CLI in a subprocess (tests.support.env.Env)."""
    import os

    from tests.support.env import Env, store_secrets
    from tests.support.processes import ROOT

    cfg = write_pair_config(workdir, world.c, world.b1.info, **kw)
    env = dict(os.environ)
    env["MLC_LOG_LEVEL"] = env.get("MLC_LOG_LEVEL", "WARNING")
    env["PYTHONPATH"] = str(ROOT / "src")
    env["COLUMNS"] = "250"
    env.pop("MLC_DATABASE_URL", None)
    e = Env(workdir, cfg, world.b1.url, world.concur.url, env)
    store_secrets(e, pair_secrets(world.c, world.b1.info))
    return e


def copy_report(world: ConcurWorld, from_id: str, new_id: str, *, vendor: str | None = None) -> str:
    """A new approved report in the Concur sandbox: a copy of `from_id` (entries, allocations);
    `vendor` replaces the vendor of its last entry."""
    st = world.concur.state
    with st.lock:
        st.copy_report(from_id, new_id)
        if vendor is not None:
            last = [e for e in st.entries.values() if e["ReportID"] == new_id][-1]
            last["VendorDescription"] = vendor
    return new_id


def add_supplier(world: ConcurWorld, card_code: str, name: str, tax_id: str | None = None) -> None:
    """A new supplier in the Business One sandbox (what an operator creates there)."""
    st = world.b1.state
    st.create(st.sets["BusinessPartners"], {"CardCode": card_code, "CardName": name, "CardType": "cSupplier",
                                            "FederalTaxID": tax_id})


def expected_totals(world: ConcurWorld, report_ids: list[str]) -> dict[tuple[str, str], Decimal]:
    """(account, cost centre) -> amount, from the Concur sandbox's reports, entries and allocations."""
    from ml_connector.flows.concur_sap_b1 import split

    st = world.concur.state
    out: dict[tuple[str, str], Decimal] = {}
    with st.lock:
        for e in st.entries.values():
            if e["ReportID"] not in report_ids:
                continue
            allocs = [a for a in st.allocations.values() if a["EntryID"] == e["ID"]]
            shares = split(Decimal(str(e["PostedAmount"])), [Decimal(a["Percentage"]) for a in allocs])
            for a, share in zip(allocs, shares, strict=True):
                k = (a["AccountCode1"], a["Custom1"]["Code"])
                out[k] = out.get(k, Decimal(0)) + share
    return out


def posted_totals(journal_entries: list[dict[str, Any]]) -> dict[tuple[str, str], Decimal]:
    """(account, cost centre) -> debit, from Business One's journal entry lines."""
    out: dict[tuple[str, str], Decimal] = {}
    for je in journal_entries:
        for ln in je["JournalEntryLines"]:
            if ln.get("Debit"):
                k = (ln["AccountCode"], ln.get("CostingCode") or "")
                out[k] = out.get(k, Decimal(0)) + Decimal(str(ln["Debit"]))
    return out


def stored_token(e: Any, connection: str = "concur") -> Any:
    """The token the CLI stored for `connection` (decrypted from the environment's database)."""
    from ml_connector.config import load_config
    from ml_connector.core.db import Database
    from ml_connector.core.token_store import DbTokenStore
    from ml_connector.core.vault import MasterKey, Vault

    cfg = load_config(e.config)
    config_dir = e.config.resolve().parent
    db = Database(cfg.database_url_resolved(config_dir))
    try:
        return DbTokenStore(db, Vault(db, MasterKey.load(cfg.data_dir_resolved(config_dir)))).load(connection)
    finally:
        db.dispose()


@contextmanager
def concur_client(info: dict[str, Any]) -> Iterator[Any]:
    """A ConcurClient on the sandbox (`sandbox --json` entry), tokens in memory."""
    from ml_connector.core.tokens import MemoryTokenStore
    from ml_connector.systems.concur.auth import ConcurCompanyAuth
    from ml_connector.systems.concur.client import ConcurClient

    auth = ConcurCompanyAuth(info["base_url"], info["client_id"], info["client_secret"],
                             company_uuid=info["company_uuid"], request_token=info["company_request_token"],
                             store=MemoryTokenStore(), key="probe")
    client = ConcurClient(info["base_url"], auth)
    try:
        yield client
    finally:
        client.close()


def source_context(connections: dict[str, Any]) -> Any:
    """A RunContext whose runtime hands out the given connections (to drive a Source by hand)."""
    from types import SimpleNamespace

    from ml_connector.core.flow import RunContext

    runtime = SimpleNamespace(connection=lambda name: connections[name])
    return RunContext(runtime=runtime, flow="probe", stream="probe", run_id="probe-run", mode="full")  # type: ignore[arg-type]


def read_all(source: Any, ctx: Any) -> list[list[str]]:
    """Every page of a Source, as the record keys of each page."""
    state = source.begin(ctx, {})
    pages: list[list[str]] = []
    while True:
        page = source.read_page(ctx, state)
        pages.append([k for k, _ in page.records])
        state = page.position
        if page.done:
            return pages


def post_foreign_journal_entry(world: ConcurWorld, reference3: str, amount: float, day: str) -> None:
    """A journal entry made in the Business One sandbox by hand, carrying a Concur external id."""
    st = world.b1.state
    st.create(st.sets["JournalEntries"], {
        "ReferenceDate": day, "Memo": "typed in by hand", "Reference3": reference3,
        "JournalEntryLines": [{"AccountCode": "6010", "Debit": amount, "CostingCode": "CC01"},
                              {"ShortName": "V20001", "Credit": amount}]})


#: What the Concur flow asks of Business One: the agent's allow-list for it (nothing else is served).
#: The last four serve the approval queue's check (systems/sap_b1/journal_check.py): posting periods,
#: and currencies and rates of foreign-currency entries (B1's actions are POSTs that write nothing).
FLOW_RESOURCES = ["JournalEntries", "ChartOfAccounts:read", "ProfitCenters:read", "DistributionRules:read",
                  "BusinessPartners:read", "CompanyService_GetPeriods", "CompanyService_GetFinancePeriods",
                  "Currencies:read", "SBOBobService_GetCurrencyRate"]


class ConcurAgentSite:
    """The pair with Business One behind a separate agent process: a control plane process (paced by
    the B1 company database), an agent (`ml-connector agent`) serving `sap_b1` with `FLOW_RESOURCES`
    and `limits`, and the flow's CLI working on the control plane's database (`engine.agent: remote`).
    The B1 password is only in the agent's vault."""

    def __init__(self, tmp: Path, world: ConcurWorld, limits: dict[str, int]) -> None:
        import os

        import yaml

        from tests.support.agents import AgentProc, ControlPlane
        from tests.support.env import Env, store_secrets
        from tests.support.processes import ROOT

        b1 = world.b1.info
        self.world = world
        conn = {"type": "sap_b1", "base_url": b1["base_url"], "company_db": b1["company_db"], "via": "agent",
                "auth": {"username": b1["user"], "password_secret": "sap_b1_password"}, "limits": limits}
        self.cp = ControlPlane(tmp / "cp", connections={"sap_b1": conn})
        self.cp.start()
        self.agent = AgentProc(tmp / "agent", self.cp.url, {"base_url": b1["base_url"], "client": "100",
                                                            "user": "unused"})
        try:
            cfg = yaml.safe_load(self.agent.config.read_text())
            cfg["systems"] = {"sap_b1": {"type": "sap_b1", "base_url": b1["base_url"], "company_db": b1["company_db"],
                                         "user": b1["user"], "password_secret": "sap_pw",
                                         "allow": {"resources": FLOW_RESOURCES}, "limits": limits}}
            self.agent.config.write_text(yaml.safe_dump(cfg), encoding="utf-8")
            self.agent.setup(self.cp.token(), self.cp.url, b1["password"])
            self.agent.start()
            work = tmp / "flow"
            config = write_pair_config(work, world.c, b1)
            data = yaml.safe_load(config.read_text())
            data["engine"].update({"agent": "remote", "agent_site": "plant1", "data_dir": str(self.cp.dir / "data")})
            config.write_text(yaml.safe_dump(data), encoding="utf-8")
            env = dict(os.environ, MLC_LOG_LEVEL="WARNING", PYTHONPATH=str(ROOT / "src"), COLUMNS="250")
            env.pop("MLC_DATABASE_URL", None)
            self.env = Env(work, config, world.b1.url, world.concur.url, env)
            secrets = pair_secrets(world.c, b1)
            secrets.pop("sap_b1_password")  # the control plane never has it
            store_secrets(self.env, secrets)
        except BaseException:
            self.close()
            raise

    def calls(self) -> list[tuple[str, str, str]]:
        """(system, function, state) of every call the control plane handed to the agents."""
        from sqlalchemy import select

        from ml_connector.core.db import Database
        from ml_connector.server.agents.models import AgentCallRow

        db = Database(self.cp.db_url)
        try:
            with db.session() as s:
                return [(r.system, r.function, r.state) for r in s.scalars(select(AgentCallRow))]
        finally:
            db.dispose()

    def b1_client(self) -> Any:
        """A Service Layer client over the remote agent channel, on the control plane's database."""
        from ml_connector.core.db import Database
        from ml_connector.server.agents.channel import RemoteAgentChannel
        from ml_connector.systems.sap_b1.client import ChannelServiceLayerClient

        self._db = getattr(self, "_db", None) or Database(self.cp.db_url)
        return ChannelServiceLayerClient(RemoteAgentChannel(self._db, "plant1", timeout=60), "sap_b1")

    def close(self) -> None:
        self.agent.kill()
        self.cp.kill()
        if getattr(self, "_db", None) is not None:
            self._db.dispose()
