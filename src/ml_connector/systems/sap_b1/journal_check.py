"""Business One's verdict on a journal entry before it is posted (the approval queue, core/approval.py).

Business One offers no check call for JournalEntries: the Service Layer has no dry run or simulate
action for them, JournalEntries cannot be saved as `Drafts` (marketing documents only), and a
`JournalVouchers` add writes a voucher. A `$batch` changeset holding the POST and a request made to
fail would be rolled back by B1, but it sends the real POST: if the failing request ever succeeded,
or B1 committed before it, the entry would be posted outside the outbox's exactly-once path. So the
check never sends the entry. It reads, and says which part is which:

- **Business One's own answers:** whether it already holds the entry (the lookup by the external id
  in `Reference3`, the same as before every post: approving then records it, nothing is posted
  twice); each master record the entry names, asked by its code (a code B1 answers it does not have
  is B1's answer); the posting periods (`CompanyService_GetPeriods`,
  `CompanyService_GetFinancePeriods`) and the exchange rate of the posting date
  (`SBOBobService_GetCurrencyRate`, whose refusal "Update the exchange rate" is B1's own).
- **A check of B1's master data, read from B1:** the rules applied to what was read, that B1
  applies when the entry is posted: balance (debit = credit), an active and postable account not
  locked for manual journal entries, an active business partner, a distribution rule of the line's
  dimension that is active, a known project and currency, and a posting period holding the posting
  date that is not locked.

Each refusal is worded with Business One's own code and text (known_errors.py), the ones B1 (and the
emulator) answer when the entry is posted, so the queue shows what posting would answer; the console
catalogue's words for the cause (what it means, how to fix it) follow.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from ml_connector.core.flow import Verdict
from ml_connector.systems.sap_b1 import known_errors as msg
from ml_connector.systems.sap_b1.client import ServiceLayerApi, odata_quote
from ml_connector.systems.sap_b1.errors import B1CommunicationError, B1Error, B1SessionError

COSTING_FIELDS = ("CostingCode", "CostingCode2", "CostingCode3", "CostingCode4", "CostingCode5")
CHECKED_BY = "Business One master data and posting periods (read; B1 has no check call for journal entries)"
LOOKUP = "Business One lookup by Reference3"
#: codes per $filter (an `or` of `eq`s), to keep the URL short
CHUNK = 20


def by_codes(b1: ServiceLayerApi, entity_set: str, key: str, codes: Iterable[str],
             select: str) -> dict[str, dict[str, Any]]:
    """The rows of `entity_set` whose `key` is one of `codes`, asked of B1 by their codes."""
    wanted = sorted({c for c in codes if c})
    out: dict[str, dict[str, Any]] = {}
    for i in range(0, len(wanted), CHUNK):
        flt = " or ".join(f"{key} eq {odata_quote(c)}" for c in wanted[i:i + CHUNK])
        for row in b1.get_all(entity_set, {"$filter": flt, "$select": select}):
            out[str(row.get(key))] = row
    return out


def _day(value: Any) -> str:
    text = str(value or "")[:10]
    return text if text else dt.date.today().isoformat()


def posting_period(b1: ServiceLayerApi, day: str, cache: dict[str, Any]) -> dict[str, Any] | None:
    """The FinancePeriod whose posting dates hold `day`, read with B1's own actions (latest period
    category first; each category's periods kept in `cache` for the step)."""
    cats = cache.get("sap_b1:period_categories")
    if cats is None:
        resp = b1.request("POST", "CompanyService_GetPeriods")
        cats = [int(c["AbsoluteEntry"]) for c in (resp.body or {}).get("value") or []]
        cache["sap_b1:period_categories"] = cats
    for entry in sorted(cats, reverse=True):
        periods = cache.get(f"sap_b1:finance_periods:{entry}")
        if periods is None:
            resp = b1.request("POST", "CompanyService_GetFinancePeriods",
                              body={"PeriodCategoryParams": {"AbsoluteEntry": entry}})
            periods = list((resp.body or {}).get("value") or [])
            cache[f"sap_b1:finance_periods:{entry}"] = periods
        for p in periods:
            if str(p.get("PostingDateFrom") or "")[:10] <= day <= str(p.get("PostingDateTo") or "")[:10]:
                return dict(p)
    return None


def _amount(value: Any) -> Decimal:
    try:
        return Decimal(str(value or 0))
    except ArithmeticError:
        return Decimal(0)


