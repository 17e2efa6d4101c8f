"""The IDoc endpoint of the HTTP server, switched on by configuration (server.idoc)."""

from __future__ import annotations

import sqlite3

import yaml
from fastapi.testclient import TestClient

from ml_connector.config import example_config, load_config
from ml_connector.core.runtime import Runtime
from ml_connector.server.app import create_app
from tests.support.idocs import idoc_body


def test_configured_idoc_endpoint_authenticates_validates_stores_and_dedupes(tmp_path):
    cfg = yaml.safe_load(example_config("http://127.0.0.1:1", "http://127.0.0.1:2"))
    cfg["server"]["idoc"] = {"path": "/sap/idoc", "username": "SAPIDOC", "password_secret": "idoc_pw",
                             "partners": [{"sndprt": "LS", "sndprn": "ECDCLNT100", "mestypes": ["DEBMAS"]}],
                             "client": "100"}
    path = tmp_path / "ml-connector.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    rt = Runtime(load_config(path), path)
    try:
        rt.vault.set("idoc_pw", "Idoc-Secret-1")
        api = TestClient(create_app(rt))
        headers = {"Content-Type": "application/x-sap.idoc"}
        assert api.post("/sap/idoc", content=idoc_body(1, name="Acme Retail"), headers=headers).status_code == 401
        auth = ("SAPIDOC", "Idoc-Secret-1")
        ok = api.post("/sap/idoc", content=idoc_body(1, name="Acme Retail"), headers=headers, auth=auth)
        assert ok.status_code == 200, ok.text
        again = api.post("/sap/idoc", content=idoc_body(1, name="Acme Retail"), headers=headers, auth=auth)
        assert again.status_code == 200 and again.json()["idocs"][0]["duplicate"] is True
        stranger = api.post("/sap/idoc", content=idoc_body(2, sndprn="OTHERSYS", name="Acme Retail"), headers=headers,
                            auth=auth)
        assert stranger.status_code == 400 and "SNDPRN" in stranger.text
        other_client = api.post("/sap/idoc", content=idoc_body(3, name="Acme Retail", mandt="200"), headers=headers,
                                auth=auth)
        assert other_client.status_code == 400 and "EDI_DC40-MANDT" in other_client.text
        assert "/sap/idoc" in api.get("/openapi.json").json()["paths"]
    finally:
        rt.close()
    db = sqlite3.connect(tmp_path / "data" / "ml-connector.sqlite")
    assert db.execute("select count(*) from mlc_idocs").fetchone() == (1,)
