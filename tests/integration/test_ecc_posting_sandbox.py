"""FI/MM posting over real HTTP against the ECC sandbox: conformance, LUW rule, exactly-once."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest

sandbox_app = pytest.importorskip("ml_connector.systems.sap_ecc.sandbox.app")

from ml_connector.core.channel import InProcessChannel  # noqa: E402
from ml_connector.core.ratelimit import reset_budgets  # noqa: E402
from ml_connector.core.servers import ServerHandle, serve_in_thread  # noqa: E402
from ml_connector.systems.sap_ecc.client import ChannelRfcCaller, make_handler  # noqa: E402
from ml_connector.systems.sap_ecc.errors import CommunicationError, LogonError  # noqa: E402
from ml_connector.systems.sap_ecc.posting import (  # noqa: E402
    ACC_TABLES,
    DocumentPoster,
    GLLine,
    GLPosting,
    MMInvoice,
    MMInvoiceItem,
    OutcomeUnknownError,
    PostingError,
    build_acc_document,
    document_xblnr,
    split_obj_key,
)
from ml_connector.systems.sap_ecc.sandbox import ddic, fi  # noqa: E402
from tests.support.ecc_posting import (  # noqa: E402
    CLIENT,
    USER,
    WRAPPER,
    Arming,
    RefusingTransport,
    all_docs,
    cap_arm,
    client_for,
    document,
    fault_arm,
    invoice,
    live_docs,
    poster_for,
    purchase_order,
    vendor,
    wrapper_of,
)

EccSandbox = sandbox_app.EccSandbox
create_app = sandbox_app.create_app


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Any, ServerHandle]]:
    state = EccSandbox(vendors=400, seed=11)
    handle = serve_in_thread(create_app(state), name="ecc-posting")
    try:
        yield state, handle
    finally:
        handle.stop()


@pytest.fixture()
def sandbox(server: tuple[Any, ServerHandle]) -> Iterator[Any]:
    state, _ = server
    reset_budgets()
    yield state
    state.faults.reset()
    state.fi.faults.update(reset=True)
    fi.set_open_periods(state.data, "1000", 2020, 1, 2035, 16, client=CLIENT)


# ---------------------------------------------------------------------------------------------
# conformance


def test_wrapper_success_rw605_and_obj_key(server: tuple[Any, ServerHandle], sandbox: Any) -> None:
    doc = invoice(sandbox)
    out = client_for(server).call(WRAPPER, build_acc_document(doc), tables=ACC_TABLES)
    assert out["OBJ_TYPE"] == "BKPFF"
    obj_key = out["OBJ_KEY"]
    assert re.fullmatch(r"\d{10}1000\d{4}", obj_key)
    assert out["OBJ_SYS"] == "ECDCLNT100"
    [ret] = out["RETURN"]
    assert (ret["TYPE"], ret["ID"], ret["NUMBER"]) == ("S", "RW", "605")
    assert ret["MESSAGE"] == f"Document posted successfully: BKPFF {obj_key} ECDCLNT100"
    assert (ret["MESSAGE_V1"], ret["MESSAGE_V2"], ret["MESSAGE_V3"]) == ("BKPFF", obj_key, "ECDCLNT100")
    belnr, bukrs, gjahr = split_obj_key(obj_key)
    assert (bukrs, gjahr) == ("1000", "2025") and belnr.startswith("19")  # KR number range
    bkpf = sandbox.data.get("BKPF", (bukrs, belnr, gjahr), CLIENT)
    assert bkpf["XBLNR"] == document_xblnr(doc) and bkpf["AWKEY"] == obj_key and bkpf["BLART"] == "KR"
    lines = [r for r in sandbox.data.rows("BSEG", CLIENT) if r["BELNR"] == belnr and r["GJAHR"] == gjahr
             and r["BUKRS"] == bukrs]
    assert [(r["KOART"], r["SHKZG"], r["BSCHL"], r["WRBTR"]) for r in lines] == [
        ("K", "H", "31", "800.00"), ("S", "S", "40", "600.00"), ("S", "S", "40", "200.00")]
    assert any(r["BELNR"] == belnr for r in sandbox.data.rows("BSIK", CLIENT))


def test_error_rw609_with_f5_104_names_parameter_row_field(server: tuple[Any, ServerHandle],
                                                           sandbox: Any) -> None:
    doc = invoice(sandbox, vendor="9999999")
    out = client_for(server).call(WRAPPER, build_acc_document(doc), tables=ACC_TABLES)
    assert out["OBJ_KEY"] == "$"
    first = out["RETURN"][0]
    assert (first["TYPE"], first["ID"], first["NUMBER"]) == ("E", "RW", "609")
    assert first["MESSAGE"] == "Error in document: BKPFF $ ECDCLNT100"
    f5 = [r for r in out["RETURN"] if (r["ID"], r["NUMBER"]) == ("F5", "104")]
    assert f5 and f5[0]["MESSAGE"] == "Vendor 9999999 is not defined in company code 1000"
    assert any((r["PARAMETER"], r["ROW"], r["FIELD"]) == ("ACCOUNTPAYABLE", "1", "VENDOR_NO") for r in f5)
    with pytest.raises(PostingError) as err:
        poster_for(client_for(server)).post(doc)
    e = err.value
    assert (e.parameter, e.row, e.field, e.msg_id, e.msg_number) == ("ACCOUNTPAYABLE", 1, "VENDOR_NO", "F5", "104")
    assert "ACCOUNTPAYABLE row 1 field VENDOR_NO" in str(e)
    assert all_docs(sandbox, doc) == []


def test_commit_in_separate_request_commits_nothing(server: tuple[Any, ServerHandle], sandbox: Any) -> None:
    doc = invoice(sandbox)
    client = client_for(server)
    out = client.call("BAPI_ACC_DOCUMENT_POST", build_acc_document(doc), tables=ACC_TABLES)
    assert out["RETURN"][0]["NUMBER"] == "605" and out["OBJ_KEY"] != "$"
    commit = client.call("BAPI_TRANSACTION_COMMIT", {"WAIT": "X"})
    ret = commit["RETURN"]
    assert isinstance(ret, dict) and ret["TYPE"] == "" and ret["NUMBER"] == "000"
    belnr, bukrs, gjahr = split_obj_key(out["OBJ_KEY"])
    assert sandbox.data.get("BKPF", (bukrs, belnr, gjahr), CLIENT) is None
    assert all_docs(sandbox, doc) == []


def test_dry_run_checks_and_writes_nothing(server: tuple[Any, ServerHandle], sandbox: Any) -> None:
    poster = poster_for(client_for(server))
    before = sandbox.data.count("BKPF", CLIENT)
    doc = invoice(sandbox)
    msgs = poster.check(doc)
    assert not any(m.is_error for m in msgs)
    with pytest.raises(PostingError) as err:
        poster.check(invoice(sandbox, lines=(GLLine("620000", Decimal(5), cost_center="4711"),)))
    assert (err.value.msg_id, err.value.msg_number, err.value.field) == ("KI", "248", "COSTCENTER")
    assert sandbox.data.count("BKPF", CLIENT) == before


def test_credit_memo_and_gl_posting(server: tuple[Any, ServerHandle], sandbox: Any) -> None:
    poster = poster_for(client_for(server))
    memo = invoice(sandbox, credit_memo=True)
    res = poster.post(memo)
    vend = sandbox.data.get("BSEG", ("1000", res.belnr, res.gjahr, "001"), CLIENT)
    assert (vend["SHKZG"], vend["BSCHL"]) == ("S", "21")
    gl = GLPosting(source_id=f"je-{uuid.uuid4()}", company_code="2000", currency="EUR",
                   doc_date=date(2025, 4, 1), posting_date=date(2025, 4, 1),
                   lines=(GLLine("640000", Decimal("1000"), cost_center="2000"),
                          GLLine("113100", Decimal("-1000"))))
    res2 = poster.post(gl)
    assert res2.bukrs == "2000" and res2.belnr.startswith("01")


# ---------------------------------------------------------------------------------------------
# exactly once


UNCERTAIN = ["drop_before_processing", "system_failure_before_posting", "concurrency_cap",
             "after_commit_hang", "after_commit_system_failure", "after_commit_drop", "after_commit_partial",
             "after_commit_http_502", "after_commit_http_504"]
KINDS = ["vendor_invoice", "credit_memo", "gl_posting", "mm_invoice"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("scenario", UNCERTAIN)
def test_uncertain_outcomes_resolve_to_exactly_one_document(server: tuple[Any, ServerHandle], sandbox: Any,
                                                            scenario: str, kind: str) -> None:
    timeout = 10.0
    if scenario == "drop_before_processing":
        arm = fault_arm(sandbox, fail_next=1, fail_kind="drop")
    elif scenario == "system_failure_before_posting":
        arm = fault_arm(sandbox, fail_next=1, fail_kind="system_failure")
    elif scenario == "concurrency_cap":
        arm = cap_arm(sandbox)
    else:
        mode = scenario.removeprefix("after_commit_")
        sandbox.fi.faults.update(fail_after_commit_mode=mode, hang_seconds=1.5)
        arm = fault_arm(sandbox.fi, fail_after_commit=1)
        if mode == "hang":
            timeout = 0.5
    target = wrapper_of(kind)
    caller = Arming(client_for(server, timeout=timeout), arm, target=target)
    poster = poster_for(caller)
    doc = document(sandbox, kind)
    res = poster.post(doc)
    committed_before = scenario.startswith("after_commit")
    assert res.recovered is committed_before
    assert caller.calls.count(target) == (1 if committed_before else 2)
    assert [r["BELNR"] for r in live_docs(sandbox, doc)] == [res.belnr]
    if kind == "mm_invoice":
        assert res.invoice_number and live_docs(sandbox, doc)[0]["AWKEY"] == res.invoice_number + res.gjahr
    # and a later retry of the same source record is a no-op
    again = poster_for(client_for(server)).post(doc)
    assert again.already_posted and again.belnr == res.belnr
    assert len(all_docs(sandbox, doc)) == 1


@pytest.mark.parametrize("mode", ["drop", "partial", "http_502", "http_504"])
def test_after_commit_response_faults_over_http(server: tuple[Any, ServerHandle], sandbox: Any, mode: str) -> None:
    """What the client sees of each after-commit response fault: an uncertain CommunicationError
    (the document is committed all the same)."""
    doc = invoice(sandbox)
    sandbox.fi.faults.update(fail_after_commit=1, fail_after_commit_mode=mode)
    with pytest.raises(CommunicationError) as err:
        client_for(server).call(WRAPPER, build_acc_document(doc), tables=ACC_TABLES)
    assert err.value.uncertain
    if mode.startswith("http_"):
        assert err.value.key == f"HTTP_{mode[-3:]}"
    else:
        assert "failed after the request was sent" in str(err.value)
    assert len(live_docs(sandbox, doc)) == 1
    assert sandbox.stats.faults_injected[f"response_{mode}"] >= 1
    # the next request on the same client is answered normally
    assert client_for(server).call("RFC_PING") is not None


@pytest.mark.parametrize("kind", ["vendor_invoice", "mm_invoice"])
@pytest.mark.parametrize("lookup", ["bkpf_not_authorized", "lookup_fm_system_failure"])
def test_lookup_failing_after_uncertain_outcome_is_outcome_unknown(server: tuple[Any, ServerHandle],
                                                                   sandbox: Any, lookup: str, kind: str) -> None:
    """The wrapper commits, its answer is lost, and every lookup fails: OutcomeUnknownError, the
    wrapper is not called again; a later retry (faults cleared) finds the one document."""
    target = wrapper_of(kind)

    def arm() -> Callable[[], None]:
        sandbox.fi.faults.update(fail_after_commit=1, fail_after_commit_mode="partial")

        def lookups_fail() -> None:  # from now on, until the faults are reset
            if lookup == "bkpf_not_authorized":
                sandbox.faults.update(not_authorized={USER: ["BKPF"]})
            else:
                sandbox.faults.update(fail_next=10_000, fail_kind="system_failure")
        return lookups_fail

    caller = Arming(client_for(server), arm, target=target)
    lookup_function = "Z_MLC_DOCUMENT_BY_XBLNR" if lookup == "lookup_fm_system_failure" else None
    poster = poster_for(caller, lookup_function=lookup_function)
    doc = document(sandbox, kind)
    with pytest.raises(OutcomeUnknownError) as err:
        poster.post(doc)
    assert err.value.xblnr == document_xblnr(doc) and err.value.bukrs == doc.company_code
    assert isinstance(err.value.cause, CommunicationError) and err.value.cause.uncertain
    assert caller.calls.count(target) == 1  # never posted a second time
    assert poster.stats["lookups"] >= 1 + poster.uncertain_lookups
    assert len(all_docs(sandbox, doc)) == 1
    calls_before = sum(sandbox.stats.calls.values())
    sandbox.faults.reset()
    again = poster_for(client_for(server), lookup_function=lookup_function).post(doc)
    assert again.already_posted and sum(sandbox.stats.calls.values()) > calls_before
    assert [r["BELNR"] for r in live_docs(sandbox, doc)] == [again.belnr]
    assert len(all_docs(sandbox, doc)) == 1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("lookup_first", [False, True])
def test_concurrent_attempts_post_exactly_one_document(server: tuple[Any, ServerHandle], sandbox: Any,
                                                       kind: str, lookup_first: bool) -> None:
    """Two threads post the same source record at the same moment (each with its own HTTP client);
    the wrapper holds a slow posting between guard and commit, so without an atomic XBLNR guard
    both would pass it. Exactly one document; the other attempt resolves to it."""
    sandbox.fi.faults.update(post_delay=0.3)
    doc = document(sandbox, kind)
    start = threading.Barrier(2)
    results: list[Any] = []
    errors: list[BaseException] = []

    def attempt() -> None:
        poster = poster_for(client_for(server, max_concurrency=8), lookup_first=lookup_first)
        start.wait()
        try:
            results.append(poster.post(doc))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert len(results) == 2
    [doc_row] = live_docs(sandbox, doc)
    assert {r.belnr for r in results} == {doc_row["BELNR"]}
    assert sorted(r.already_posted for r in results) == [False, True]
    assert len(all_docs(sandbox, doc)) == 1
    assert sandbox.fi.enqueue.held() == 0


def test_foreign_lock_is_waited_out(server: tuple[Any, ServerHandle], sandbox: Any) -> None:
    """The XBLNR is locked longer than the ENQUEUE wait (another attempt is in its LUW): the wrapper
    answers E MC 601 and posts nothing; DocumentPoster settles, looks again and finds the other
    attempt's document."""
    sandbox.fi.faults.update(enqueue_wait_seconds=0.05)
    doc = invoice(sandbox)
    key = (CLIENT, doc.company_code, document_xblnr(doc))
    assert sandbox.fi.enqueue.acquire(key, 0)  # the other attempt holds the lock
    out = client_for(server).call(WRAPPER, build_acc_document(doc), tables=ACC_TABLES)
    locked = [r for r in out["RETURN"] if (r["ID"], r["NUMBER"]) == ("MC", "601")]
    assert locked and locked[0]["MESSAGE"] == f"Object requested is currently locked by user {USER}"
    assert out["OBJ_KEY"] == "$" and all_docs(sandbox, doc) == []
    other: list[Any] = []

    def nap(s: float) -> None:  # while this attempt settles, the other one commits and dequeues
        if not other:
            sandbox.fi.enqueue.release(key)
            other.append(poster_for(client_for(server)).post(doc))

    second = DocumentPoster(client_for(server), lookup_first=False, sleep=nap, settle_seconds=0.3).post(doc)
    assert other and second.already_posted and second.belnr == other[0].belnr
    assert len(all_docs(sandbox, doc)) == 1 and sandbox.fi.enqueue.held() == 0


