"""IDocs in tests: DEBMAS/ORDERS documents, a receiver store that can fail, posting to a receiver."""

from __future__ import annotations

from typing import Any

import httpx

from ml_connector.core.servers import ServerHandle
from ml_connector.systems.sap_ecc.idoc import (
    Idoc,
    PartnerProfile,
    Segment,
    build_idoc_xml,
    make_control,
)
from ml_connector.systems.sap_ecc.idoc_receiver import SqlIdocStore

USER, PASSWORD = "SAPIDOC", "idoc-pass-1"
PARTNERS = [PartnerProfile("LS", "ECDCLNT100"), PartnerProfile("LS", "EQ2CLNT100")]


class FlakyStore(SqlIdocStore):
    """Fails (like a lost database) while `broken` is set."""

    broken = False

    def store(self, idocs: Any, raw: bytes) -> Any:
        if self.broken:
            raise RuntimeError("database is gone")
        return super().store(idocs, raw)


def idoc_body(docnum: int, *, direct: str = "1", sndprn: str = "ECDCLNT100", name: str = "Acme") -> bytes:
    """A DEBMAS07 IDoc (one customer, `name`) as SAP posts it."""
    c = make_control(mestyp="DEBMAS", idoctyp="DEBMAS07", docnum=docnum, direct=direct, sndprn=sndprn)
    return build_idoc_xml([Idoc(c, [Segment("E1KNA1M", {"MSGFN": "005", "KUNNR": "0000200001", "NAME1": name})])])


def post_idoc(handle: ServerHandle, body: bytes, auth: tuple[str, str] | None = (USER, PASSWORD)) -> httpx.Response:
    return httpx.post(f"{handle.url}/sap/idoc", content=body, auth=auth,
                      headers={"Content-Type": "application/x-sap.idoc"}, timeout=10)


def inbound_idoc(docnum: str = "") -> Idoc:
    c = make_control(mestyp="ORDERS", idoctyp="ORDERS05", docnum=docnum, direct="2", sndprn="MLCONNECT",
                     rcvprn="ECDCLNT100")
    return Idoc(c, [Segment("E1EDK01", {"CURCY": "USD", "BSART": "NB"}),
                    Segment("E1EDP01", {"POSEX": "00010", "MENGE": "1.000"})])
