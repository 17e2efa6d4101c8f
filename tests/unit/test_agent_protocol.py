"""Remote agent: signing, verification, replay, skew, tampering, allow-list, dedupe, backoff, claims."""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from ml_connector.agent import protocol as proto
from ml_connector.agent.config import AgentConfig, check_allowed
from ml_connector.agent.runner import Agent, ControlPlaneClient
from ml_connector.core.channel import ChannelRequest, ChannelResponse
from ml_connector.core.vault import MasterKey, Vault
from ml_connector.server.agents.channel import RemoteAgentChannel
from ml_connector.server.agents.models import AgentCallRow
from ml_connector.server.agents.service import AgentIdentity, AuthError
from tests.support import FakeClock, wait_until
from tests.support.control_plane import (
    FAST_SETTINGS,
    InProcessAgent,
    in_process_control_plane,
    pair_agent,
    rejections,
    signed_post,
    table_allow_config,
)
from tests.support.databases import audit_rows, sqlite_database


@pytest.fixture()
def cp(tmp_path: Path) -> Any:
    db = sqlite_database(tmp_path / "cp.sqlite")
    # refusal_window 0: every refused request gets its own audit row (coalescing: its own test)
    c = in_process_control_plane(db, Vault(db, MasterKey.generate()), FAST_SETTINGS)
    yield c
    c.svc.stop()
    c.client.close()
    db.dispose()


def test_pairing_token_is_one_time_hashed_and_expires(cp: Any) -> None:
    token = cp.svc.issue_token("plant1", 60)
    with cp.db.engine.connect() as c:
        dump = "\n".join(str(r) for r in c.exec_driver_sql("SELECT * FROM mlc_agent_pairing_tokens"))
    assert token not in dump  # stored hashed
    key = proto.generate_key()
    ok = cp.client.post("/api/agent/pair", json={"token": token, "public_key": proto.public_key_text(key)})
    assert ok.status_code == 200 and ok.json()["site"] == "plant1"
    assert proto.load_public_key(ok.json()["control_plane_public_key"])
    again = cp.client.post("/api/agent/pair", json={"token": token, "public_key": proto.public_key_text(key)})
    assert again.status_code == 401 and again.json()["detail"]["error"] == "invalid_token"
    cp.svc.clock = clock = FakeClock(wall=time.time())  # the token's minute passes on the test's clock
    expired = cp.svc.issue_token("plant1", 60)
    clock.advance(60.5)
    r = cp.client.post("/api/agent/pair", json={"token": expired, "public_key": proto.public_key_text(key)})
    assert r.status_code == 401 and "expired" in r.json()["detail"]["message"]
    assert rejections(cp.db).count("invalid_token") == 2


def test_signed_request_accepted_and_forgeries_rejected_and_audited(cp: Any) -> None:
    agent_id, key = pair_agent(cp)
    ok = signed_post(cp, agent_id, key, "/api/agent/poll", {"hold": 0, "max": 1})
    assert ok.status_code == 200, ok.text
    assert ok.json()["calls"] == []
    # forged: signed with another key
    r = signed_post(cp, agent_id, proto.generate_key(), "/api/agent/poll", {"hold": 0})
    assert r.status_code == 401 and r.json()["detail"]["error"] == "bad_signature"
    # replayed nonce
    n = "ab" * 16
    assert signed_post(cp, agent_id, key, "/api/agent/poll", {"hold": 0}, nonce=n).status_code == 200
    r = signed_post(cp, agent_id, key, "/api/agent/poll", {"hold": 0}, nonce=n)
    assert r.status_code == 401 and r.json()["detail"]["error"] == "replayed_nonce"
    # expired timestamp: the skew is reported with the server time
    r = signed_post(cp, agent_id, key, "/api/agent/poll", {"hold": 0}, now=time.time() - 400)
    d = r.json()["detail"]
    assert r.status_code == 401 and d["error"] == "clock_skew" and d["skew"] < -390 and d["server_time"] > 0
    r = signed_post(cp, agent_id, key, "/api/agent/poll", {"hold": 0}, now=time.time() + 400)
    assert r.json()["detail"]["error"] == "clock_skew"
    # tampered body
    r = signed_post(cp, agent_id, key, "/api/agent/poll", {"hold": 0, "max": 1}, send_body=b'{"hold":0,"max":9}')
    assert r.status_code == 401 and r.json()["detail"]["error"] == "bad_signature"
    # signature for another path
    body = b"{}"
    h = proto.sign_headers(key, agent_id, "POST", "/api/agent/heartbeat", body, now=time.time())
    assert cp.client.post("/api/agent/poll", content=body, headers=h).status_code == 401
    # unknown agent, missing headers
    r = signed_post(cp, "agt_nobody", key, "/api/agent/poll", {})
    assert r.json()["detail"]["error"] == "unknown_agent" and r.json()["detail"]["retriable"] is False
    assert cp.client.post("/api/agent/poll", json={}).status_code == 401
    assert sorted(rejections(cp.db)) == sorted(["bad_signature", "replayed_nonce", "clock_skew", "clock_skew",
                                              "bad_signature", "bad_signature", "unknown_agent", "missing_headers"])