def test_connect_refused_is_retried_by_the_client(server: tuple[Any, ServerHandle], sandbox: Any) -> None:
    poster = poster_for(client_for(server, transport=RefusingTransport(2)))
    doc = invoice(sandbox)
    res = poster.post(doc)
    assert not res.recovered and len(all_docs(sandbox, doc)) == 1


def test_connect_refused_exhausted_then_retry_later(server: tuple[Any, ServerHandle], sandbox: Any) -> None:
    doc = invoice(sandbox)
    dead = poster_for(client_for(server, transport=RefusingTransport(100), max_attempts=2), lookup_first=False)
    with pytest.raises(CommunicationError) as err:
        dead.post(doc)
    assert not err.value.uncertain
    assert all_docs(sandbox, doc) == []
    res = poster_for(client_for(server)).post(doc)
    assert len(live_docs(sandbox, doc)) == 1 and not res.already_posted


def test_logon_failure_posts_nothing(server: tuple[Any, ServerHandle], sandbox: Any) -> None:
    doc = invoice(sandbox)
    poster = poster_for(Arming(client_for(server), fault_arm(sandbox, fail_next=1, fail_kind="logon")))
    with pytest.raises(LogonError):
        poster.post(doc)
    assert all_docs(sandbox, doc) == []
    poster.post(doc)
    poster.post(doc)
    assert len(all_docs(sandbox, doc)) == 1


