"""IDocs in tests: DEBMAS/ORDERS documents, a receiver store that can fail, posting to a receiver."""

from __future__ import annotations

from typing import Any

import httpx
from hypothesis import strategies as st

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
    """Fails (like a lost database) while `broken` is set; `refused` counts the failed stores."""

    broken = False
    refused = 0

    def store(self, idocs: Any, raw: bytes) -> Any:
        if self.broken:
            self.refused += 1
            raise RuntimeError("database is gone")
        return super().store(idocs, raw)


def idoc_body(docnum: int, *, direct: str = "1", sndprn: str = "ECDCLNT100", name: str = "Acme",
              mandt: str = "100") -> bytes:
    """A DEBMAS07 IDoc (one customer, `name`) as SAP posts it."""
    c = make_control(mestyp="DEBMAS", idoctyp="DEBMAS07", docnum=docnum, direct=direct, sndprn=sndprn, mandt=mandt)
    return build_idoc_xml([Idoc(c, [Segment("E1KNA1M", {"MSGFN": "005", "KUNNR": "0000200001", "NAME1": name})])])


def post_idoc(handle: ServerHandle, body: bytes, auth: tuple[str, str] | None = (USER, PASSWORD)) -> httpx.Response:
    return httpx.post(f"{handle.url}/sap/idoc", content=body, auth=auth,
                      headers={"Content-Type": "application/x-sap.idoc"}, timeout=10)


def inbound_idoc(docnum: str = "") -> Idoc:
    c = make_control(mestyp="ORDERS", idoctyp="ORDERS05", docnum=docnum, direct="2", sndprn="MLCONNECT",
                     rcvprn="ECDCLNT100")
    return Idoc(c, [Segment("E1EDK01", {"CURCY": "USD", "BSART": "NB"}),
                    Segment("E1EDP01", {"POSEX": "00010", "MENGE": "1.000"})])


def control(**kw: str) -> dict[str, str]:
    base = {"mestyp": "DEBMAS", "idoctyp": "DEBMAS07", "docnum": "4711", "sndprn": "ECDCLNT100"}
    base.update(kw)
    return make_control(**base)  # type: ignore[arg-type]


def debmas_idoc(**kw: str) -> Idoc:
    return Idoc(control(**kw), [Segment("E1KNA1M", {"MSGFN": "005", "KUNNR": "0000200001", "NAME1": "Acme"}, [
        Segment("E1KNVVM", {"VKORG": "1000", "VTWEG": "10", "SPART": "00"},
                [Segment("E1KNVPM", {"PARVW": "RE", "KUNN2": "0000200002"})]),
        Segment("E1KNKKM", {"KKBER": "1000", "KLIMK": "50000.00", "CTLPC": "001"})])])


XML_TAGS = st.sampled_from(["IDOC", "EDI_DC40", "E1KNA1M", "TABNAM", "DOCNUM", "_-A_-B", "x"])


@st.composite
def xmlish(draw: st.DrawFn) -> bytes:
    parts = draw(st.lists(st.one_of(
        XML_TAGS.map(lambda t: f"<{t}>"), XML_TAGS.map(lambda t: f"</{t}>"), XML_TAGS.map(lambda t: f"<{t}/>"),
        st.sampled_from(['<IDOC BEGIN="1">', "&amp;", "&lol;", "<!DOCTYPE x>", "<![CDATA[z]]>", "<?pi x?>",
                         '<!ENTITY e SYSTEM "file:///etc/passwd">', "\x00", "é"]),
        st.text(max_size=5)), max_size=30))
    return ("<DEBMAS07>" + "".join(parts) + "</DEBMAS07>").encode("utf-8", "surrogatepass")