def test_call_envelope_signature_detects_tampering() -> None:
    key = proto.generate_key()
    env = proto.sign_call(key, {"id": "c1", "function": "RFC_PING", "params": {"A": "1"}, "agent_id": "a"})
    pub = proto.public_key_text(key)
    assert proto.verify_call(pub, env)
    bad = json.loads(json.dumps(env))
    bad["call"]["params"]["A"] = "2"
    assert not proto.verify_call(pub, bad)
    assert not proto.verify_call(proto.public_key_text(proto.generate_key()), env)
    assert not proto.verify_call(pub, {"call": env["call"]})


def test_allow_list() -> None:
    cfg = AgentConfig.model_validate({"systems": {"sap_ecc": {
        "base_url": "http://x", "user": "U", "password_secret": "pw",
        "allow": {"functions": ["RFC_PING", "RFC_READ_TABLE", "BAPI_*_GETLIST"], "tables": ["LFA1", "T00*"]}}}})
    assert check_allowed(cfg, "sap_ecc", "RFC_PING", {}) is None
    assert check_allowed(cfg, "sap_ecc", "bapi_vendor_getlist", {}) is None
    f = check_allowed(cfg, "sap_ecc", "BAPI_ACC_DOCUMENT_POST", {})
    assert f is not None and f.type == "NotAllowed" and f.key == "BAPI_ACC_DOCUMENT_POST"
    assert check_allowed(cfg, "sap_ecc", "RFC_READ_TABLE", {"QUERY_TABLE": "LFA1"}) is None
    assert check_allowed(cfg, "sap_ecc", "RFC_READ_TABLE", {"QUERY_TABLE": "T001"}) is None
    f = check_allowed(cfg, "sap_ecc", "RFC_READ_TABLE", {"QUERY_TABLE": "USR02"})
    assert f is not None and f.type == "NotAllowed" and f.key == "USR02"
    f = check_allowed(cfg, "sap_ecc", "RFC_READ_TABLE", {})
    assert f is not None and f.type == "NotAllowed"
    f = check_allowed(cfg, "other", "RFC_PING", {})
    assert f is not None and f.type == "UnknownSystem"


def test_backoff_schedule_bounds() -> None:
    rng = random.Random(1)
    first = [proto.backoff_delay(n, rng=rng) for n in range(1, 6) for _ in range(200)]
    later = [proto.backoff_delay(n, rng=rng) for n in range(6, 12) for _ in range(200)]
    assert min(first) >= 15 and max(first) <= 30 and max(first) - min(first) > 10  # randomized
    assert min(later) >= 30 and max(later) <= 60
    assert all(0.15 <= proto.backoff_delay(3, scale=0.01, rng=rng) <= 0.3 for _ in range(50))


def test_round_trip_through_remote_channel_and_dedupe_on_both_sides(cp: Any, tmp_path: Path) -> None:
    env = InProcessAgent(cp, tmp_path)
    t = threading.Thread(target=env.agent.run, daemon=True)
    t.start()
    try:
        ch = RemoteAgentChannel(cp.db, "plant1", timeout=10)
        req = ChannelRequest(system="sap_ecc", function="STFC_CONNECTION", params={"REQUTEXT": "hi"})
        resp = ch.call(req)
        assert resp.ok and resp.result == {"ECHOTEXT": "hi", "n": 1}
        # CP dedupe: the same id again does not queue a second call
        again = ch.call(req)
        assert again == resp and len(env.calls) == 1
        # agent dedupe: a redelivered envelope is not executed again; the stored result is re-sent
        with cp.db.session() as s:
            row = s.get(AgentCallRow, req.id)
            assert row is not None
            call = {"id": row.id, "site": row.site, "system": row.system, "function": row.function,
                    "params": row.params, "agent_id": env.ident.agent_id, "attempt": 2, "issued_at": time.time()}
        deadline = time.time() + 5
        while env.agent.busy and time.time() < deadline:
            time.sleep(0.01)
        env.agent.dispatch(proto.sign_call(cp.svc.control_key(), call))
        assert len(env.calls) == 1
        assert any(e["event"] == "call.duplicate" for e in env.agent.audit.events())
        # refused by the allow-list: typed fault, audited on both sides, never executed
        r = ch.call(ChannelRequest(system="sap_ecc", function="BAPI_ACC_DOCUMENT_POST", params={}))
        assert not r.ok and r.fault is not None and r.fault.type == "NotAllowed"
        r = ch.call(ChannelRequest(system="sap_ecc", function="RFC_READ_TABLE", params={"QUERY_TABLE": "USR02"}))
        assert r.fault is not None and r.fault.type == "NotAllowed" and r.fault.key == "USR02"
        assert len(env.calls) == 1
        assert [e["key"] for e in env.agent.audit.events() if e["event"] == "call.refused"] == [
            "BAPI_ACC_DOCUMENT_POST", "USR02"]
        assert len(audit_rows(cp.db, "agent.call.refused")) == 2
        # the CP's duplicate result post is acknowledged, not stored twice
        out = cp.svc.store_result(AgentIdentity(env.ident.agent_id, "plant1"), resp)
        assert out == {"stored": False, "duplicate": True}
    finally:
        env.agent.stop_event.set()
        t.join(5)