@pytest.mark.parametrize("scenario", ["period_not_open", "cost_center_missing", "unbalanced"])
def test_business_errors_post_nothing_then_exactly_once(server: tuple[Any, ServerHandle], sandbox: Any,
                                                        scenario: str) -> None:
    poster = poster_for(client_for(server))
    sid = f"src-{uuid.uuid4()}"
    good: Any
    bad: Any
    if scenario == "period_not_open":
        fi.set_open_periods(sandbox.data, "1000", 2025, 4, 2025, 12, client=CLIENT)
        bad = good = invoice(sandbox, sid)
        expect = ("F5", "201", "DOCUMENTHEADER", "PSTNG_DATE", "Posting period 003 2025 is not open")
    elif scenario == "cost_center_missing":
        bad = invoice(sandbox, sid, lines=(GLLine("630000", Decimal("99.5")),))
        good = invoice(sandbox, sid, lines=(GLLine("630000", Decimal("99.5"), cost_center="1100"),))
        expect = ("KI", "235", "ACCOUNTGL", "COSTCENTER", "Account 630000 requires an assignment to a CO object")
    else:
        lines = (GLLine("640000", Decimal("100"), cost_center="1000"), GLLine("113100", Decimal("-90")))
        bad = GLPosting(source_id=sid, company_code="1000", currency="USD", doc_date=date(2025, 5, 1),
                        posting_date=date(2025, 5, 2), lines=lines)
        good = GLPosting(source_id=sid, company_code="1000", currency="USD", doc_date=date(2025, 5, 1),
                         posting_date=date(2025, 5, 2), lines=(lines[0], GLLine("113100", Decimal("-100"))))
        expect = ("F5", "702", "CURRENCYAMOUNT", "AMT_DOCCUR", "Balance in transaction currency")
    with pytest.raises(PostingError) as err:
        poster.post(bad)
    e = err.value
    assert (e.msg_id, e.msg_number, e.parameter, e.field) == expect[:4]
    assert e.cause is not None and e.cause.message == expect[4]
    assert all_docs(sandbox, bad) == []
    if scenario == "period_not_open":
        fi.set_open_periods(sandbox.data, "1000", 2020, 1, 2035, 16, client=CLIENT)
    first = poster.post(good)
    second = poster.post(good)
    assert second.already_posted and second.belnr == first.belnr
    assert len(all_docs(sandbox, good)) == 1


