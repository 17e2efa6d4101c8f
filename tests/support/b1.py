"""SAP Business One: journal entries and the sandbox's admin endpoints."""

from __future__ import annotations

from collections.abc import Mapping
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
