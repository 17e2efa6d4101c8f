"""The pair's JSON API on the control plane (/api/flows/<flow>/...): the audience check and the gap
check (operator role), the latest gap check's result and the gap history (viewer role), over HTTP
with API tokens, against the SAP ECC and Marketing Cloud sandboxes on loopback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from ml_connector.core import audit
from ml_connector.server.api_auth import create_token
from ml_connector.systems.sap_ecc.idoc_models import IdocRow
from tests.support.sandboxes import running_sandboxes
from tests.support.sfmc import control_plane, de_rows, make_sfmc_env, send_list

CUST = "ML_SAP_Customer_Status"


def test_audience_check_needs_operator_and_gap_history_viewer(tmp_path):
    with running_sandboxes(vendors=5, systems=("sap_ecc", "sfmc")) as handles:
        ecc, mc = handles["sap_ecc"].state, handles["sfmc"].info
        env = make_sfmc_env(tmp_path, handles["sap_ecc"].url, mc)
        env.cli("sync", "customers_to_sfmc", "--stream", "customers", "--full")
        members = sorted(k for k, r in de_rows(mc, CUST).items() if r["EligibleForMarketing"] == "True")[:4]
        blocked_now = members[1]
        ecc.data.update_customer(blocked_now, SPERR="X")  # blocked in SAP moments before the send
        lost = next(k for k, r in sorted(de_rows(mc, CUST).items()) if r["EligibleForMarketing"] == "True"
                    and k not in members)
        ecc.data.update_customer(lost, SPERR="X")  # its update to Marketing Cloud is lost
        send_list(mc, "SPRING_PROMO", members)
        with control_plane(env) as (base, rt):
            _, viewer = create_token(rt.db, "dashboard", role="viewer")
            _, operator = create_token(rt.db, "campaigns", role="operator")
            flow_api = f"{base}/api/flows/customers_to_sfmc"

            def call(method: str, path: str, token: str | None, **kw: object) -> httpx.Response:
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                return httpx.request(method, f"{flow_api}{path}", headers=headers, timeout=60, **kw)  # type: ignore[arg-type]

            body = {"de_key": "SPRING_PROMO"}
            assert call("GET", "/gaps/history", None).status_code == 401
            assert call("POST", "/audience/check", None, json=body).status_code == 401
            assert call("POST", "/audience/check", viewer, json=body).status_code == 403
            assert call("GET", "/gaps/history", viewer).json() == []
            with rt.db.session() as s:  # gaps as sync_gaps records them: this flow's and another flow's
                for flow, customer in (("customers_to_sfmc", "0000100001"), ("other_flow", "0000100002"),
                                       ("customers_to_sfmc", "0000100003")):
                    audit.record(s, "sync.gap", outcome="corrected", flow=flow, stream="customers",
                                 source=f"sap:{customer}", detail={"customer": customer, "lag_seconds": 90})
            gaps = call("GET", "/gaps/history", viewer, params={"limit": 5})
            assert gaps.status_code == 200, gaps.text
            assert [(g["flow"], g["customer"]) for g in gaps.json()] == [
                ("customers_to_sfmc", "0000100003"), ("customers_to_sfmc", "0000100001")]

            # The gap check: GET gives the latest result (none yet) and runs nothing; POST runs it.
            assert call("GET", "/gaps", None).status_code == 401
            assert call("GET", "/gaps", viewer).json()["checked_at"] is None
            assert call("POST", "/gaps/check", viewer, json={}).status_code == 403
            with rt.db.session() as s:  # SAP announced `lost`'s block two minutes ago; the update never arrived
                s.add(IdocRow(docnum="9000000001", mestyp="DEBMAS", idoctyp="DEBMAS07", sndprn="ECCCLNT100",
                              received_at=datetime.now(UTC) - timedelta(seconds=120), raw=b"",
                              parsed={"segments": [{"segment": "E1KNA1M", "fields": {"KUNNR": lost}}]}))
            ran = call("POST", "/gaps/check", operator, json={"max_lag": 60})
            assert ran.status_code == 200, ran.text
            assert (ran.json()["checked"], [g["customer"] for g in ran.json()["gaps"]]) == (1, [lost])
            assert ran.json()["gaps"][0]["fields"]["PostingBlocked"] == {"sfmc": "False", "sap": "True"}
            assert de_rows(mc, CUST)[lost]["PostingBlocked"] == "True"  # corrected by the check
            assert de_rows(mc, CUST)[blocked_now]["PostingBlocked"] == "False"  # not announced: not checked
            latest = call("GET", "/gaps", viewer).json()
            assert latest == ran.json() and latest["checked_at"] is not None
            assert call("GET", "/gaps/history", viewer).json()[0]["customer"] == lost

            report = call("POST", "/audience/check", operator, json=body)
            assert report.status_code == 200, report.text
            out = report.json()
            assert (out["checked"], out["ineligible"]) == (4, 1)
            assert [m["key"] for m in out["members"] if not m["eligible"]] == [blocked_now]
            assert {k for k, r in de_rows(mc, "SPRING_PROMO").items() if r["Eligible"] == "False"} == {blocked_now}
            assert de_rows(mc, CUST)[blocked_now]["PostingBlocked"] == "True"  # corrected on the spot

            unknown = call("POST", "/audience/check", operator, json={"de_key": "NO_SUCH_LIST"})
            assert unknown.status_code == 422 and "NO_SUCH_LIST" in unknown.text
            paths = httpx.get(f"{base}/openapi.json", timeout=10).json()["paths"]
            assert {"/api/flows/customers_to_sfmc/audience/check",
                    "/api/flows/customers_to_sfmc/gaps/history", "/api/flows/customers_to_sfmc/gaps",
                    "/api/flows/customers_to_sfmc/gaps/check"} <= set(paths)
