"""SAP Business One: journal entries and the sandbox's admin endpoints."""

from __future__ import annotations

from typing import Any

import httpx

from ml_connector.sandbox import SandboxHandle


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