def test_wrapper_duplicate_guard_without_lookup(server: tuple[Any, ServerHandle], sandbox: Any) -> None:
    doc = invoice(sandbox)
    poster = poster_for(client_for(server), lookup_first=False)
    first = poster.post(doc)
    second = poster.post(doc)  # the wrapper refuses with ZMLC 001, resolved to the existing document
    assert second.already_posted and second.belnr == first.belnr
    assert len(all_docs(sandbox, doc)) == 1


def test_reversed_document_counts_as_not_posted(server: tuple[Any, ServerHandle], sandbox: Any) -> None:
    _, handle = server
    poster = poster_for(client_for(server))
    doc = invoice(sandbox)
    first = poster.post(doc)
    r = httpx.post(f"{handle.url}/_sandbox/fi/reverse",
                   json={"bukrs": first.bukrs, "belnr": first.belnr, "gjahr": first.gjahr})
    assert r.status_code == 200, r.text
    rev = r.json()["reversal_document"]
    assert poster.find_posted(first.bukrs, first.xblnr, first.gjahr) is None
    refs = poster.find_documents(first.bukrs, first.xblnr, first.gjahr)
    assert {(d.belnr, d.stblg) for d in refs} == {(first.belnr, rev), (rev, first.belnr)}
    assert poster.payment_status(first.bukrs, first.belnr, first.gjahr).status == "reversed"
    again = poster.post(doc)
    assert not again.already_posted and again.belnr not in (first.belnr, rev)
    assert [d["BELNR"] for d in live_docs(sandbox, doc)] == [again.belnr]


