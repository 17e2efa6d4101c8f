"""RampClient retry / backoff / error parsing against a mock transport (no network)."""

from __future__ import annotations

import httpx
import pytest

from ml_connector.core.ratelimit import RollingWindowLimiter
from ml_connector.systems.ramp.client import RampApiError, RampTransportError, RampUncertainWrite
from tests.support.ramp_scripts import make, scripted

OK = httpx.Response(200, json={"data": [], "page": {"next": None}})
E429 = httpx.Response(429, json={"error_v2": {"error_code": "X", "message": "slow down"}})


def test_429_backoff_doubles_and_continues() -> None:
    handler, _seen = scripted(E429, E429, E429, E429, OK)
    sleeps: list[float] = []
    c = make(handler, sleeps)
    assert list(c.iter_accounting_vendors()) == []
    assert sleeps == [1.0, 2.0, 4.0, 8.0]
    assert c.throttled == 4 and c.requests == 5


def test_429_backoff_is_capped() -> None:
    handler, _ = scripted(*([E429] * 8), OK)
    sleeps: list[float] = []
    make(handler, sleeps).get_business()
    assert max(sleeps) == 30.0 and sleeps[:3] == [1.0, 2.0, 4.0]


def test_retry_after_is_honoured() -> None:
    handler, _ = scripted(httpx.Response(429, headers={"Retry-After": "7"}, json={}), OK)
    sleeps: list[float] = []
    make(handler, sleeps).get_business()
    assert sleeps == [7.0]


def test_429_with_limiter_penalizes_instead_of_sleeping() -> None:
    now = [0.0]
    lim_sleeps: list[float] = []

    def lsleep(s: float) -> None:
        lim_sleeps.append(s)
        now[0] += s

    lim = RollingWindowLimiter(100, 10, clock=lambda: now[0], sleep=lsleep)
    handler, _ = scripted(E429, E429, OK)
    sleeps: list[float] = []
    make(handler, sleeps, limiter=lim).get_business()
    assert sleeps == []
    assert lim_sleeps == [1.0, 2.0]


def test_max_429_wait_bounds_the_wait() -> None:
    handler, _ = scripted(E429)
    sleeps: list[float] = []
    with pytest.raises(RampApiError) as ei:
        make(handler, sleeps, max_429_wait=5).get_business()
    assert ei.value.status == 429 and sleeps == [1.0, 2.0]


def test_get_5xx_retried_then_fails() -> None:
    handler, seen = scripted(httpx.Response(503, json={}))
    sleeps: list[float] = []
    with pytest.raises(RampApiError) as ei:
        make(handler, sleeps, max_retries=3).get_business()
    assert ei.value.status == 503 and len(seen) == 4 and sleeps == [1.0, 2.0, 4.0]


def test_get_transport_error_retried() -> None:
    handler, seen = scripted(httpx.ReadError("reset"), httpx.RemoteProtocolError("gone"), OK)
    sleeps: list[float] = []
    make(handler, sleeps).get_business()
    assert len(seen) == 3


def test_get_transport_error_gives_up() -> None:
    handler, _ = scripted(httpx.ReadError("reset"))
    with pytest.raises(RampTransportError):
        make(handler, [], max_retries=2).get_business()


@pytest.mark.parametrize("failure", [httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("dropped"),
                                     httpx.Response(500, json={}), httpx.Response(502, text="bad gw")])
def test_post_uncertain(failure: httpx.Response | Exception) -> None:
    handler, seen = scripted(failure, OK)
    with pytest.raises(RampUncertainWrite):
        make(handler, []).create_accounting_vendors([{"id": "1", "name": "A"}])
    assert len(seen) == 1  # never blindly re-POSTed


def test_post_connect_error_is_safe_to_retry() -> None:
    handler, seen = scripted(httpx.ConnectError("refused"),
                             httpx.Response(201, json={"vendors": [], "uploaded": []}))
    make(handler, []).create_accounting_vendors([{"id": "1", "name": "A"}])
    assert len(seen) == 2


