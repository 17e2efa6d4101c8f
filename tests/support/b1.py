"""SAP Business One: journal entries and the sandbox's admin endpoints."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx

from ml_connector.sandbox import SandboxHandle
from ml_connector.systems.sap_b1.client import (
    ServiceLayerApi,
    SlResponse,
)


def concur_journal_entry(amount: float) -> dict[str, Any]:
    return {"ReferenceDate": "2026-03-31", "Memo": "Concur report 77",
            "JournalEntryLines": [{"AccountCode": "6020", "Debit": amount, "CostingCode": "CC02"},
                                  {"ShortName": "E00002", "Credit": amount}]}


def b1_stats(h: SandboxHandle) -> dict[str, Any]:
    return dict(httpx.get(h.info["admin"] + "/stats").json())


def b1_faults(h: SandboxHandle, **kw: Any) -> None:
    httpx.post(h.info["admin"] + "/faults", json=kw).raise_for_status()


def login_body(h: SandboxHandle) -> dict[str, str]:
    return {"CompanyDB": h.info["company_db"], "UserName": h.info["user"], "Password": h.info["password"]}


def je(external: str | None = None, amount: float = 120.5, **line: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"ReferenceDate": "2026-03-31", "Memo": "Concur report",
                            "JournalEntryLines": [{"AccountCode": "6030", "Debit": amount, "CostingCode": "CC01",
                                                   "ProjectCode": "P001", **line},
                                                  {"ShortName": "E00001", "Credit": amount}]}
    if external:
        body["Reference3"] = external
    return body


def request_params(method: str, path: str, **kw: Any) -> dict[str, Any]:
    return {"method": method, "path": path, "query": {}, "body": None, "headers": {}, **kw}


class ScriptedServiceLayer(ServiceLayerApi):
    """Answers from a script keyed by the exact (path, query) asked; records every request."""

    def __init__(self, answers: dict[str, dict[str, Any]], root: str = "/b1s/v1") -> None:
        self.answers = answers
        self.asked: list[tuple[str, dict[str, Any] | None, dict[str, str] | None]] = []
        self.root = root

    def service_root(self) -> str:
        return "https://b1:50000" + self.root

    def request(self, method: str, path: str, *, query: Mapping[str, Any] | None = None, body: Any = None,
                headers: Mapping[str, str] | None = None) -> SlResponse:
        self.asked.append((path, dict(query) if query else None, dict(headers) if headers else None))
        return SlResponse(200, self.answers[path])


# One "run" in its own process: a Service Layer client whose session is kept in the token store of
# the database `url` (the vault key in `data`), pinged once and closed (kept, not logged out).
SESSION_RUN = """
import sys
from pathlib import Path
from ml_connector.core.db import Database
from ml_connector.core.token_store import DbTokenStore
from ml_connector.core.vault import MasterKey, Vault
from ml_connector.systems.sap_b1.client import ServiceLayerClient
from ml_connector.systems.sap_b1.sessions import TokenSessionStore

url, data, base, company, user, password = sys.argv[1:7]
db = Database(url)
db.migrate()
store = TokenSessionStore(DbTokenStore(db, Vault(db, MasterKey.load(Path(data)))), "sap_b1",
                          base.rstrip("/") + "/b1s/v1", company, user)
client = ServiceLayerClient(base, company, user, password, retry_base=0, timeout=30, sessions=store)
client.ping()
client.close()
kept = store.load()
print("SESSION", kept.cookies["B1SESSION"] if kept else "-")
db.dispose()
"""


def session_run(database_url: str, data_dir: str, h: SandboxHandle) -> str:
    """SESSION_RUN in a child process; the B1SESSION it left in the store."""
    import subprocess

    from tests.support.processes import PY

    i = h.info
    proc = subprocess.run([PY, "-c", SESSION_RUN, database_url, data_dir, i["base_url"], i["company_db"],
                           i["user"], i["password"]], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split("SESSION ", 1)[1].strip()


@contextmanager
def period_locked(state: Any, day: str, status: str = "ltLocked") -> Iterator[None]:
    """Administration > Posting Periods in the Business One sandbox: the period holding `day` has
    `status` meanwhile (ltLocked, ltPeriodClosing), unlocked after."""
    state.set_period_status(day, status)
    try:
        yield
    finally:
        state.set_period_status(day, "ltUnlocked")


@contextmanager
def master_changed(state: Any, entity_set: str, key: Any, **fields: Any) -> Iterator[None]:
    """A master record of the Business One sandbox changed meanwhile (e.g. an account frozen,
    `FrozenFor="tYES"`), or gone (`gone=True`); restored after."""
    gone = fields.pop("gone", False)
    rows = state.sets[entity_set].rows
    with state.lock:
        before = dict(rows[key])
        if gone:
            del rows[key]
        else:
            rows[key].update(fields)
    try:
        yield
    finally:
        with state.lock:
            rows[key] = before