def test_lookup_through_z_function_and_agent_channel(server: tuple[Any, ServerHandle], sandbox: Any) -> None:
    channel = InProcessChannel()
    channel.register("ecc", make_handler(client_for(server)))
    poster = poster_for(ChannelRfcCaller(channel, "ecc"), lookup_function="Z_MLC_DOCUMENT_BY_XBLNR")
    doc = invoice(sandbox)
    res = poster.post(doc)
    ref = poster.find_posted("1000", res.xblnr, res.gjahr)
    assert ref is not None and ref.belnr == res.belnr
    assert poster.post(doc).already_posted


# ---------------------------------------------------------------------------------------------
# payment status and blocks


def test_payment_status_block_and_clearing(server: tuple[Any, ServerHandle], sandbox: Any) -> None:
    _, handle = server
    poster = poster_for(client_for(server))
    res = poster.post(invoice(sandbox))
    st = poster.payment_status(res.bukrs, res.belnr, res.gjahr)
    assert (st.status, st.open_amount, st.currency, st.payment_block) == ("open", Decimal("800.00"), "USD", "")
    assert poster.set_payment_block(res.bukrs, res.belnr, res.gjahr, "A") == 1
    assert poster.payment_status(res.bukrs, res.belnr, res.gjahr).payment_block == "A"
    assert sandbox.data.get("BSEG", (res.bukrs, res.belnr, res.gjahr, "001"), CLIENT)["ZLSPR"] == "A"
    assert poster.remove_payment_block(res.bukrs, res.belnr, res.gjahr) == 1
    assert poster.payment_status(res.bukrs, res.belnr, res.gjahr).payment_block == ""

    r = httpx.post(f"{handle.url}/_sandbox/fi/clear", json={"bukrs": res.bukrs, "belnr": res.belnr,
                                                           "gjahr": res.gjahr, "amount": "300.00",
                                                           "clearing_date": "20250410"})
    assert r.status_code == 200, r.text
    st = poster.payment_status(res.bukrs, res.belnr, res.gjahr)
    assert (st.status, st.paid_amount, st.open_amount) == ("partially_paid", Decimal("300.00"), Decimal("500.00"))

    r = httpx.post(f"{handle.url}/_sandbox/fi/clear", json={"bukrs": res.bukrs, "belnr": res.belnr,
                                                           "gjahr": res.gjahr, "clearing_date": "20250420"})
    augbl = r.json()["clearing_document"]
    st = poster.payment_status(res.bukrs, res.belnr, res.gjahr)
    assert (st.status, st.clearing_document, st.clearing_date) == ("paid", augbl, "20250420")
    assert not [x for x in sandbox.data.rows("BSIK", CLIENT)
                if (x["BUKRS"], x["BELNR"], x["GJAHR"]) == (res.bukrs, res.belnr, res.gjahr)]
    with pytest.raises(PostingError):  # a cleared item cannot be blocked any more
        poster.set_payment_block(res.bukrs, res.belnr, res.gjahr, "A")


