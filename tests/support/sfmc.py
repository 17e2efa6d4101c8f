"""The SAP ECC → Marketing Cloud pair in tests: a configuration wired to the SAP ECC and Marketing
Cloud sandboxes, the control plane's IDoc receiver on the same database, and what the tests read
from the Marketing Cloud sandbox."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ml_connector.core.servers import ServerHandle, serve_in_thread
from tests.support.env import SAP_PASSWORD, Env, store_secrets
from tests.support.processes import ROOT

IDOC_USER, IDOC_PASSWORD = "SAPIDOC", "idoc-Secret-1"
DEFAULT_OPTIONS = "      page_size: 1000\n"  # the flow's options block (a test may give its own)


def sfmc_config(sap_url: str, mc: dict[str, Any], *, options: str = "", extra: str = "",
                schedule: str = "{interval: 5s}", idoc: bool = False) -> str:
    """The configuration (the demo's, `demo_ecc_sfmc.pair_config`); `options`: the flow's options block;
    `extra`: more top-level sections; `idoc`: the server receives SAP's IDocs at /sap/idoc (user
    IDOC_USER, secret `idoc_password`)."""
    from ml_connector.demo_ecc_sfmc import pair_config

    receiver = (f"  idoc: {{path: /sap/idoc, username: {IDOC_USER}, password_secret: idoc_password, "
                f"client: \"100\"}}\n") if idoc else ""
    return pair_config({"base_url": sap_url, "client": "100", "user": "RFC_USER"}, mc,
                       options=options or DEFAULT_OPTIONS, extra=extra, schedule=schedule, receiver=receiver,
                       port=8080, edition="pro", header="")


def make_sfmc_env(tmp: Path, sap_url: str, mc: dict[str, Any], *, options: str = "", extra: str = "",
                  schedule: str = "{interval: 5s}", idoc: bool = False) -> Env:
    cfg = tmp / "ml-connector.yaml"
    cfg.write_text(sfmc_config(sap_url, mc, options=options, extra=extra, schedule=schedule, idoc=idoc),
                   encoding="utf-8")
    env = dict(os.environ)
    env["MLC_LOG_LEVEL"] = env.get("MLC_LOG_LEVEL", "WARNING")
    env["PYTHONPATH"] = str(ROOT / "src")
    env["COLUMNS"] = "250"
    env.pop("MLC_DATABASE_URL", None)
    e = Env(tmp, cfg, sap_url, mc["auth_base"], env)
    store_secrets(e, {"sap_ecc_password": SAP_PASSWORD, "sfmc_client_secret": mc["client_secret"],
                      **({"idoc_password": IDOC_PASSWORD} if idoc else {})})
    return e


@dataclass
class IdocEndpoint:
    handle: ServerHandle
    db: Any

    @property
    def url(self) -> str:
        return f"{self.handle.url}/sap/idoc"


@contextmanager
def idoc_endpoint(env: Env) -> Iterator[IdocEndpoint]:
    """The control plane's IDoc receiver (the real router and store) on the configuration's
    database, served on loopback: what `ml-connector serve` mounts at /sap/idoc."""
    from fastapi import FastAPI

    from ml_connector.config import load_config
    from ml_connector.core.db import Database
    from ml_connector.systems.sap_ecc.idoc_receiver import BasicAuth, SqlIdocStore, idoc_router

    cfg = load_config(env.config)
    db = Database(cfg.database_url_resolved(env.config.resolve().parent))
    db.migrate()
    app = FastAPI()
    app.include_router(idoc_router(SqlIdocStore(db), BasicAuth(IDOC_USER, IDOC_PASSWORD)), prefix="/sap")
    handle = serve_in_thread(app, name="idoc-endpoint")
    try:
        yield IdocEndpoint(handle, db)
    finally:
        handle.stop()
        db.dispose()


def push_idocs_to(sap_url: str, endpoint: IdocEndpoint | str) -> None:
    """Point the SAP sandbox's outbound XML-HTTP port at the endpoint (DEBMAS/ORDRSP/DESADV on change):
    an IdocEndpoint, or the URL of a control plane's IDoc receiver."""
    url = endpoint if isinstance(endpoint, str) else endpoint.url
    r = httpx.post(f"{sap_url}/_sandbox/idoc/outbound", json={"url": url, "user": IDOC_USER,
                                                              "password": IDOC_PASSWORD, "backoff_base": 0.05},
                   timeout=10)
    r.raise_for_status()


def de_rows(mc: dict[str, Any], key: str, *, missing_ok: bool = False) -> dict[str, dict[str, str]]:
    """The rows of a Data Extension in the Marketing Cloud sandbox, by their first primary-key column
    (`missing_ok`: none while the Data Extension does not exist yet)."""
    r = httpx.get(f"{mc['admin']}/des/{key}/rows", timeout=30)
    if missing_ok and r.status_code == 404:
        return {}
    r.raise_for_status()
    rows = r.json()["rows"]
    first = next(iter(rows[0])) if rows else ""
    return {row[first]: row for row in rows}


def mc_events(mc: dict[str, Any]) -> list[dict[str, Any]]:
    return list(httpx.get(f"{mc['admin']}/events", timeout=10).json()["events"])


def mc_stats(mc: dict[str, Any]) -> dict[str, int]:
    return dict(httpx.get(f"{mc['admin']}/stats", timeout=10).json())


def mc_faults(mc: dict[str, Any], **kw: Any) -> None:
    httpx.post(f"{mc['admin']}/faults", json=kw, timeout=10).raise_for_status()


def mc_client(mc: dict[str, Any]) -> Any:
    """A Marketing Cloud client of the sandbox (its own token store), as marketing's tools would be."""
    from ml_connector.core.tokens import MemoryTokenStore
    from ml_connector.systems.sfmc.auth import SfmcAuth
    from ml_connector.systems.sfmc.client import SfmcClient

    return SfmcClient(SfmcAuth(mc["auth_base"], mc["client_id"], mc["client_secret"], account_id=mc["account_id"],
                               connection="test", store=MemoryTokenStore()))


def send_list(mc: dict[str, Any], key: str, members: list[str]) -> None:
    """A sendable send list Data Extension as marketing builds one, with a flag column."""
    from ml_connector.systems.sfmc.schema import DeField, DeSpec

    c = mc_client(mc)
    c.create_de(DeSpec(key, key, (DeField("SubscriberKey", "Text", 50, primary=True),
                                  DeField("Email", "EmailAddress", 254), DeField("Eligible", "Boolean"),
                                  DeField("ExclusionReason", "Text", 250)),
                       sendable_field="SubscriberKey"))
    c.upsert_rows(key, [({"SubscriberKey": m}, {"Email": f"{m}@example.com", "Eligible": "True"}) for m in members])


@contextmanager
def control_plane(env: Env) -> Iterator[tuple[str, Any]]:
    """The control plane's HTTP app (`create_app`, what `ml-connector run` serves) on loopback for the
    configuration, every operator request needing a token (`api_auth: token`): (base URL, runtime)."""
    from ml_connector.config import load_config
    from ml_connector.core.runtime import Runtime
    from ml_connector.server.app import create_app

    env.config.write_text(env.config.read_text().replace("api_auth: auto", "api_auth: token"))
    rt = Runtime(load_config(env.config), env.config)
    handle = serve_in_thread(create_app(rt), name="control-plane")
    try:
        yield handle.url, rt
    finally:
        handle.stop()
        rt.close()
