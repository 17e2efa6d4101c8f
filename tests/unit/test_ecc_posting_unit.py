"""Unit tests of posting.py: XBLNR, OBJ_KEY, BAPI parameters, RETURN parsing, exactly-once logic."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

import pytest

from ml_connector.systems.sap_ecc.errors import ABAPRuntimeError, CommunicationError, LogonError
from ml_connector.systems.sap_ecc.posting import (
    DocRef,
    DocumentPoster,
    MMInvoice,
    MMInvoiceItem,
    OutcomeUnknownError,
    PostingError,
    PostResult,
    TaxLine,
    build_acc_document,
    build_incoming_invoice,
    mm_invoice_key,
    parse_amount,
    parse_return,
    split_obj_key,
    xblnr_for,
)
from tests.support.ecc_posting import FakeCaller, FakeMMSystem, inv, mm_poster, poster, ret

# fixtures re-derived from reference §3.1 (captured RW 605 / RW 609 + F5 104 responses)
OK_ROWS = [ret("S", "RW", "605", "Document posted successfully: BKPFF 010000000814102024 0M4SMVI",
               "BKPFF", "010000000814102024", "0M4SMVI")]
ERR_ROWS = [ret("E", "RW", "609", "Error in document: BKPFF $ EXDCLNT200", "BKPFF", "$", "EXDCLNT200"),
            ret("E", "F5", "104", "Vendor 1000000 is not defined in company code 1001", "1000000", "1001"),
            ret("E", "F5", "104", "Vendor 1000000 is not defined in company code 1001", "1000000", "1001",
                parameter="ACCOUNTPAYABLE", row="1", field="VENDOR_NO")]


def test_xblnr_is_deterministic_16_chars() -> None:
    a = xblnr_for("ramp:bill:42", "RMP")
    assert a == xblnr_for("ramp:bill:42", "RMP") and len(a) == 16 and a.startswith("RMP")
    assert re.fullmatch(r"[A-Z2-7]{16}", a)
    assert a != xblnr_for("ramp:bill:43", "RMP")
    assert len({xblnr_for(f"s{i}") for i in range(5000)}) == 5000
    with pytest.raises(ValueError):
        xblnr_for("x", "TOOLONGPREFIX")


def test_split_obj_key() -> None:
    assert split_obj_key("010000000814102024") == ("0100000008", "1410", "2024")
    assert split_obj_key("330000003110002026") == ("3300000031", "1000", "2026")
    for bad in ("$", "", "0100000008141020"):
        with pytest.raises(ValueError):
            split_obj_key(bad)


def test_build_invoice_signs_balance_and_item_numbers() -> None:
    p = build_acc_document(inv(taxes=(TaxLine("I1", Decimal("64.00"), Decimal("800.00")),)))
    h = p["DOCUMENTHEADER"]
    assert (h["DOC_TYPE"], h["BUS_ACT"], h["COMP_CODE"], h["PSTNG_DATE"]) == ("KR", "RFBU", "1410", "20241002")
    assert h["REF_DOC_NO"] == xblnr_for("ramp:bill:42", "MLC") and h["FISC_YEAR"] == "2024"
    assert p["ACCOUNTPAYABLE"][0] | {} == {"ITEMNO_ACC": "0000000001", "VENDOR_NO": "0001000000", "ITEM_TEXT": ""}
    assert [r["GL_ACCOUNT"] for r in p["ACCOUNTGL"]] == ["0000600000", "0000610000"]
    assert p["ACCOUNTGL"][0]["COSTCENTER"] == "0000001000"
    amounts = {r["ITEMNO_ACC"]: r["AMT_DOCCUR"] for r in p["CURRENCYAMOUNT"]}
    assert amounts == {"0000000001": "-864.00", "0000000002": "500.00", "0000000003": "300.00",
                       "0000000004": "64.00"}
    assert sum(Decimal(v) for v in amounts.values()) == 0
    assert {r["CURR_TYPE"] for r in p["CURRENCYAMOUNT"]} == {"00"}
    memo = build_acc_document(inv(credit_memo=True))
    assert memo["DOCUMENTHEADER"]["DOC_TYPE"] == "KG"
    assert [r["AMT_DOCCUR"] for r in memo["CURRENCYAMOUNT"]] == ["800.00", "-500.00", "-300.00"]


def test_build_incoming_invoice() -> None:
    p = build_incoming_invoice(MMInvoice(source_id="x", company_code="1000", currency="USD",
                                         doc_date=date(2024, 1, 2), posting_date=date(2024, 1, 3),
                                         items=(MMInvoiceItem("4500007491", 10, Decimal("116")),)))
    assert p["HEADERDATA"]["INVOICE_IND"] == "X" and p["HEADERDATA"]["GROSS_AMOUNT"] == "116.00"
    assert p["ITEMDATA"] == [{"INVOICE_DOC_ITEM": "000001", "PO_NUMBER": "4500007491", "PO_ITEM": "00010",
                              "ITEM_AMOUNT": "116.00"}]


def test_parse_return_success_and_error() -> None:
    ok = parse_return(OK_ROWS, obj_key="010000000814102024", obj_type="BKPFF")
    assert isinstance(ok, PostResult) and (ok.belnr, ok.bukrs, ok.gjahr) == ("0100000008", "1410", "2024")
    assert ok.obj_sys == "0M4SMVI"
    assert isinstance(parse_return(OK_ROWS), PostResult)  # OBJ_KEY taken from MESSAGE_V2
    err = parse_return(ERR_ROWS, obj_key="$")
    assert isinstance(err, PostingError)
    assert (err.parameter, err.row, err.field, err.msg_id, err.msg_number) == ("ACCOUNTPAYABLE", 1, "VENDOR_NO",
                                                                              "F5", "104")
    assert len(err.causes) == 1
    assert str(err) == ("ACCOUNTPAYABLE row 1 field VENDOR_NO: E F5 104 Vendor 1000000 is not defined in "
                        "company code 1001")
    for t in ("A", "X"):
        assert isinstance(parse_return([ret(t, "RW", "001", "boom")]), PostingError)
    warn = parse_return([ret("W", "F5", "117", "Check whether document has already been entered"), *OK_ROWS])
    assert isinstance(warn, PostResult)
    assert isinstance(parse_return({"TYPE": "", "ID": "", "NUMBER": "000"}), PostingError)  # no key at all


def test_parse_amount() -> None:
    assert parse_amount("800.00-") == Decimal("-800.00")
    assert parse_amount("-800.0") == Decimal("-800.0")
    assert parse_amount(" 12.5 ") == Decimal("12.5") and parse_amount("") == 0


def test_uncertain_after_commit_is_resolved_by_lookup_not_by_posting_again() -> None:
    c = FakeCaller(["commit_then_timeout"])
    res = poster(c).post(inv())
    assert res.recovered and res.belnr == "0100000008"
    assert c.calls.count("Z_MLC_ACC_DOCUMENT_POST") == 1


def test_uncertain_without_effect_posts_again_once() -> None:
    c = FakeCaller([ABAPRuntimeError("SYSTEM_FAILURE", key="SYSTEM_FAILURE", uncertain=True), "ok"])
    res = poster(c).post(inv())
    assert not res.recovered and res.belnr == "0100000009"
    assert c.calls.count("Z_MLC_ACC_DOCUMENT_POST") == 2


def test_certain_failures_raise_without_lookup() -> None:
    c = FakeCaller([LogonError("no", key="RFC_LOGON_FAILURE")])
    with pytest.raises(LogonError):
        poster(c, lookup_first=False).post(inv())
    assert c.calls == ["Z_MLC_ACC_DOCUMENT_POST"]
    c = FakeCaller([ERR_ROWS])
    with pytest.raises(PostingError):
        poster(c, lookup_first=False).post(inv())


def test_unresolvable_outcome_raises_outcome_unknown() -> None:
    c = FakeCaller([CommunicationError("dropped", uncertain=True)], lookup_fails=99)
    with pytest.raises(OutcomeUnknownError) as err:
        poster(c, lookup_first=False, uncertain_lookups=2).post(inv())
    assert err.value.xblnr == xblnr_for("ramp:bill:42", "MLC")
    assert c.calls.count("Z_MLC_ACC_DOCUMENT_POST") == 1


def test_reversed_document_is_not_posted() -> None:
    c = FakeCaller(["ok"])
    c.posted.append({"BUKRS": "1410", "BELNR": "0100000001", "GJAHR": "2024", "XBLNR": "x", "STBLG": "0100000002"})
    res = poster(c).post(inv())
    assert res.belnr == "0100000009" and not res.already_posted


def test_duplicate_guard_message_resolves_to_existing_document() -> None:
    dup = [ret("E", "RW", "609", "Error in document: BKPFF $ X", "BKPFF", "$", "X"),
           ret("E", "ZMLC", "001", "already posted", "MLCX", "0100000005", "1410", "2024",
               parameter="DOCUMENTHEADER", row="1", field="REF_DOC_NO")]
    res = poster(FakeCaller([dup]), lookup_first=False).post(inv())
    assert res.already_posted and res.belnr == "0100000005"


LOCKED = [ret("E", "RW", "609", "Error in document: BKPFF $ X", "BKPFF", "$", "X"),
          ret("E", "MC", "601", "Object requested is currently locked by user RFC_USER", "RFC_USER",
              parameter="DOCUMENTHEADER", row="1", field="REF_DOC_NO")]


def test_foreign_lock_waits_and_finds_the_concurrent_document() -> None:
    c = FakeCaller([LOCKED])
    c.lookup_fails = 0
    naps: list[float] = []
    p = DocumentPoster(c, lookup_function="Z_MLC_DOCUMENT_BY_XBLNR", sleep=naps.append, lookup_first=False,
                       settle_seconds=0.5)
    c.posted.append({"BUKRS": "1410", "BELNR": "0100000007", "GJAHR": "2024", "XBLNR": "x"})  # the other attempt
    res = p.post(inv())
    assert res.already_posted and res.belnr == "0100000007" and naps == [0.5]
    assert c.calls.count("Z_MLC_ACC_DOCUMENT_POST") == 1


def test_foreign_lock_then_nothing_posted_tries_again_bounded() -> None:
    res = poster(FakeCaller([LOCKED, "ok"]), lookup_first=False).post(inv())
    assert res.belnr == "0100000009" and not res.already_posted
    c = FakeCaller([LOCKED, LOCKED])
    with pytest.raises(PostingError) as err:
        poster(c, lookup_first=False, max_attempts=2).post(inv())
    assert err.value.locked and err.value.duplicate_of is None
    assert c.calls.count("Z_MLC_ACC_DOCUMENT_POST") == 2


def test_sandbox_fi_fault_switches() -> None:
    fi = pytest.importorskip("ml_connector.systems.sap_ecc.sandbox.fi")
    faults = fi.FiFaults()
    for mode in ("hang", "system_failure", "drop", "partial", "http_502", "http_504"):
        assert faults.update(fail_after_commit_mode=mode)["fail_after_commit_mode"] == mode
    with pytest.raises(ValueError):
        faults.update(fail_after_commit_mode="explode")
    assert faults.update(post_delay=0.2, enqueue_wait_seconds=1)["post_delay"] == 0.2
    assert faults.update(reset=True) == fi.FiFaults().to_dict()


def test_sandbox_enqueue_is_exclusive_per_xblnr() -> None:
    fi = pytest.importorskip("ml_connector.systems.sap_ecc.sandbox.fi")
    enq = fi.FiState().enqueue
    a, b = ("100", "1000", "MLCAAAA"), ("100", "1000", "MLCBBBB")
    assert enq.acquire(a, 0) and enq.acquire(b, 0)
    assert not enq.acquire(a, 0.01)  # FOREIGN_LOCK after the wait
    enq.release(a)
    assert enq.acquire(a, 0)
    enq.release(a)
    enq.release(b)
    assert enq.held() == 0


# MM invoices are reversed in MM (MR8M) exactly once: RBKP-STBLG read before and after an uncertain call


def test_mm_cancel_settles_a_lost_answer_by_rbkp_and_never_calls_twice() -> None:
    sap = FakeMMSystem(["commit_then_timeout"])
    assert mm_poster(sap).cancel_mm_invoice("5105600001", 2025, reason="02") == ("5105600002", "2025", True)
    assert mm_poster(sap).cancel_mm_invoice("5105600001", 2025) == ("5105600002", "2025", True)
    assert sap.calls == ["Z_MLC_INCOMINGINVOICE_CANCEL"]


def test_mm_cancel_not_done_after_an_uncertain_call_is_unknown_then_sent_again() -> None:
    sap = FakeMMSystem(["timeout", "ok"])
    with pytest.raises(OutcomeUnknownError, match="SAP shows it not reversed"):
        mm_poster(sap).cancel_mm_invoice("5105600001", "2025")
    assert mm_poster(sap).cancel_mm_invoice("5105600001", "2025") == ("5105600002", "2025", False)
    assert sap.calls == ["Z_MLC_INCOMINGINVOICE_CANCEL"] * 2


def test_mm_cancel_takes_the_wrappers_already_reversed_answer_and_raises_sap_refusals() -> None:
    already = [ret("E", "ZMLC", "010", "already reversed", "5105600001", "2025", "5105600009", "2025",
                   parameter="I_BELNR")]
    assert mm_poster(FakeMMSystem([already])).cancel_mm_invoice("5105600001", "2025") == ("5105600009", "2025", True)
    closed = [ret("E", "F5", "201", "Posting period 006 2025 is not open", "006", "2025", parameter="POSTINGDATE")]
    with pytest.raises(PostingError) as err:
        mm_poster(FakeMMSystem([closed])).cancel_mm_invoice("5105600001", "2025")
    assert (err.value.msg_id, err.value.msg_number) == ("F5", "201")
    with pytest.raises(PostingError) as err:
        mm_poster(FakeMMSystem([], rbkp=[])).cancel_mm_invoice("5105600001", "2025")
    assert (err.value.msg_id, err.value.msg_number) == ("ZMLC", "009")


def test_mm_invoice_lookup_skips_the_reversed_invoice_and_its_reversal_document() -> None:
    doc = MMInvoice(source_id="ramp:bill:7", company_code="1000", currency="USD", doc_date=date(2025, 6, 1),
                    posting_date=date(2025, 6, 2), items=(MMInvoiceItem("4500000001", 10, Decimal("5")),),
                    reference="RMPX", vendor="100001")
    rbkp = [{"BELNR": "5105600001", "GJAHR": "2025", "BUKRS": "1000", "XBLNR": "RMPX", "LIFNR": "0000100001",
             "STBLG": "5105600002", "STJAH": "2025"},
            # the MR8M reversal document: same reference; whether SAP fills its own STBLG is not verified
            {"BELNR": "5105600002", "GJAHR": "2025", "BUKRS": "1000", "XBLNR": "RMPX", "LIFNR": "0000100001",
             "STBLG": ""}]
    p = mm_poster(FakeMMSystem([], rbkp=rbkp))
    assert p.find(doc) is None
    rbkp.append({"BELNR": "5105600003", "GJAHR": "2025", "BUKRS": "1000", "XBLNR": "RMPX", "LIFNR": "0000100001",
                 "STBLG": ""})
    found = p.find(doc)
    assert found is not None and (found.belnr, found.awtyp, found.awkey) == ("5105600003", "RMRP", "51056000032025")
    # an MM invoice's FI document names it; an FI document does not
    assert mm_invoice_key(DocRef("1900000001", "1000", "2025", awtyp="RMRP", awkey="51056000032025")) == (
        "5105600003", "2025")
    assert mm_invoice_key(DocRef("1900000001", "1000", "2025", awtyp="BKPFF", awkey="190000000110002025")) is None