def check_journal_entry(b1: ServiceLayerApi, entry: Mapping[str, Any], external_id: str,
                        cache: dict[str, Any] | None = None) -> Verdict:
    """Business One's verdict on posting `entry` (a JournalEntries body) with `external_id`; writes nothing."""
    cache = {} if cache is None else cache
    found = b1.find_journal_entries(external_id)
    if found:
        return Verdict(True, [f"Already in Business One as journal entry {found[0].get('JdtNum')} "
                              f"(number {found[0].get('Number')}): approving records it, nothing is posted twice"],
                       LOOKUP)
    lines = [ln for ln in entry.get("JournalEntryLines") or [] if isinstance(ln, Mapping)]
    day = _day(entry.get("ReferenceDate"))
    accounts = by_codes(b1, "ChartOfAccounts", "Code", (str(ln.get("AccountCode") or "") for ln in lines),
                        "Code,ActiveAccount,FrozenFor,LockManualTransaction")
    partners = by_codes(b1, "BusinessPartners", "CardCode", (str(ln.get("ShortName") or "") for ln in lines),
                        "CardCode,CardType,Valid,Frozen")
    rule_codes = [str(ln.get(f) or "") for ln in lines for f in COSTING_FIELDS]
    rules = by_codes(b1, "DistributionRules", "FactorCode", rule_codes, "FactorCode,InWhichDimension,Active")
    centres = by_codes(b1, "ProfitCenters", "CenterCode", rule_codes, "CenterCode,InWhichDimension,Active")
    project_codes = [str(ln.get("ProjectCode") or "") for ln in lines] + [str(entry.get("ProjectCode") or "")]
    projects = by_codes(b1, "Projects", "Code", project_codes, "Code")
    currency_codes = {str(ln.get("FCCurrency") or "") for ln in lines} - {""}
    currencies = by_codes(b1, "Currencies", "Code", currency_codes, "Code")
    rates: dict[str, str | None] = {}  # currency -> None (B1 has a rate) or B1's refusal
    for cur in sorted(currency_codes & set(currencies)):
        try:
            b1.request("POST", "SBOBobService_GetCurrencyRate", body={"Currency": cur, "Date": day.replace("-", "")})
            rates[cur] = None
        except (B1CommunicationError, B1SessionError):
            raise  # no answer on the rate: the check could not be made
        except B1Error as exc:
            if exc.status is None or exc.status >= 500:
                raise
            rates[cur] = msg.with_code(int(exc.code) if isinstance(exc.code, int) else msg.JE_CODE, exc.message)

    problems: list[str] = []
    debit = credit = Decimal(0)
    code = msg.JE_CODE
    for n, ln in enumerate(lines, start=1):
        acct, short = str(ln.get("AccountCode") or ""), str(ln.get("ShortName") or "")
        if short:
            bp = partners.get(short)
            if bp is None:
                problems.append(msg.with_code(code, msg.invalid_partner(n, short)))
            elif bp.get("Frozen") == "tYES" or bp.get("Valid") == "tNO":
                problems.append(msg.with_code(msg.BP_INACTIVE_CODE,
                                              msg.inactive_partner(short, str(bp.get("CardType")))))
        if acct:
            account = accounts.get(acct)
            if account is None:
                problems.append(msg.with_code(code, msg.invalid_account(n, acct)))
            elif account.get("ActiveAccount") == "tNO":
                problems.append(msg.with_code(code, msg.title_account(n, acct)))
            elif account.get("FrozenFor") == "tYES":
                problems.append(msg.with_code(code, msg.frozen_account(n, acct)))
            elif account.get("LockManualTransaction") == "tYES":
                problems.append(msg.with_code(code, msg.manual_locked_account(n, acct)))
        for dim, fname in enumerate(COSTING_FIELDS, start=1):
            rcode = str(ln.get(fname) or "")
            if not rcode:
                continue
            rule = rules.get(rcode) or centres.get(rcode)
            if rule is None or int(rule.get("InWhichDimension") or 0) != dim:
                problems.append(msg.with_code(code, msg.invalid_rule(n, fname, rcode)))
            elif rule.get("Active") == "tNO":
                problems.append(msg.with_code(code, msg.inactive_rule(n, fname, rcode)))
        proj = str(ln.get("ProjectCode") or "")
        if proj and proj not in projects:
            problems.append(msg.with_code(code, msg.invalid_project(n, proj)))
        cur = str(ln.get("FCCurrency") or "")
        if cur and cur not in currencies:
            problems.append(msg.with_code(code, msg.invalid_currency(n, cur)))
        elif cur and rates.get(cur):
            problems.append(str(rates[cur]))
        debit += _amount(ln.get("Debit"))
        credit += _amount(ln.get("Credit"))
    if not lines:
        problems.append(msg.with_code(code, "Journal entry has no lines (JournalEntryLines)"))
    if debit != credit:
        problems.append(msg.with_code(code, msg.unbalanced(float(debit), float(credit))))
    header_project = str(entry.get("ProjectCode") or "")
    if header_project and header_project not in projects:
        problems.append(msg.with_code(code, msg.invalid_project(None, header_project)))
    period = posting_period(b1, day, cache)
    if period is None:
        problems.append(msg.with_code(code, msg.NO_PERIOD) + f" (posting date {day})")
    elif period.get("PeriodStatus") in ("ltLocked", "ltPeriodClosing"):
        problems.append(msg.with_code(code, msg.PERIOD_LOCKED)
                        + f" (posting date {day}: period {period.get('PeriodCode')} is {period.get('PeriodStatus')})")
    if problems:
        return Verdict(False, [msg.explained(p) for p in dict.fromkeys(problems)], CHECKED_BY)
    where = f"posting period {period.get('PeriodCode')} open" if period else ""
    return Verdict(True, [f"Business One would accept it: {len(lines)} lines, debit = credit = {debit:.2f}; accounts, "
                          f"business partners, distribution rules and currencies found active in Business One; "
                          f"{where} for {day}"], CHECKED_BY)
