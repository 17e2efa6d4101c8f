"""SAP ECC postings against the sandbox: clients, posters, source documents, fault arming."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

import httpx

from ml_connector.core.servers import ServerHandle
from ml_connector.systems.sap_ecc.client import SoapRfcClient
from ml_connector.systems.sap_ecc.errors import CommunicationError
from ml_connector.systems.sap_ecc.posting import (
    DocumentPoster,
    GLLine,
    GLPosting,
    MMInvoice,
    MMInvoiceItem,
    VendorInvoice,
    document_xblnr,
)
from ml_connector.systems.sap_ecc.sandbox import app as sandbox_app
from ml_connector.systems.sap_ecc.sandbox import (
    ddic,
    fi,
)
from ml_connector.systems.sap_ecc.sandbox.app import DEMO_PASSWORD, DEMO_USER, EccSandbox

USER, PASSWORD = sandbox_app.DEMO_USER, sandbox_app.DEMO_PASSWORD
CLIENT = "100"
WRAPPER = "Z_MLC_ACC_DOCUMENT_POST"
MM_WRAPPER = "Z_MLC_INCOMINGINVOICE_CREATE"


def client_for(server: tuple[Any, ServerHandle], **kw: Any) -> SoapRfcClient:
    _, handle = server
    opts: dict[str, Any] = {"sleep": lambda s: None, "calls_per_second": 50, "timeout": 10.0}
    opts.update(kw)
    return SoapRfcClient(opts.pop("url", handle.url), CLIENT, USER, PASSWORD, **opts)


def poster_for(caller: Any, **kw: Any) -> DocumentPoster:
    return DocumentPoster(caller, sleep=lambda s: None, settle_seconds=0.0, **kw)


def vendor(state: Any, bukrs: str = "1000") -> str:
    for r in state.data.rows("LFB1", CLIENT):
        lfa1 = state.data.get("LFA1", (r["LIFNR"],), CLIENT) or {}
        if r["BUKRS"] == bukrs and not r.get("SPERR") and not r.get("LOEVM") and not lfa1.get("SPERR"):
            return str(r["LIFNR"])
    raise AssertionError("no usable vendor")


def invoice(state: Any, source_id: str | None = None, **kw: Any) -> VendorInvoice:
    opts: dict[str, Any] = {
        "source_id": source_id or f"ramp-bill-{uuid.uuid4()}", "company_code": "1000",
        "vendor": vendor(state).lstrip("0"), "currency": "USD", "doc_date": date(2025, 3, 3),
        "posting_date": date(2025, 3, 5), "header_text": "Ramp bill",
        "lines": (GLLine("620000", Decimal("600.00"), cost_center="1300", text="SaaS licences"),
                  GLLine("610000", Decimal("200.00"), cost_center="1100", text="Travel")),
    }
    opts.update(kw)
    return VendorInvoice(**opts)


def live_docs(state: Any, doc: Any) -> list[dict[str, str]]:
    """BKPF rows in the emulator for the document's XBLNR that are not reversed."""
    rows = fi.documents_by_xblnr(state.data, doc.company_code, document_xblnr(doc), CLIENT)
    return [r for r in rows if not r.get("STBLG")]


def all_docs(state: Any, doc: Any) -> list[dict[str, str]]:
    return fi.documents_by_xblnr(state.data, doc.company_code, document_xblnr(doc), CLIENT)


class Arming:
    """A caller that injects a fault right before the posting wrapper is called (once)."""

    def __init__(self, inner: Any, arm: Callable[[], Callable[[], None] | None], target: str = WRAPPER) -> None:
        self.inner, self.arm, self.target = inner, arm, target
        self.armed = True
        self.calls: list[str] = []

    def call(self, fm: str, params: dict[str, Any] | None = None, *, tables: Sequence[str] = ()) -> dict[str, Any]:
        self.calls.append(fm)
        disarm = None
        if fm == self.target and self.armed:
            self.armed = False
            disarm = self.arm()
        try:
            return self.inner.call(fm, params, tables=tables)
        finally:
            if disarm:
                disarm()


