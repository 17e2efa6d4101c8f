"""Issue 16 item 11: the IDoc receiver refuses what SAP never sends (a message type that does not go
with the basic type, another client's MANDT, DOCNUM all zeros, fields beyond their width) with a clear
error naming the field, and keeps a same-DOCNUM-different-content resend as a conflict for operators."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from ml_connector.core.db import Database
from ml_connector.core.models import AuditRow
from ml_connector.core.servers import ServerHandle, serve_in_thread
from ml_connector.systems.sap_ecc.idoc import Idoc, IdocPolicy, PartnerProfile, Segment, build_idoc_xml, make_control
from ml_connector.systems.sap_ecc.idoc_receiver import BasicAuth, SqlIdocStore, idoc_router

USER, PASSWORD = "SAPIDOC", "idoc-pass-2"


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerHandle, SqlIdocStore, Database]]:
    db = Database(f"sqlite:///{tmp_path_factory.mktemp('idoc-strict')}/idocs.db")
    db.migrate()
    store = SqlIdocStore(db)
    app = FastAPI()
    policy = IdocPolicy(direct="1", partners=[PartnerProfile("LS", "ECDCLNT100")], client="100")
    app.include_router(idoc_router(store, BasicAuth(USER, PASSWORD), policy=policy), prefix="/sap")
    handle = serve_in_thread(app, name="idoc-strict")
    yield handle, store, db
    handle.stop()
    db.dispose()


def body(docnum: int | str = 1, *, mestyp: str = "DEBMAS", idoctyp: str = "DEBMAS07", mandt: str = "100",
         name: str = "Acme", credat: str | None = None, **control: str) -> bytes:
    c = make_control(mestyp=mestyp, idoctyp=idoctyp, docnum=docnum, sndprn="ECDCLNT100", mandt=mandt)
    c.update(control)
    if credat is not None:
        c["CREDAT"] = credat
    seg = Segment("E1KNA1M", {"MSGFN": "005", "KUNNR": "0000200001", "NAME1": name})
    return build_idoc_xml([Idoc(c, [seg])])


def post(h: ServerHandle, data: bytes) -> httpx.Response:
    return httpx.post(f"{h.url}/sap/idoc", content=data, auth=(USER, PASSWORD), timeout=10)


@pytest.mark.parametrize(("kwargs", "field", "words"), [
    ({"mestyp": "ORDERS"}, "EDI_DC40-MESTYP", "not sent with basic type 'DEBMAS07'"),
    ({"mandt": "200"}, "EDI_DC40-MANDT", "client 200"),
    ({"mandt": "1x"}, "EDI_DC40-MANDT", "3 digits"),
    ({"docnum": "0000000000000000"}, "EDI_DC40-DOCNUM", "all zeros"),
    ({"SNDLAD": "L" * 500}, "EDI_DC40-SNDLAD", "longer than 70"),
    ({"ZZFIELD": "x"}, "EDI_DC40-ZZFIELD", "not a field of the control record"),
    ({"name": "N" * 1200}, "E1KNA1M", "more than a segment holds"),
])
def test_refuses_what_sap_never_sends(receiver: tuple[ServerHandle, SqlIdocStore, Database],
                                      kwargs: dict[str, str], field: str, words: str) -> None:
    h, store, _ = receiver
    before = store.count()
    r = post(h, body(**{"docnum": 900, **kwargs}))
    assert r.status_code == 400, r.text
    assert field in r.text and words in r.text
    assert store.count() == before


def test_same_docnum_other_content_is_kept_as_a_conflict(
        receiver: tuple[ServerHandle, SqlIdocStore, Database]) -> None:
    h, store, db = receiver
    assert post(h, body(4711, name="First")).json()["idocs"][0] == {
        "docnum": "0000000000004711", "mestyp": "DEBMAS", "idoctyp": "DEBMAS07", "sndprn": "ECDCLNT100",
        "duplicate": False, "conflict": False}
    # A genuine resend (BD87) may restamp the creation date: still the same IDoc, no conflict.
    again = post(h, body(4711, name="First", credat="20300101")).json()["idocs"][0]
    assert again["duplicate"] and not again["conflict"]
    assert store.conflicts() == []
    changed = post(h, body(4711, name="Second")).json()["idocs"][0]
    assert changed["duplicate"] and changed["conflict"]
    (conflict,) = store.conflicts()
    assert conflict["docnum"] == "0000000000004711" and conflict["stored_digest"] != conflict["new_digest"]
    assert conflict["parsed"]["segments"][0]["fields"]["NAME1"] == "Second"
    stored = store.get("0000000000004711", "ECDCLNT100")
    assert stored is not None and stored["parsed"]["segments"][0]["fields"]["NAME1"] == "First"
    with db.session() as s:
        events = s.scalars(select(AuditRow).where(AuditRow.event == "idoc.conflict")).all()
    assert len(events) == 1 and events[0].detail["docnum"] == "0000000000004711"