def test_tampered_call_refused_and_reported(cp: Any, tmp_path: Path) -> None:
    env = InProcessAgent(cp, tmp_path)
    call = {"id": "c-tamper", "site": "plant1", "system": "sap_ecc", "function": "RFC_PING", "params": {},
            "agent_id": env.ident.agent_id, "attempt": 1, "issued_at": time.time()}
    envelope = proto.sign_call(cp.svc.control_key(), call)
    envelope["call"]["function"] = "STFC_CONNECTION"
    env.agent.dispatch(envelope)
    forged = proto.sign_call(proto.generate_key(), call)  # signed by someone else
    env.agent.dispatch(forged)
    retargeted = proto.sign_call(cp.svc.control_key(), {**call, "agent_id": "agt_other"})
    env.agent.dispatch(retargeted)
    assert env.calls == []
    assert [e["event"] for e in env.agent.audit.events()].count("call.tampered") == 3
    assert len(audit_rows(cp.db, "agent.call.tampered")) == 3


def test_crash_recovery_never_reexecutes(cp: Any, tmp_path: Path) -> None:
    env = InProcessAgent(cp, tmp_path)
    st = env.agent.store
    assert st.begin("x1", "sap_ecc", "BAPI_X")[0] == "new"  # started, then the process died
    st.begin("x2", "sap_ecc", "RFC_PING")
    st.finish("x2", ChannelResponse(id="x2", ok=True, result={"r": 1}).model_dump_json())  # done, not acked
    agent2 = Agent(env.cfg, env.ident, vault=object(), handlers={"sap_ecc": env.handle})
    agent2.recover()
    got = agent2.store.get("x1")
    assert got is not None and got["state"] == "done"
    resp = ChannelResponse.model_validate_json(got["response"])
    assert resp.fault is not None and resp.fault.key == "AGENT_INTERRUPTED" and resp.fault.details["uncertain"]
    assert [c for c, _ in agent2.store.unacked()] == ["x1", "x2"] or sorted(
        c for c, _ in agent2.store.unacked()) == ["x1", "x2"]
    assert agent2.store.begin("x1", "sap_ecc", "BAPI_X")[0] == "done"
    assert env.calls == []