class RefusingTransport(httpx.BaseTransport):
    """Refuses the first `n` connections to the wrapper (the request never reaches SAP)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.n > 0 and WRAPPER.encode() in request.read():
            self.n -= 1
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        return self.inner.handle_request(request)


def fault_arm(sandbox: Any, **kw: Any) -> Callable[[], Callable[[], None] | None]:
    def arm() -> None:
        sandbox.faults.update(**kw)
    return arm


def cap_arm(sandbox: Any) -> Callable[[], Callable[[], None] | None]:
    def arm() -> Callable[[], None]:
        sandbox.faults.update(max_concurrent=1)
        sandbox.stats.in_flight += 1  # another call holds the only work process

        def disarm() -> None:
            sandbox.stats.in_flight -= 1
            sandbox.faults.update(max_concurrent=None)
        return disarm
    return arm


def document(state: Any, kind: str, source_id: str | None = None) -> Any:
    """A fresh source record of `kind` (FI vendor invoice, credit memo, G/L posting, MM invoice)."""
    sid = source_id or f"{kind}-{uuid.uuid4()}"
    if kind == "vendor_invoice":
        return invoice(state, sid)
    if kind == "credit_memo":
        return invoice(state, sid, credit_memo=True)
    if kind == "gl_posting":
        return GLPosting(source_id=sid, company_code="2000", currency="EUR", doc_date=date(2025, 4, 1),
                         posting_date=date(2025, 4, 1), lines=(GLLine("640000", Decimal("1000"), cost_center="2000"),
                                                               GLLine("113100", Decimal("-1000"))))
    po = purchase_order(state)
    ebeln, ebelp, lifnr = po if po else ("4500000001", "00010", vendor(state))
    return MMInvoice(source_id=sid, company_code="1000", currency="USD", doc_date=date(2025, 6, 2),
                     posting_date=date(2025, 6, 3), invoicing_party=lifnr,
                     items=(MMInvoiceItem(ebeln, int(ebelp), Decimal("116.00"), Decimal(2), "EA"),))


def wrapper_of(kind: str) -> str:
    return MM_WRAPPER if kind == "mm_invoice" else WRAPPER


def purchase_order(state: Any) -> tuple[str, str, str] | None:
    if ddic.table("EKPO") is None or ddic.table("EKKO") is None:
        return None
    for p in state.data.rows("EKPO", CLIENT):
        head = state.data.get("EKKO", (p["EBELN"],), CLIENT) or {}
        lifnr = head.get("LIFNR", "")
        bukrs = head.get("BUKRS", "")
        if bukrs == "1000" and lifnr and state.data.get("LFB1", (lifnr, bukrs), CLIENT):
            return p["EBELN"], p["EBELP"], lifnr
    return None


def fi_client(handle: ServerHandle) -> SoapRfcClient:
    return SoapRfcClient(handle.url, CLIENT, DEMO_USER, DEMO_PASSWORD, sleep=lambda s: None,
                         calls_per_second=50, timeout=10.0)


def lookup_poster(caller: Any) -> DocumentPoster:
    return DocumentPoster(caller, lookup_function="Z_MLC_DOCUMENT_BY_XBLNR", sleep=lambda s: None,
                          settle_seconds=0.0)


def posting_vendor(state: EccSandbox) -> str:
    for r in state.data.rows("LFB1", CLIENT):
        lfa1 = state.data.get("LFA1", (r["LIFNR"],), CLIENT) or {}
        if r["BUKRS"] == "1000" and not r.get("SPERR") and not r.get("LOEVM") and not lfa1.get("SPERR"):
            return str(r["LIFNR"]).lstrip("0")
    raise AssertionError("no usable vendor")


def simple_invoice(state: EccSandbox, source_id: str) -> VendorInvoice:
    return VendorInvoice(source_id=source_id, company_code="1000", vendor=posting_vendor(state), currency="USD",
                         doc_date=date(2025, 3, 3), posting_date=date(2025, 3, 5), header_text="Ramp bill",
                         lines=(GLLine("620000", Decimal("600.00"), cost_center="1300", text="SaaS"),
                                GLLine("610000", Decimal("200.00"), cost_center="1100", text="Travel")))


def live_documents(state: EccSandbox, doc: VendorInvoice) -> list[dict[str, str]]:
    return [r for r in fi.documents_by_xblnr(state.data, "1000", document_xblnr(doc), CLIENT) if not r.get("STBLG")]


def ret(type_: str, id_: str, number: str, message: str, *v: str, parameter: str = "", row: str = "0",
        field: str = "") -> dict[str, str]:
    vs = [*v, "", "", "", ""][:4]
    return {"TYPE": type_, "ID": id_, "NUMBER": number, "MESSAGE": message, "LOG_NO": "", "LOG_MSG_NO": "000000",
            "MESSAGE_V1": vs[0], "MESSAGE_V2": vs[1], "MESSAGE_V3": vs[2], "MESSAGE_V4": vs[3],
            "PARAMETER": parameter, "ROW": row, "FIELD": field, "SYSTEM": "0M4SMVI"}


def inv(**kw: Any) -> VendorInvoice:
    opts: dict[str, Any] = dict(source_id="ramp:bill:42", company_code="1410", vendor="1000000", currency="USD",
                                doc_date=date(2024, 10, 1), posting_date=date(2024, 10, 2),
                                lines=(GLLine("600000", Decimal("500.00"), cost_center="1000"),
                                       GLLine("610000", Decimal("300"), cost_center="1000")))
    opts.update(kw)
    return VendorInvoice(**opts)


class FakeCaller:
    """Scripted responses per FM; a BKPF lookup answers from `posted`."""

    def __init__(self, post_outcomes: list[Any], *, lookup_fails: int = 0) -> None:
        self.post_outcomes = post_outcomes
        self.posted: list[dict[str, str]] = []
        self.calls: list[str] = []
        self.lookup_fails = lookup_fails

    def call(self, fm: str, params: dict[str, Any] | None = None, *, tables: Sequence[str] = ()) -> dict[str, Any]:
        self.calls.append(fm)
        if fm == "Z_MLC_DOCUMENT_BY_XBLNR":
            if self.lookup_fails:
                self.lookup_fails -= 1
                raise CommunicationError("down", key="RFC_COMMUNICATION_FAILURE")
            return {"ET_DOCUMENTS": list(self.posted)}
        outcome = self.post_outcomes.pop(0)
        if outcome == "commit_then_timeout":
            self.posted.append({"BUKRS": "1410", "BELNR": "0100000008", "GJAHR": "2024", "XBLNR": "x"})
            raise CommunicationError("read timeout", uncertain=True)
        if isinstance(outcome, Exception):
            raise outcome
        if outcome == "ok":
            self.posted.append({"BUKRS": "1410", "BELNR": "0100000009", "GJAHR": "2024", "XBLNR": "x"})
            return {"OBJ_TYPE": "BKPFF", "OBJ_KEY": "010000000914102024", "RETURN": [
                ret("S", "RW", "605", "ok", "BKPFF", "010000000914102024")]}
        return {"OBJ_KEY": "$", "RETURN": outcome}


def poster(caller: FakeCaller, **kw: Any) -> DocumentPoster:
    return DocumentPoster(caller, lookup_function="Z_MLC_DOCUMENT_BY_XBLNR", sleep=lambda s: None, **kw)


class FakeMMSystem:
    """An MM invoice's state in a scripted SAP: RBKP and BKPF rows served to the poster's table reader,
    and Z_MLC_INCOMINGINVOICE_CANCEL answering from `cancel_outcomes` ('ok', 'commit_then_timeout',
    'timeout' before anything happened, or RETURN rows)."""

    def __init__(self, cancel_outcomes: list[Any], rbkp: list[dict[str, str]] | None = None,
                 bkpf: list[dict[str, str]] | None = None) -> None:
        self.cancel_outcomes = cancel_outcomes
        self.tables: dict[str, list[dict[str, str]]] = {
            "RBKP": rbkp if rbkp is not None else [{"BELNR": "5105600001", "GJAHR": "2025", "BUKRS": "1000",
                                                    "XBLNR": "RMPX", "LIFNR": "0000100001", "STBLG": ""}],
            "BKPF": bkpf or []}
        self.calls: list[str] = []

    def call(self, fm: str, params: dict[str, Any] | None = None, *, tables: Sequence[str] = ()) -> dict[str, Any]:
        self.calls.append(fm)
        assert fm == "Z_MLC_INCOMINGINVOICE_CANCEL", fm
        outcome = self.cancel_outcomes.pop(0)
        if outcome == "timeout":
            raise CommunicationError("read timeout", uncertain=True)
        if outcome in ("ok", "commit_then_timeout"):
            self.tables["RBKP"][0].update(STBLG="5105600002", STJAH="2025")
            if outcome == "commit_then_timeout":
                raise CommunicationError("read timeout", uncertain=True)
            return {"E_STBLG": "5105600002", "E_STJAH": "2025", "RETURN": [
                ret("S", "ZMLC", "011", "reversed", "5105600001", "2025", "5105600002", "2025")]}
        return {"E_STBLG": "", "E_STJAH": "0000", "RETURN": outcome}

    # the poster's table reader (RFC_READ_TABLE): the rows whose fields equal the WHERE clause's `F = 'v'`
    def read(self, table: str, fields: Sequence[str] | None = None, *, key_fields: Sequence[str],
             where: str = "", page_size: int = 0, **kw: Any) -> Any:
        import re

        from ml_connector.systems.sap_ecc.table_reader import Page

        wanted = re.findall(r"(\w+) = '([^']*)'", where)
        yield Page(rows=[dict(r) for r in self.tables[table] if all(r.get(k, v) == v for k, v in wanted)],
                   last_key=())


def mm_poster(system: FakeMMSystem) -> DocumentPoster:
    return DocumentPoster(system, reader=system, sleep=lambda s: None, settle_seconds=0.0)  # type: ignore[arg-type]
