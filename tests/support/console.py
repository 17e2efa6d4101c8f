"""The operators' console in tests: a control plane on the example configuration, users of each role,
logged-in clients, and records in the states the inbox shows (failed, in doubt, parked)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from ml_connector.config import example_config, load_config
from ml_connector.core import audit, outbox
from ml_connector.core.ledger import content_hash
from ml_connector.core.runtime import Runtime
from ml_connector.server.app import create_app
from ml_connector.server.console import users
from ml_connector.server.console.users import add_user

PASSWORDS = {"viv": "viewer-password-1", "otto": "operator-password-1", "ada": "admin-password-1"}
ROLES = {"viv": "viewer", "otto": "operator", "ada": "admin"}
#: Every page a viewer may read (GET), with a query where the page takes one.
PAGES = ("/", "/runs", "/runs?flow=vendors_to_ramp", "/journey", "/journey?q=0000100001", "/inbox",
         "/inbox?flow=vendors_to_ramp", "/connections", "/agents", "/reconcile", "/approvals",
         "/approvals?flow=bills_to_sap", "/mappings", "/mappings?flow=bills_to_sap", "/inbox/record/1",
         "/connections?add_type=ramp")
#: Every form post of the console and the least role it needs.
POSTS = {"/inbox/replay": "operator", "/inbox/mapping": "operator", "/inbox/resolve": "operator",
         "/approvals/approve": "operator", "/approvals/reject": "operator", "/approvals/check": "operator",
         "/mappings/set": "operator", "/mappings/remove": "operator", "/inbox/record/1/edit": "operator",
         "/inbox/record/1/assign": "operator", "/inbox/record/1/note": "operator",
         "/connections/ramp/ping": "operator", "/connections/secret": "admin", "/connections/add": "admin",
         "/agents/token": "admin",
         "/agents/agt_1/revoke": "admin", "/logout": "viewer"}


@dataclass
class ConsoleWorld:
    rt: Runtime
    client: TestClient
    workdir: Path


def console_runtime(tmp_path: Path, server: str = "127.0.0.1",
                    sap_url: str = "http://127.0.0.1:9", ramp_url: str = "http://127.0.0.1:9") -> Runtime:
    """The example configuration (two flows, SAP ECC and Ramp connections) with the server bound to `server`
    (another host than loopback: `api_auth: token`), users viv, otto and ada."""
    cfg = tmp_path / "ml-connector.yaml"
    text = example_config(sap_url, ramp_url)
    if server != "127.0.0.1":  # another host; its API needs a token then
        text = text.replace("  host: 127.0.0.1\n", f"  host: {server}\n").replace("api_auth: auto", "api_auth: token")
    cfg.write_text(text, encoding="utf-8")
    rt = Runtime(load_config(cfg), cfg)
    for name, role in ROLES.items():
        add_user(rt.db, name, PASSWORDS[name], role)
    return rt


#: Cheap argon2 parameters for the tests' users: the parameters are not under test, and the defaults cost
#: a noticeable fraction of a second per hash on a busy machine.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@contextmanager
def console_world(tmp_path: Path, **kw: str) -> Iterator[ConsoleWorld]:
    """The console of the example configuration in a TestClient (hashing with FAST_HASHER meanwhile)."""
    saved, users._hasher = users._hasher, FAST_HASHER
    try:
        rt = console_runtime(tmp_path, **kw)
        try:
            with TestClient(create_app(rt)) as client:
                yield ConsoleWorld(rt, client, tmp_path)
        finally:
            rt.close()
    finally:
        users._hasher = saved


def form_csrf(html: str) -> str:
    """The CSRF token of the first form of a page."""
    m = re.search(r'name="csrf" value="([^"]*)"', html)
    assert m is not None, "no CSRF field in the page"
    return m.group(1)


def login(client: TestClient | httpx.Client, username: str, password: str | None = None,
          next_: str = "/") -> httpx.Response:
    page = client.get("/login")
    return client.post("/login", data={"username": username, "password": PASSWORDS[username] if password is None
                                       else password, "csrf": form_csrf(page.text), "next": next_},
                       follow_redirects=False)


def logged_in(world: ConsoleWorld, username: str) -> TestClient:
    """A new client of the world's app with `username`'s session (the world's own client stays anonymous)."""
    client = TestClient(world.client.app)
    resp = login(client, username)
    assert resp.status_code == 303, resp.text
    return client


def page_csrf(client: TestClient) -> str:
    """The session's CSRF token, as every console page carries it (the log-out form)."""
    return form_csrf(client.get("/").text)


def stage_records(rt: Runtime) -> dict[str, int]:
    """Outbox entries of the example flows in the inbox's states: a vendor refused by Ramp's validation, a
    vendor in doubt after a refused credential, a bill parked on a missing entity mapping; one posted."""
    ids: dict[str, int] = {}
    rows = [("vendors_to_ramp", "vendors", "0000100001", "create", "failed", None,
             "Ramp answered 422 DEVELOPER_7001: Invalid input. {'name': ['Missing data for required field.']}"),
            ("vendors_to_ramp", "vendors", "0000100002", "create", "uncertain", None,
             "in doubt: in flight when the run failed (CredentialRefused: ramp: Ramp refused the credential "
             "(HTTP 401 invalid_client: Client authentication failed.))"),
            ("bills_to_sap", "bills", "bill-7", "post", "parked", "entities:0e1b5a1e-9999", None),
            ("vendors_to_ramp", "vendors", "0000100003", "create", "posted", None, None)]
    with rt.db.session() as s:
        for flow, stream, key, op, state, parked_on, error in rows:
            payload = {"id": key}
            h = content_hash(payload)
            run_id = f"sync:{flow}:{stream}:test"
            outbox.add(s, flow=flow, stream=stream, run_id=run_id, batch=0, rows=[{
                "idempotency_key": outbox.idempotency_key(flow, stream, key, h, op), "source_key": key, "op": op,
                "payload": payload, "content_hash": h, "state": state, "parked_on": parked_on,
                "last_error": error, "target_id": "ramp-vendor-3" if state == "posted" else None}])
            audit.record(s, f"record.{op}", outcome="ok" if state == "posted" else state, flow=flow, stream=stream,
                         run_id=run_id, source=f"{flow}:{key}", request=payload,
                         target="ramp:ramp-vendor-3" if state == "posted" else None)
        s.flush()
        for r in outbox.failures(s, limit=100) + outbox.parked(s, limit=100):
            ids[r.source_key] = r.id
    return ids