def test_claims_are_exclusive_and_leases_expire(cp: Any, tmp_path: Path) -> None:
    a1, _ = pair_agent(cp)
    a2, _ = pair_agent(cp)
    ch = RemoteAgentChannel(cp.db, "plant1")
    for i in range(10):
        ch.submit(ChannelRequest(id=f"r{i}", system="sap_ecc", function="RFC_PING"))
    ch.submit(ChannelRequest(id="post", system="sap_ecc", function="BAPI_ACC_DOCUMENT_POST"))
    ch.submit(ChannelRequest(id="r0", system="sap_ecc", function="RFC_PING"))  # dedupe by id
    got: dict[str, list[str]] = {a1: [], a2: []}

    def claim(aid: str) -> None:
        for _ in range(10):
            envs = cp.svc.claim(AgentIdentity(aid, "plant1"), 2) or []
            got[aid] += [e["call"]["id"] for e in envs]

    ts = [threading.Thread(target=claim, args=(a,)) for a in (a1, a2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not set(got[a1]) & set(got[a2])
    assert sorted(got[a1] + got[a2]) == sorted([f"r{i}" for i in range(10)] + ["post"])
    assert cp.svc.claim(AgentIdentity(a1, "plant2"), 5) == []  # other sites see nothing
    # leases lapse: idempotent calls go back to the queue, the posting is answered as uncertain
    counts = cp.svc.sweep(now=time.time() + 5)
    assert counts["requeued"] == 10 and counts["lost"] == 1
    lost = ch.result("post")
    assert lost is not None and lost.fault is not None and lost.fault.key == "AGENT_LOST"
    assert lost.fault.details["uncertain"] is True
    again = cp.svc.claim(AgentIdentity(a2, "plant1"), 20) or []
    assert sorted(e["call"]["id"] for e in again) == sorted(f"r{i}" for i in range(10))
    with cp.db.session() as s:
        assert {r.attempts for r in s.scalars(select(AgentCallRow).where(AgentCallRow.function == "RFC_PING"))} == {2}


def test_revocation_offline_alert_and_listing(cp: Any, tmp_path: Path, caplog: Any) -> None:
    agent_id, key = pair_agent(cp)
    assert signed_post(cp, agent_id, key, "/api/agent/poll", {"hold": 0}).status_code == 200
    counts = cp.svc.sweep(now=time.time() + 10)
    assert counts["offline"] == 1
    assert [e.source for e in audit_rows(cp.db, "agent.offline")] == [agent_id]
    assert "offline" in caplog.text
    listing = cp.client.get("/api/agents").json()
    assert listing[0]["id"] == agent_id and listing[0]["state"] == "offline"
    assert signed_post(cp, agent_id, key, "/api/agent/poll", {"hold": 0}).status_code == 200
    assert cp.client.get("/api/agents").json()[0]["state"] == "online"
    assert len(audit_rows(cp.db, "agent.online")) == 1
    assert cp.svc.revoke(agent_id)
    r = signed_post(cp, agent_id, key, "/api/agent/poll", {"hold": 0})
    assert r.status_code == 401 and r.json()["detail"] == {**r.json()["detail"], "error": "revoked",
                                                             "retriable": False}
    assert cp.client.get("/api/agents").json()[0]["state"] == "revoked"


def test_agent_exits_on_revocation_with_clear_code(cp: Any, tmp_path: Path) -> None:
    env = InProcessAgent(cp, tmp_path)
    cp.svc.revoke(env.ident.agent_id)
    code = env.agent.run()
    assert code == 3 and env.agent.fatal is not None and env.agent.fatal.code == "revoked"


def test_client_reports_clock_skew(cp: Any, tmp_path: Path) -> None:
    env = InProcessAgent(cp, tmp_path)
    c = ControlPlaneClient(env.ident, clock=lambda: time.time() + 1000)
    c._http = cp.client
    with pytest.raises(Exception, match="clock_skew") as ei:
        c.post("/api/agent/poll", {"hold": 0})
    assert "skew" in str(ei.value)
    assert c.skew is not None and c.skew > 900


def test_only_the_agent_a_call_was_handed_to_may_answer_it(cp: Any, tmp_path: Path) -> None:
    a1, _ = pair_agent(cp)
    a2, _ = pair_agent(cp)
    ch = RemoteAgentChannel(cp.db, "plant1")
    ch.submit(ChannelRequest(id="p1", system="sap_ecc", function="BAPI_ACC_DOCUMENT_POST"))
    ch.submit(ChannelRequest(id="q1", system="sap_ecc", function="RFC_PING"))  # queued, handed to nobody
    envs = cp.svc.claim(AgentIdentity(a1, "plant1"), 1) or []
    assert [e["call"]["id"] for e in envs] == ["p1"]
    fake = ChannelResponse(id="p1", ok=True, result={"OBJ_KEY": "forged"})
    for call_id in ("p1", "q1"):
        with pytest.raises(AuthError) as exc:
            cp.svc.store_result(AgentIdentity(a2, "plant1"), fake.model_copy(update={"id": call_id}))
        assert exc.value.code == "not_claimant" and exc.value.status == 409
    rejected = audit_rows(cp.db, "agent.result.rejected")
    assert [(r.source, r.detail["call_id"], r.detail["reason"]) for r in rejected] == [
        (a2, "p1", "not_claimant"), (a2, "q1", "not_claimant")]  # audited, and the audit committed
    assert ch.result("p1") is None and ch.result("q1") is None
    real = ChannelResponse(id="p1", ok=True, result={"OBJ_KEY": "1900000001 1000 2025"})
    assert cp.svc.store_result(AgentIdentity(a1, "plant1"), real) == {"stored": True, "duplicate": False}
    got = ch.result("p1")
    assert got is not None and got.result == {"OBJ_KEY": "1900000001 1000 2025"}
    # once done, a second answer from anyone is a duplicate, acknowledged and ignored
    assert cp.svc.store_result(AgentIdentity(a2, "plant1"), fake)["duplicate"] is True


@pytest.mark.parametrize(("function", "param"), [
    ("RFC_READ_TABLE", "QUERY_TABLE"), ("RFC_READ_TABLE2", "QUERY_TABLE"), ("BBP_RFC_READ_TABLE", "QUERY_TABLE"),
    ("/BODS/RFC_READ_TABLE", "QUERY_TABLE"), ("/BODS/RFC_READ_TABLE2", "QUERY_TABLE"),
    ("/SAPDS/RFC_READ_TABLE2", "QUERY_TABLE"), ("RFC_GET_TABLE_ENTRIES", "TABLE_NAME"),
    ("TABLE_ENTRIES_GET_VIA_RFC", "TABNAME"), ("DDIF_FIELDINFO_GET", "TABNAME"),
])
def test_every_known_table_reader_has_its_table_checked(function: str, param: str) -> None:
    # allowed by name, and allowed by a broad wildcard: the table is checked either way
    for functions in ([function], ["*"], ["RFC_*", "/BODS/*", "/SAPDS/*", "BBP_*", "TABLE_*", "DDIF_*"]):
        cfg = table_allow_config(functions)
        assert check_allowed(cfg, "sap_ecc", function, {param: "LFA1"}) is None
        assert check_allowed(cfg, "sap_ecc", function, {param.lower(): "t001"}) is None  # names are case-blind
        f = check_allowed(cfg, "sap_ecc", function, {param: "USR02"})
        assert f is not None and f.type == "NotAllowed" and f.key == "USR02", (function, functions)
        assert f.details["table"] == "USR02" and function in f.message
        f = check_allowed(cfg, "sap_ecc", function, {"OTHER": "LFA1"})  # names no table: refused
        assert f is not None and f.type == "NotAllowed" and f.key == param


def test_table_rows_parameter_checks_every_row() -> None:
    cfg = table_allow_config(["EM_GET_NUMBER_OF_ENTRIES"])
    ok = {"IT_TABLES": [{"TABNAME": "LFA1"}, {"tabname": "T001"}]}
    assert check_allowed(cfg, "sap_ecc", "EM_GET_NUMBER_OF_ENTRIES", ok) is None
    bad = {"IT_TABLES": [{"TABNAME": "LFA1"}, {"TABNAME": "USR02"}]}
    f = check_allowed(cfg, "sap_ecc", "EM_GET_NUMBER_OF_ENTRIES", bad)
    assert f is not None and f.key == "USR02"
    f = check_allowed(cfg, "sap_ecc", "EM_GET_NUMBER_OF_ENTRIES", {"IT_TABLES": []})
    assert f is not None and f.type == "NotAllowed"


def test_unknown_generic_table_reader_needs_its_name_in_the_allow_list() -> None:
    wild = table_allow_config(["Z_*", "RFC_*", "BAPI_*"])
    # a custom reader matched only by a wildcard: refused (by its name, or by a table parameter)
    for function, params in (("Z_READ_ANY_TABLE", {"I_TAB": "LFA1"}), ("Z_MLC_DUMP", {"TABNAME": "LFA1"}),
                             ("RFC_GET_TABLE_DATA", {}), ("Z_TABLE_GET", {"X": "1"})):
        f = check_allowed(wild, "sap_ecc", function, params)
        assert f is not None and f.type == "NotAllowed" and f.key == function, function
        assert "wildcard" in f.message and "list it by name" in f.message
    # ordinary modules behind the same wildcards are unaffected
    assert check_allowed(wild, "sap_ecc", "Z_MLC_ACC_DOCUMENT_POST", {"DOCUMENTHEADER": {}}) is None
    assert check_allowed(wild, "sap_ecc", "BAPI_VENDOR_GETDETAIL", {"VENDORNO": "1"}) is None
    # named literally: served, and its table-naming parameters are checked
    named = table_allow_config(["Z_READ_ANY_TABLE", "Z_MLC_DUMP"])
    assert check_allowed(named, "sap_ecc", "Z_READ_ANY_TABLE", {"I_TAB": "USR02"}) is None  # no parameter we know
    assert check_allowed(named, "sap_ecc", "Z_MLC_DUMP", {"TABNAME": "LFA1"}) is None
    f = check_allowed(named, "sap_ecc", "Z_MLC_DUMP", {"TABNAME": "USR02"})
    assert f is not None and f.key == "USR02"


def test_lost_poll_answer_is_handed_out_again(cp: Any) -> None:
    agent_id, key = pair_agent(cp)
    ch = RemoteAgentChannel(cp.db, "plant1")
    ch.submit(ChannelRequest(id="post-1", system="sap_ecc", function="BAPI_ACC_DOCUMENT_POST"))
    me = {"hold": 0, "max": 1, "instance": "proc-one-0001"}
    r = signed_post(cp, agent_id, key, "/api/agent/poll", {**me, "held": []})
    assert [e["call"]["id"] for e in r.json()["calls"]] == ["post-1"]
    # that answer never reached the agent; its next poll reports holding nothing: the same call again
    r = signed_post(cp, agent_id, key, "/api/agent/poll", {**me, "held": []})
    assert [(e["call"]["id"], e["call"]["attempt"]) for e in r.json()["calls"]] == [("post-1", 2)]
    released = audit_rows(cp.db, "agent.call.released")
    assert [(e.source, e.detail["call_id"]) for e in released] == [(agent_id, "post-1")]
    # held by the agent (running, or its result not yet stored): left alone
    r = signed_post(cp, agent_id, key, "/api/agent/poll", {**me, "held": ["post-1"]})
    assert r.json()["calls"] == []
    # an agent that does not report what it holds (older version): nothing is released
    r = signed_post(cp, agent_id, key, "/api/agent/poll", {"hold": 0, "max": 1})
    assert r.json()["calls"] == [] and len(audit_rows(cp.db, "agent.call.released")) == 1
    # another process with the same identity (a cloned host) cannot free what this one claimed
    r = signed_post(cp, agent_id, key, "/api/agent/poll",
                    {"hold": 0, "max": 1, "held": [], "instance": "proc-two-0002"})
    assert r.json()["calls"] == [] and len(audit_rows(cp.db, "agent.call.released")) == 1
    # nor can another agent's report
    a2, k2 = pair_agent(cp)
    r = signed_post(cp, a2, k2, "/api/agent/poll", {"hold": 0, "max": 1, "held": [], "instance": "proc-one-0001"})
    assert r.json()["calls"] == []
    with cp.db.session() as s:
        row = s.get(AgentCallRow, "post-1")
        assert row is not None and row.state == "claimed" and row.agent_id == agent_id
        assert row.claim_instance == "proc-one-0001"
    # an agent that keeps refusing a call (e.g. its envelope does not verify) gets it a bounded number of times
    for _ in range(10):
        signed_post(cp, agent_id, key, "/api/agent/poll", {**me, "held": []})
    with cp.db.session() as s:
        row = s.get(AgentCallRow, "post-1")
        assert row is not None and row.attempts == cp.svc.settings.max_deliveries and row.state == "claimed"


def test_agent_reports_what_it_holds(cp: Any, tmp_path: Path) -> None:
    env = InProcessAgent(cp, tmp_path)
    st = env.agent.store
    st.begin("run-1", "sap_ecc", "BAPI_X")                     # running
    st.begin("done-1", "sap_ecc", "RFC_PING")
    st.finish("done-1", ChannelResponse(id="done-1", ok=True).model_dump_json())   # result not yet delivered
    st.begin("acked-1", "sap_ecc", "RFC_PING")
    st.finish("acked-1", ChannelResponse(id="acked-1", ok=True).model_dump_json())
    st.ack("acked-1")
    assert sorted(st.held()) == ["done-1", "run-1"]


def test_stale_call_refused_unexecuted_and_audited_on_both_sides(cp: Any, tmp_path: Path) -> None:
    env = InProcessAgent(cp, tmp_path)
    ch = RemoteAgentChannel(cp.db, "plant1")
    ch.submit(ChannelRequest(id="old-1", system="sap_ecc", function="STFC_CONNECTION", params={"REQUTEXT": "x"}))
    ch.submit(ChannelRequest(id="fresh-1", system="sap_ecc", function="STFC_CONNECTION", params={"REQUTEXT": "y"}))
    envs = cp.svc.claim(AgentIdentity(env.ident.agent_id, "plant1"), 2) or []
    by_id = {e["call"]["id"]: e for e in envs}
    # an envelope replayed long after it was issued (its id no longer in the agent's store)
    old = {**by_id["old-1"]["call"], "issued_at": time.time() - env.cfg.max_call_age - 60}
    env.agent.dispatch(proto.sign_call(cp.svc.control_key(), old))
    env.agent.dispatch(by_id["fresh-1"])
    env.agent.pool.shutdown(wait=True)
    assert [c for c, _ in env.calls] == ["STFC_CONNECTION"]  # only the fresh one ran
    resp = ch.result("old-1")
    assert resp is not None and resp.fault is not None and resp.fault.type == "StaleCall"
    assert resp.fault.details["uncertain"] is False and "max_call_age" in resp.fault.message
    agent_side = [e for e in env.agent.audit.events() if e["event"] == "call.refused"]
    assert [(e["call_id"], e["fault"]) for e in agent_side] == [("old-1", "StaleCall")]
    assert [a.detail["call_id"] for a in audit_rows(cp.db, "agent.call.refused")] == ["old-1"]
    fresh = ch.result("fresh-1")
    assert fresh is not None and fresh.ok
    # the agent's clock is corrected by the skew it measured: a fast host clock is not "stale"
    env.agent.client.skew = 3600.0
    ch.submit(ChannelRequest(id="skewed-1", system="sap_ecc", function="RFC_PING"))
    envs = cp.svc.claim(AgentIdentity(env.ident.agent_id, "plant1"), 1) or []
    assert env.agent._stale(envs[0]["call"]) is None
    env.agent.client.skew = 0.0
    assert env.agent._stale(envs[0]["call"]) is None
    assert env.agent._stale({**envs[0]["call"], "issued_at": None}) is not None  # unknown age: refused


def test_max_call_age_and_retention_are_validated() -> None:
    base: dict[str, Any] = {"systems": {}}
    cfg = AgentConfig.model_validate({**base, "max_call_age": "2m", "state_retention": "3d"})
    assert cfg.max_call_age == 120 and cfg.state_retention == 3 * 86400
    with pytest.raises(ValueError, match="state_retention"):
        AgentConfig.model_validate({**base, "state_retention": "1h"})  # shorter than a day
    with pytest.raises(ValueError, match="max_call_age"):
        AgentConfig.model_validate({**base, "max_call_age": "2h"})


def test_local_store_is_pruned_by_retention(cp: Any, tmp_path: Path) -> None:
    env = InProcessAgent(cp, tmp_path)
    st = env.agent.store
    for cid in ("a", "b", "c"):
        st.begin(cid, "sap_ecc", "RFC_PING")
        st.finish(cid, ChannelResponse(id=cid, ok=True).model_dump_json())
    st.ack("a")
    st.ack("b")
    now = time.time()
    assert env.agent.prune_state(now=now) == 0  # acknowledged just now: kept for dedupe
    later = now + env.cfg.state_retention + 1
    assert env.agent.prune_state(now=later) == 2
    assert st.get("a") is None and st.get("b") is None
    assert st.get("c") is not None  # never acknowledged: kept until delivered, whatever its age
    assert [e["calls"] for e in env.agent.audit.events() if e["event"] == "state.pruned"] == [2]


def test_agent_prunes_on_start(cp: Any, tmp_path: Path) -> None:
    env = InProcessAgent(cp, tmp_path)
    st = env.agent.store
    st.begin("old", "sap_ecc", "RFC_PING")
    st.finish("old", ChannelResponse(id="old", ok=True).model_dump_json())
    st.ack("old")
    st._db.execute("UPDATE agent_calls SET acked_at = ? WHERE id = 'old'",
                   (time.time() - env.cfg.state_retention - 10,))
    t = threading.Thread(target=env.agent.run, daemon=True)
    t.start()
    try:
        wait_until(lambda: st.get("old") is None, timeout=10, interval=0.01)
    finally:
        env.agent.stop_event.set()
        t.join(5)


def test_agent_unknown_to_the_control_plane_exits_4(cp: Any, tmp_path: Path) -> None:
    env = InProcessAgent(cp, tmp_path)
    env.agent.ident.agent_id = env.agent.client.ident.agent_id = "agt_forgotten"
    code = env.agent.run()
    assert code == 4 and env.agent.fatal is not None and env.agent.fatal.code == "unknown_agent"


# --------------------------------------------------------------------------- hostile input (issue 16, 7-10)


def test_query_string_is_signed(cp: Any) -> None:
    agent_id, key = pair_agent(cp)
    body = b'{"hold":0}'
    # signed with its query string and sent as signed: accepted
    h = proto.sign_headers(key, agent_id, "POST", "/api/agent/poll?trace=1", body, now=time.time())
    ok = cp.client.post("/api/agent/poll?trace=1", content=body, headers=h)
    assert ok.status_code == 200, ok.text
    # a query string added (or changed) in transit: refused
    h = proto.sign_headers(key, agent_id, "POST", "/api/agent/poll", body, now=time.time())
    r = cp.client.post("/api/agent/poll?hold=9", content=body, headers=h)
    assert r.status_code == 401 and r.json()["detail"]["error"] == "bad_signature"
    h = proto.sign_headers(key, agent_id, "POST", "/api/agent/poll?a=1", body, now=time.time())
    assert cp.client.post("/api/agent/poll?a=2", content=body, headers=h).status_code == 401


@pytest.mark.parametrize("nonce", ["a", "0" * 31, "0" * 33, "AB" * 16, "g" * 32, "ab" * 15 + "-_"])
def test_nonce_of_fixed_length_and_alphabet(cp: Any, nonce: str) -> None:
    agent_id, key = pair_agent(cp)
    r = signed_post(cp, agent_id, key, "/api/agent/poll", {"hold": 0}, nonce=nonce)
    assert r.status_code == 401, r.text
    assert r.json()["detail"]["error"] == "missing_headers" and "32 lowercase hex" in r.json()["detail"]["message"]
    assert rejections(cp.db) == ["missing_headers"]
    assert signed_post(cp, agent_id, key, "/api/agent/poll", {"hold": 0}, nonce="0a" * 16).status_code == 200


def test_result_for_an_unknown_call_is_refused_and_audited(cp: Any) -> None:
    agent_id, key = pair_agent(cp)
    resp = ChannelResponse(id="call-nobody-queued", ok=True, result={"X": 1})
    r = signed_post(cp, agent_id, key, "/api/agent/results", {"response": json.loads(resp.model_dump_json())})
    assert r.status_code == 404 and r.json()["detail"]["error"] == "unknown_call"
    rows = audit_rows(cp.db, "agent.result.rejected")
    assert len(rows) == 1
    assert rows[0].source == agent_id and rows[0].detail["reason"] == "unknown_call"
    assert rows[0].detail["call_id"] == "call-nobody-queued"


def test_event_detail_is_bounded(cp: Any) -> None:
    agent_id, key = pair_agent(cp)
    big = {"note": "x" * 50_000, "call_id": "c1"}
    r = signed_post(cp, agent_id, key, "/api/agent/events", {"event": "tampered_call", "detail": big})
    assert r.status_code == 200, r.text
    (row,) = audit_rows(cp.db, "agent.call.tampered")
    stored = json.dumps(row.detail)
    assert len(stored) < 4200 and row.detail["truncated"] is True and row.detail["original_bytes"] > 50_000
    # small details are stored as sent
    r = signed_post(cp, agent_id, key, "/api/agent/events", {"event": "refused", "detail": {"call_id": "c2"}})
    assert r.status_code == 200
    (row,) = audit_rows(cp.db, "agent.call.refused")
    assert row.detail == {"event": "refused", "call_id": "c2"}


@pytest.mark.parametrize("route,size", [("pair", 9_000), ("events", 70_000), ("poll", 3 * 1024 * 1024)])
def test_bodies_over_the_route_limit_are_refused_413(cp: Any, route: str, size: int) -> None:
    agent_id, key = pair_agent(cp)
    body = b'{"pad":"' + b"x" * size + b'"}'
    headers = proto.sign_headers(key, agent_id, "POST", f"/api/agent/{route}", body, now=time.time())
    r = cp.client.post(f"/api/agent/{route}", content=body, headers=headers)
    assert r.status_code == 413, r.text
    d = r.json()["detail"]
    assert d["error"] == "body_too_large" and f"/api/agent/{route} accepts at most" in d["message"]

    def chunks() -> Any:  # streamed (no Content-Length): refused as it passes the limit
        for _ in range(size // 1000 + 2):
            yield b"x" * 1000

    r = cp.client.post(f"/api/agent/{route}", content=chunks(), headers=headers)
    assert r.status_code == 413, r.text


def test_malformed_pairing_token_refused_without_lookup(cp: Any) -> None:
    key = proto.generate_key()
    r = cp.client.post("/api/agent/pair", json={"token": "mlcpt_x", "public_key": proto.public_key_text(key)})
    assert r.status_code == 401 and "malformed pairing token" in r.json()["detail"]["message"]


def test_result_over_the_limit_answers_the_call_with_a_fault(cp: Any, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A result larger than the control plane accepts is not retried for ever: the caller gets
    RESULT_TOO_LARGE (uncertain: the call ran)."""
    from ml_connector.server import agent_api

    monkeypatch.setitem(agent_api.BODY_LIMITS, "results", 4096)
    env = InProcessAgent(cp, tmp_path)
    t = threading.Thread(target=env.agent.run, daemon=True)
    t.start()
    try:
        ch = RemoteAgentChannel(cp.db, "plant1", timeout=10)
        resp = ch.call(ChannelRequest(system="sap_ecc", function="STFC_CONNECTION", params={"REQUTEXT": "x" * 8000}))
        assert not resp.ok and resp.fault is not None and resp.fault.key == "RESULT_TOO_LARGE"
        assert resp.fault.details["uncertain"] is True and len(env.calls) == 1
        # a small one still goes through
        ok = ch.call(ChannelRequest(system="sap_ecc", function="STFC_CONNECTION", params={"REQUTEXT": "hi"}))
        assert ok.ok and ok.result is not None and ok.result["ECHOTEXT"] == "hi"
    finally:
        env.agent.stop_event.set()
        t.join(5)
