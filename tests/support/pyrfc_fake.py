"""A fake pyrfc module (what the transport needs of SAP's NW RFC binding)."""

from __future__ import annotations

import datetime as dt
import types
from decimal import Decimal
from typing import Any


def fake_pyrfc() -> types.ModuleType:
    """Mimics SAP/PyRFC's _exception.py: RFCError > RFCLibError > the concrete classes."""
    mod = types.ModuleType("pyrfc")

    class RFCError(Exception):
        pass

    class RFCLibError(RFCError):
        def __init__(self, message: str, code: int, key: str, msg_class: str = "", msg_type: str = "",
                     msg_number: str = "", msg_v1: str = "", msg_v2: str = "", msg_v3: str = "",
                     msg_v4: str = "") -> None:
            super().__init__(f"{code} (rc={code}): key={key}, message={message}")
            self.message, self.code, self.key = message, code, key
            self.msg_class, self.msg_type, self.msg_number = msg_class, msg_type, msg_number
            self.msg_v1, self.msg_v2, self.msg_v3, self.msg_v4 = msg_v1, msg_v2, msg_v3, msg_v4

    names = ["ABAPApplicationError", "ABAPRuntimeError", "LogonError", "CommunicationError",
             "ExternalRuntimeError", "ExternalApplicationError"]
    for n in names:
        setattr(mod, n, type(n, (RFCLibError,), {}))
    mod.RFCError = RFCError  # type: ignore[attr-defined]
    mod.RFCLibError = RFCLibError  # type: ignore[attr-defined]

    class Connection:
        last_params: dict[str, Any] = {}
        dumps_left = 0

        def __init__(self, **params: Any) -> None:
            Connection.last_params = params
            if params.get("passwd") == "wrong":
                raise mod.LogonError("Name or password is incorrect (repeat logon)", 2,  # type: ignore[attr-defined]
                                     "RFC_LOGON_FAILURE")
            self.calls: list[tuple[str, dict[str, Any]]] = []

        def call(self, fm: str, **kw: Any) -> dict[str, Any]:
            self.calls.append((fm, kw))
            if fm == "RFC_READ_TABLE" and kw.get("QUERY_TABLE") == "T008X":
                raise mod.ABAPApplicationError("ID:SV Type:E Number:029 T008X", 5,  # type: ignore[attr-defined]
                                               "TABLE_NOT_AVAILABLE", "SV", "E", "029", "T008X")
            if fm == "Z_DIVIDE":
                raise mod.ABAPRuntimeError("Division by zero", 3, "COMPUTE_INT_ZERODIVIDE")  # type: ignore[attr-defined]
            if fm == "Z_DROP":
                raise mod.CommunicationError("connection closed", 1, "CM_NO_DATA_RECEIVED")  # type: ignore[attr-defined]
            if fm == "Z_BAD":
                raise mod.ExternalRuntimeError("field 'undefined' not found", 20, "RFC_INVALID_PARAMETER")  # type: ignore[attr-defined]
            if fm == "Z_OTHER":
                raise RFCError("strange")
            if fm == "Z_NATIVE":
                return {"DATE": dt.date(2026, 3, 1), "TIME": dt.time(9, 5, 7), "AMOUNT": Decimal("-12.50"),
                        "COUNT": 7, "RAW": b"\x01\xab", "FLAG": "X",
                        "ROWS": [{"WRBTR": Decimal("1.00"), "BUDAT": dt.date(2026, 1, 31)}]}
            if fm in ("RFC_READ_TABLE", "Z_MLC_ACC_DOCUMENT_POST") and kw.get("QUERY_TABLE") != "T000" \
                    and Connection.dumps_left > 0:
                Connection.dumps_left -= 1
                raise mod.ABAPRuntimeError("Work process restarted", 4, "SYSTEM_FAILURE")  # type: ignore[attr-defined]
            return {"ECHOTEXT": kw.get("REQUTEXT", ""), "DATA": []}

        def ping(self) -> None:
            pass

        def close(self) -> None:
            pass

    mod.Connection = Connection  # type: ignore[attr-defined]
    return mod