def test_post_429_is_retried() -> None:
    handler, seen = scripted(E429, httpx.Response(201, json={"vendors": [], "uploaded": []}))
    make(handler, []).create_accounting_vendors([{"id": "1", "name": "A"}])
    assert len(seen) == 2


def test_batch_bounds() -> None:
    handler, seen = scripted(OK)
    c = make(handler, [])
    with pytest.raises(ValueError):
        c.create_accounting_vendors([{"id": str(i), "name": "x"} for i in range(501)])
    with pytest.raises(ValueError):
        c.create_gl_accounts([])
    assert seen == []


def test_error_v2_and_legacy_parsing() -> None:
    body = {"error_v2": {"error_code": "DEVELOPER_7001", "message": "Value must be between 2 and 100",
                         "additional_info": {"page_size": ["Value must be between 2 and 100"]}, "notes": ""},
            "error": {"page_size": ["Value must be between 2 and 100"]}}
    handler, _ = scripted(httpx.Response(400, json=body, headers={"x-trace-id": "t-1"}))
    with pytest.raises(RampApiError) as ei:
        list(make(handler, []).iter_accounting_vendors(page_size=1))
    e = ei.value
    assert (e.status, e.error_code, e.trace_id) == (400, "DEVELOPER_7001", "t-1")
    assert e.additional_info == {"page_size": ["Value must be between 2 and 100"]}
    assert "t-1" in str(e)

    handler, _ = scripted(httpx.Response(422, json={"error": {"name": ["required"]}}))
    with pytest.raises(RampApiError) as ei:
        make(handler, []).get_business()
    assert ei.value.error_code is None and ei.value.additional_info == {"name": ["required"]}


def test_paging_follows_next_without_resending_params() -> None:
    pages = {
        None: {"data": [{"id": "a"}, {"id": "b"}],
               "page": {"next": "https://demo-api.ramp.com/developer/v1/accounting/vendors?page_size=2&start=b"}},
        "b": {"data": [{"id": "c"}], "page": {"next": None}},
    }
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json=pages[request.url.params.get("start")])

    c = make(handler, [])
    assert [v["id"] for v in c.iter_accounting_vendors(page_size=2, is_active=True)] == ["a", "b", "c"]
    assert "is_active=true" in seen[0] and seen[1].endswith("page_size=2&start=b")


def test_sync_report_is_resent_with_its_key_attempts_times_then_uncertain() -> None:
    handler, seen = scripted(httpx.Response(500, json={}))
    sleeps: list[float] = []
    with pytest.raises(RampUncertainWrite) as ei:
        make(handler, sleeps).post_accounting_sync("key-1", "BILL_SYNC", successful=[{"id": "b"}])
    assert ei.value.status == 500 and len(seen) == 3 and sleeps == [1.0, 2.0]
    assert all(r.content == seen[0].content for r in seen)  # the same idempotency key every time
    handler, seen = scripted(httpx.ReadTimeout("lost"), httpx.Response(201, json={"id": "s1"}))
    assert make(handler, []).post_accounting_sync("key-2", "BILL_SYNC")["id"] == "s1" and len(seen) == 2


def test_field_upsert_is_idempotent_on_id_and_retried() -> None:
    handler, seen = scripted(httpx.Response(502, text="bad gw"), httpx.RemoteProtocolError("drop"),
                             httpx.Response(200, json={"ramp_id": "f1"}))
    assert make(handler, []).upsert_accounting_field("cc", "Cost center")["ramp_id"] == "f1"
    assert len(seen) == 3
    handler, seen = scripted(httpx.Response(503, json={}))
    with pytest.raises(RampTransportError):
        make(handler, [], max_retries=2).upsert_accounting_field("cc", "Cost center")
    assert len(seen) == 3


def test_sync_report_lost_answers_end_uncertain() -> None:
    handler, seen = scripted(httpx.ReadTimeout("lost"))
    with pytest.raises(RampUncertainWrite):
        make(handler, []).post_accounting_sync("key-3", "BILL_SYNC", attempts=2)
    assert len(seen) == 2