def test_seeded_history_has_paid_and_open_invoices(server: tuple[Any, ServerHandle], sandbox: Any) -> None:
    poster = poster_for(client_for(server))
    paid = next(r for r in sandbox.data.rows("BSAK", CLIENT) if r["BLART"] == "KR")
    open_ = next(r for r in sandbox.data.rows("BSIK", CLIENT) if r["BLART"] == "KR")
    assert poster.payment_status(paid["BUKRS"], paid["BELNR"], paid["GJAHR"]).status == "paid"
    assert poster.payment_status(open_["BUKRS"], open_["BELNR"], open_["GJAHR"]).status in ("open",
                                                                                             "partially_paid")
    assert poster.payment_status("1000", "0999999999", "2025").status == "not_found"
    bseg = ddic.table("BSEG")
    assert bseg is not None and bseg.width > 512  # needs column groups over RFC_READ_TABLE
    rows = [r for p in poster.reader.read("BSEG", key_fields=["BUKRS", "BELNR", "GJAHR", "BUZEI"],
                                          where=f"BUKRS = '{paid['BUKRS']}' AND BELNR = '{paid['BELNR']}'")
            for r in p.rows]
    assert rows and all(len(r) >= 40 and r["BELNR"] == paid["BELNR"] for r in rows)


# ---------------------------------------------------------------------------------------------
# MM invoice


def test_mm_invoice_exactly_once(server: tuple[Any, ServerHandle], sandbox: Any) -> None:
    po = purchase_order(sandbox)
    ebeln, ebelp, lifnr = po if po else ("4500000001", "00010", vendor(sandbox))
    doc = MMInvoice(source_id=f"po-bill-{uuid.uuid4()}", company_code="1000", currency="USD",
                    doc_date=date(2025, 6, 2), posting_date=date(2025, 6, 3), invoicing_party=lifnr,
                    items=(MMInvoiceItem(ebeln, int(ebelp), Decimal("116.00"), Decimal(2), "EA"),))
    sandbox.fi.faults.update(fail_after_commit=1, fail_after_commit_mode="system_failure")
    poster = poster_for(client_for(server))
    res = poster.post(doc)
    assert res.recovered and res.invoice_number.startswith("51056") and res.obj_type == "RMRP"
    again = poster.post(doc)
    assert again.already_posted and again.invoice_number == res.invoice_number
    [bkpf] = all_docs(sandbox, doc)
    assert (bkpf["AWTYP"], bkpf["BLART"]) == ("RMRP", "RE")
    assert poster.payment_status("1000", bkpf["BELNR"], bkpf["GJAHR"]).status == "open"
    if po is not None:
        bad = MMInvoice(source_id=f"po-bill-{uuid.uuid4()}", company_code="1000", currency="USD",
                        doc_date=date(2025, 6, 2), posting_date=date(2025, 6, 3),
                        items=(MMInvoiceItem("4599999999", 10, Decimal(1)),))
        with pytest.raises(PostingError) as err:
            poster.post(bad)
        assert (err.value.parameter, err.value.field) == ("ITEMDATA", "PO_NUMBER")


def _mm_invoice(sandbox: Any, poster: DocumentPoster) -> tuple[MMInvoice, dict[str, Any], dict[str, Any]]:
    """An MM invoice posted on a seeded PO item: (the invoice, its RBKP row, its FI document)."""
    po = purchase_order(sandbox)
    assert po is not None, "the sandbox seeds purchase orders"
    ebeln, ebelp, lifnr = po
    doc = MMInvoice(source_id=f"po-bill-{uuid.uuid4()}", company_code="1000", currency="USD",
                    doc_date=date(2025, 6, 2), posting_date=date(2025, 6, 3), invoicing_party=lifnr,
                    items=(MMInvoiceItem(ebeln, int(ebelp), Decimal("40.00")),), vendor=lifnr)
    res = poster.post(doc)
    rbkp = sandbox.data.get("RBKP", (res.invoice_number, res.gjahr), CLIENT)
    bkpf = sandbox.data.get("BKPF", (res.bukrs, res.belnr, res.gjahr), CLIENT)
    assert rbkp is not None and bkpf is not None
    return doc, dict(rbkp), dict(bkpf)


