"""Business One's verdict on a journal entry before posting (systems/sap_b1/journal_check.py), over
real HTTP on loopback against the Service Layer emulator: each refusal the check gives is the one B1
answers when the same entry is posted (same code, same text), the check never posts, an accepted
entry posts, and once posted the check finds it (lookup by Reference3)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import pytest

from ml_connector.sandbox import SandboxHandle, start_sandboxes
from ml_connector.systems.sap_b1 import known_errors as msg
from ml_connector.systems.sap_b1.client import ServiceLayerClient
from ml_connector.systems.sap_b1.errors import B1Error
from ml_connector.systems.sap_b1.journal_check import CHECKED_BY, LOOKUP, check_journal_entry
from ml_connector.systems.sap_b1.sandbox.state import B1Sandbox
from tests.support.b1 import b1_stats, je, master_changed, period_locked

pytestmark = pytest.mark.smoke  # `make test-fast` runs it (this system's or flow's loopback smoke)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxHandle]:
    state = B1Sandbox()
    state.set_config(login_seconds=0)
    h = start_sandboxes(systems=("sap_b1",), states={"sap_b1": state})["sap_b1"]
    try:
        yield h
    finally:
        h.stop()


@pytest.fixture(scope="module")
def b1(sandbox: SandboxHandle) -> Iterator[ServiceLayerClient]:
    i = sandbox.info
    c = ServiceLayerClient(i["base_url"], i["company_db"], i["user"], i["password"], retry_base=0, timeout=10)
    try:
        yield c
    finally:
        c.close()


def _fc(currency: str) -> dict[str, Any]:
    return {"ReferenceDate": "2026-03-31", "Memo": "Concur report in a foreign currency",
            "JournalEntryLines": [{"AccountCode": "6030", "FCCurrency": currency, "FCDebit": 80.0},
                                  {"ShortName": "E00001", "FCCurrency": currency, "FCCredit": 80.0}]}


Case = tuple[str, Callable[[], dict[str, Any]], Callable[[B1Sandbox], AbstractContextManager[Any]], int, str]
CASES: list[Case] = [
    ("unknown account", lambda: je(AccountCode="9999"), lambda s: nullcontext(), -5002,
     msg.invalid_account(1, "9999")),
    ("inactive account", je, lambda s: master_changed(s, "ChartOfAccounts", "6030", FrozenFor="tYES"), -5002,
     msg.frozen_account(1, "6030")),
    ("title account", je, lambda s: master_changed(s, "ChartOfAccounts", "6030", ActiveAccount="tNO"), -5002,
     msg.title_account(1, "6030")),
    ("account locked for manual entries", je,
     lambda s: master_changed(s, "ChartOfAccounts", "6030", LockManualTransaction="tYES"), -5002,
     msg.manual_locked_account(1, "6030")),
    ("account gone", je, lambda s: master_changed(s, "ChartOfAccounts", "6030", gone=True), -5002,
     msg.invalid_account(1, "6030")),
    ("inactive partner", je, lambda s: master_changed(s, "BusinessPartners", "E00001", Frozen="tYES"), -10,
     msg.inactive_partner("E00001", "cSupplier")),
    ("unknown cost centre", lambda: je(CostingCode="CC99"), lambda s: nullcontext(), -5002,
     msg.invalid_rule(1, "CostingCode", "CC99")),
    ("cost centre of another dimension", lambda: je(CostingCode="DEPT1"), lambda s: nullcontext(), -5002,
     msg.invalid_rule(1, "CostingCode", "DEPT1")),
    ("inactive cost centre", je, lambda s: master_changed(s, "DistributionRules", "CC01", Active="tNO"), -5002,
     msg.inactive_rule(1, "CostingCode", "CC01")),
    ("unknown project", lambda: je(ProjectCode="P999"), lambda s: nullcontext(), -5002,
     msg.invalid_project(1, "P999")),
    ("unbalanced", lambda: je(Debit=100.0), lambda s: nullcontext(), -5002, msg.unbalanced(100.0, 120.5)),
    ("locked period", je, lambda s: period_locked(s, "2026-03-31"), -5002, msg.PERIOD_LOCKED),
    ("period-end closing", je, lambda s: period_locked(s, "2026-03-31", "ltPeriodClosing"), -5002,
     msg.PERIOD_LOCKED),
    ("no posting period", lambda: {**je(), "ReferenceDate": "2040-01-15"}, lambda s: nullcontext(), -5002,
     msg.NO_PERIOD),
    ("unknown currency", lambda: _fc("XYZ"), lambda s: nullcontext(), -5002, msg.invalid_currency(1, "XYZ")),
    ("no exchange rate for the day", lambda: _fc("EUR"), lambda s: nullcontext(), -5002, msg.NO_RATE),
]


@pytest.mark.parametrize("name,body,meanwhile,code,text", CASES, ids=[c[0] for c in CASES])
def test_the_check_refuses_with_what_posting_answers_and_posts_nothing(
        sandbox: SandboxHandle, b1: ServiceLayerClient, name: str, body: Callable[[], dict[str, Any]],
        meanwhile: Callable[[B1Sandbox], AbstractContextManager[Any]], code: int, text: str) -> None:
    state = sandbox.state
    external = f"concur:check-{name.replace(' ', '-')}"
    entries = len(state.sets["JournalEntries"].rows)
    with meanwhile(state):
        before = b1_stats(sandbox)["by_resource"]
        verdict = check_journal_entry(b1, body(), external)
        after = b1_stats(sandbox)["by_resource"]
        assert after.get("POST JournalEntries", 0) == before.get("POST JournalEntries", 0)  # nothing posted
        assert len(state.sets["JournalEntries"].rows) == entries
        assert verdict.ok is False and verdict.checked_by == CHECKED_BY, verdict
        assert any(m.startswith(msg.with_code(code, text)) for m in verdict.messages), verdict.messages
        # Posting the same entry: Business One answers the same code and text.
        with pytest.raises(B1Error) as refused:
            b1.create("JournalEntries", {**body(), "Reference3": external})
        assert (refused.value.status, refused.value.code, refused.value.message) == (400, code, text)
    assert len(state.sets["JournalEntries"].rows) == entries


def test_accepted_entry_posts_and_is_then_found_by_its_reference(sandbox: SandboxHandle,
                                                                  b1: ServiceLayerClient) -> None:
    external = "concur:check-accepted"
    verdict = check_journal_entry(b1, je(), external)
    assert verdict.ok is True and verdict.checked_by == CHECKED_BY
    assert "posting period 2026-03 open" in verdict.messages[0], verdict.messages
    assert b1.find_journal_entries(external) == []  # the check wrote nothing
    posted = b1.post_journal_entry_once(je(), external)
    again = check_journal_entry(b1, je(), external)
    assert again.ok is True and again.checked_by == LOOKUP
    assert f"journal entry {posted.jdt_num}" in again.messages[0] and "nothing is posted twice" in again.messages[0]


def test_foreign_currency_is_accepted_once_business_one_has_the_days_rate(sandbox: SandboxHandle,
                                                                          b1: ServiceLayerClient) -> None:
    refused = check_journal_entry(b1, _fc("GBP"), "concur:check-gbp")
    assert refused.ok is False and refused.messages == [msg.explained(msg.with_code(-5002, msg.NO_RATE))]
    assert "Business One: no exchange rate for the day" in refused.messages[0]
    sandbox.state.set_rate("GBP", "2026-03-31", 1.27)
    accepted = check_journal_entry(b1, _fc("GBP"), "concur:check-gbp")
    assert accepted.ok is True, accepted.messages
    assert b1.post_journal_entry_once(_fc("GBP"), "concur:check-gbp").created


def test_every_problem_of_an_entry_is_listed_not_only_the_first(b1: ServiceLayerClient) -> None:
    body = {**je(AccountCode="9999", CostingCode="CC99", Debit=1.0), "ReferenceDate": "2040-01-15"}
    verdict = check_journal_entry(b1, body, "concur:check-many")
    assert [m.split(" (posting date")[0].split(". Business One: ")[0] for m in verdict.messages] == [
        msg.with_code(-5002, t) for t in (msg.invalid_account(1, "9999"), msg.invalid_rule(1, "CostingCode", "CC99"),
                                          msg.unbalanced(1.0, 120.5), msg.NO_PERIOD)]