def test_mm_invoice_is_reversed_in_mm_exactly_once_never_by_fb08(server: tuple[Any, ServerHandle],
                                                                  sandbox: Any) -> None:
    client = client_for(server)
    poster = poster_for(client)
    doc, rbkp, bkpf = _mm_invoice(sandbox, poster)
    belnr, gjahr = rbkp["BELNR"], rbkp["GJAHR"]
    # FB08 (the FI reversal wrapper) refuses the FI document of an MM invoice, and nothing changes
    with pytest.raises(PostingError) as err:
        poster.reverse("1000", bkpf["BELNR"], bkpf["GJAHR"])
    assert (err.value.msg_id, err.value.msg_number) == ("ZMLC", "012")
    assert f"MM invoice {belnr} {gjahr}" in str(err.value)
    with pytest.raises(ValueError, match="MR8M"):
        fi.reverse_document(sandbox.data, "1000", bkpf["BELNR"], bkpf["GJAHR"], client=CLIENT)
    # so does the accounting interface's reversal, by the invoice's reference or the FI document's key
    for obj_type, obj_key in (("RMRP", belnr + gjahr), ("BKPFF", bkpf["BELNR"] + "1000" + bkpf["GJAHR"])):
        out = client.call("BAPI_ACC_DOCUMENT_REV_POST", {"REVERSAL": {"OBJ_TYPE": obj_type, "OBJ_KEY": obj_key,
                                                                      "COMP_CODE": "1000", "REASON_REV": "01"},
                                                         "BUS_ACT": "RFBU"}, tables=("RETURN",))
        assert [(m["TYPE"], m["ID"], m["NUMBER"]) for m in out["RETURN"]] == [("E", "RW", "609"), ("E", "RW", "021")]
    assert not sandbox.data.get("BKPF", ("1000", bkpf["BELNR"], bkpf["GJAHR"]), CLIENT).get("STBLG")
    # BAPI_INCOMINGINVOICE_CANCEL: SAP's interface; no such invoice is an error in RETURN
    out = client.call("BAPI_INCOMINGINVOICE_CANCEL", {"INVOICEDOCNUMBER": "5999999999", "FISCALYEAR": gjahr,
                                                      "REASONREVERSAL": "01"}, tables=("RETURN",))
    [row] = out["RETURN"]
    assert (row["TYPE"], row["ID"], row["NUMBER"]) == ("E", "M8", "184") and not out["INVOICEDOCNUMBER_REVERSAL"]
    # the BAPI does not commit: its reversal answered in one request is discarded at the request's end
    out = client.call("BAPI_INCOMINGINVOICE_CANCEL", {"INVOICEDOCNUMBER": belnr, "FISCALYEAR": gjahr,
                                                      "REASONREVERSAL": "01"}, tables=("RETURN",))
    assert out["INVOICEDOCNUMBER_REVERSAL"] and out["FISCALYEAR_REVERSAL"] == gjahr and not out.get("RETURN")
    client.call("BAPI_TRANSACTION_COMMIT", {"WAIT": "X"})  # a new session: commits nothing
    assert not sandbox.data.get("RBKP", (belnr, gjahr), CLIENT).get("STBLG")
    # through the one-LUW wrapper, exactly once although SAP's answer is lost after its commit
    calls = sandbox.stats.calls["Z_MLC_INCOMINGINVOICE_CANCEL"]
    sandbox.fi.faults.update(fail_after_commit=1, fail_after_commit_mode="system_failure")
    rev, rev_year, found = poster.cancel_mm_invoice(belnr, gjahr, posting_date=date(2025, 6, 20), reason="02")
    assert found and rev_year == "2025"  # settled by reading RBKP-STBLG
    original = sandbox.data.get("RBKP", (belnr, gjahr), CLIENT)
    assert (original["STBLG"], original["STJAH"]) == (rev, "2025")
    reversal = sandbox.data.get("RBKP", (rev, "2025"), CLIENT)
    assert (reversal["XBLNR"], reversal["TCODE"], reversal["STBLG"]) == (rbkp["XBLNR"], "MR8M", belnr)
    assert {r["SHKZG"] for r in sandbox.data.rows("RSEG", CLIENT) if r["BELNR"] == rev} == {"H"}
    fi_docs = [r for r in sandbox.data.rows("BKPF", CLIENT) if r.get("XBLNR") == rbkp["XBLNR"]]
    assert sorted(r["AWKEY"] for r in fi_docs) == sorted([belnr + gjahr, rev + "2025"])
    assert all(r["STBLG"] and r["AWTYP"] == "RMRP" for r in fi_docs)
    assert poster.payment_status("1000", bkpf["BELNR"], bkpf["GJAHR"]).status == "reversed"
    # again: known from RBKP, no second call; the wrapper and the BAPI refuse a second reversal
    assert poster.cancel_mm_invoice(belnr, gjahr) == (rev, "2025", True)
    assert sandbox.stats.calls["Z_MLC_INCOMINGINVOICE_CANCEL"] == calls + 1
    out = client.call("Z_MLC_INCOMINGINVOICE_CANCEL", {"I_BELNR": belnr, "I_GJAHR": gjahr}, tables=("RETURN",))
    [row] = out["RETURN"]
    assert (row["ID"], row["NUMBER"], row["MESSAGE_V3"], row["MESSAGE_V4"]) == ("ZMLC", "010", rev, "2025")
    out = client.call("BAPI_INCOMINGINVOICE_CANCEL", {"INVOICEDOCNUMBER": belnr, "FISCALYEAR": gjahr,
                                                      "REASONREVERSAL": "01"}, tables=("RETURN",))
    assert [r["TYPE"] for r in out["RETURN"]] == ["E"] and not out["INVOICEDOCNUMBER_REVERSAL"]
    # the reversed invoice no longer answers to its reference: the same invoice posts anew, once
    assert poster.find(doc) is None
    again = poster.post(doc)
    assert not again.already_posted and again.invoice_number not in (belnr, rev)
    assert poster.post(doc).already_posted


def test_mm_invoice_cancel_commits_in_a_later_request_of_a_stateful_session(server: tuple[Any, ServerHandle],
                                                                           sandbox: Any) -> None:
    poster = poster_for(client_for(server))
    _, rbkp, _ = _mm_invoice(sandbox, poster)
    sandbox.set_config(stateful_sessions=True)
    try:
        client = client_for(server)
        out = client.call("BAPI_INCOMINGINVOICE_CANCEL", {"INVOICEDOCNUMBER": rbkp["BELNR"],
                                                          "FISCALYEAR": rbkp["GJAHR"], "REASONREVERSAL": "01"},
                          tables=("RETURN",))
        assert not sandbox.data.get("RBKP", (rbkp["BELNR"], rbkp["GJAHR"]), CLIENT).get("STBLG")
        client.call("BAPI_TRANSACTION_COMMIT", {"WAIT": "X"})
    finally:
        sandbox.set_config(stateful_sessions=False)
    assert sandbox.data.get("RBKP", (rbkp["BELNR"], rbkp["GJAHR"]), CLIENT)["STBLG"] == out["INVOICEDOCNUMBER_REVERSAL"]


def test_accounting_interface_reversal_of_an_fi_document_commits_in_its_session(server: tuple[Any, ServerHandle],
                                                                                sandbox: Any) -> None:
    poster = poster_for(client_for(server))
    res = poster.post(invoice(sandbox))
    key = res.belnr + res.bukrs + res.gjahr
    params = {"REVERSAL": {"OBJ_TYPE": "BKPFF", "OBJ_KEY": key, "COMP_CODE": "1000", "REASON_REV": "01"},
              "BUS_ACT": "RFBU"}
    sandbox.set_config(stateful_sessions=True)
    try:
        client = client_for(server)
        out = client.call("BAPI_ACC_DOCUMENT_REV_POST", params, tables=("RETURN",))
        [ok] = out["RETURN"]
        assert (ok["TYPE"], ok["NUMBER"], out["OBJ_TYPE"]) == ("S", "605", "BKPFF")
        assert not sandbox.data.get("BKPF", (res.bukrs, res.belnr, res.gjahr), CLIENT).get("STBLG")
        client.call("BAPI_TRANSACTION_COMMIT", {"WAIT": "X"})
    finally:
        sandbox.set_config(stateful_sessions=False)
    rev, bukrs, gjahr = split_obj_key(out["OBJ_KEY"])
    assert sandbox.data.get("BKPF", (res.bukrs, res.belnr, res.gjahr), CLIENT)["STBLG"] == rev
    assert sandbox.data.get("BKPF", (bukrs, rev, gjahr), CLIENT)["STBLG"] == res.belnr
    out = client_for(server).call("BAPI_ACC_DOCUMENT_REV_POST", params, tables=("RETURN",))
    assert out["RETURN"][-1]["NUMBER"] == "023"  # already reversed
