"""Business One's refusals of a journal entry: its own codes and texts, one place for all who say them.

- The emulator (sandbox/state.py) refuses a POST /JournalEntries with these texts;
- the pre-posting check (journal_check.py) words its verdict with the same texts, so that what the
  approval queue shows is what Business One answers when the entry is posted;
- the console's inbox (server/console/catalogue.py) explains them for finance staff (`KNOWN_ERRORS`,
  through the registry entry).

Where the texts come from ([P] a real Service Layer answer seen in public material; [U] the
emulator's own wording, the real text is not known to us):
- 10000156 "Posting Date deviates from the defined range..." with code -5002 [P] (Vision33's
  iDocuments troubleshooting page quotes "-5002 - 10000156 - ..." from a live B1, and a public data
  dump carries the same text);
- "Posting period locked; specify an alternative date" [P] (the `value` of a Service Layer error to
  POST JournalEntries, handled by text in a public integration); its code -5002 is [U];
- "Update the exchange rate " (trailing space as B1 sends it) [P] (same integration, a journal entry
  in a foreign currency without a rate for the day); code -5002 [U];
- 10001071 "<Customer|Vendor> <code> is inactive", code -10 [P] (SAP KBA 2693418 lists
  "(-10) 10001071 - Customer 123 is inactive"; the vendor wording is [U]);
- the others (unbalanced, invalid account, business partner, distribution rule, project, currency,
  inactive or locked account, inactive rule): code -5002 and the text [U].
"""

from __future__ import annotations

import re

from ml_connector.core.known_errors import KnownError

#: The error code of a refused journal entry (the DI API's "-5002" family) [P]/[U], see above.
JE_CODE = -5002
#: The code B1 answers for an inactive business partner [P] (KBA 2693418).
BP_INACTIVE_CODE = -10

NO_PERIOD = ("10000156 - Posting Date deviates from the defined range. To complete the operation, define the "
             "posting period to match the entered Posting Date.")
PERIOD_LOCKED = "Posting period locked; specify an alternative date"
NO_RATE = "Update the exchange rate "


def unbalanced(debit: float, credit: float) -> str:
    return f"Unbalanced transaction (debit {debit:.2f}, credit {credit:.2f})"


def invalid_account(line: int, account: str) -> str:
    return f"Line {line}: invalid account code (AccountCode) '{account}'"


def title_account(line: int, account: str) -> str:
    return f"Line {line}: G/L account '{account}' is a title account, not an active account (ActiveAccount)"


def frozen_account(line: int, account: str) -> str:
    return f"Line {line}: G/L account '{account}' is inactive (FrozenFor)"


def manual_locked_account(line: int, account: str) -> str:
    return f"Line {line}: G/L account '{account}' is locked for manual journal entries (LockManualTransaction)"


def invalid_partner(line: int, card: str) -> str:
    return f"Line {line}: invalid business partner code (ShortName) '{card}'"


def inactive_partner(card: str, card_type: str) -> str:
    kind = "Customer" if card_type == "cCustomer" else "Vendor"
    return f"10001071 - {kind} {card} is inactive"


def invalid_rule(line: int, field: str, code: str) -> str:
    return f"Line {line}: invalid distribution rule ({field}) '{code}'"


def inactive_rule(line: int, field: str, code: str) -> str:
    return f"Line {line}: distribution rule ({field}) '{code}' is inactive"


def invalid_project(line: int | None, code: str) -> str:
    where = f"Line {line}: " if line is not None else ""
    return f"{where}invalid project code (ProjectCode) '{code}'"


def invalid_currency(line: int, currency: str) -> str:
    return f"Line {line}: invalid currency (FCCurrency) '{currency}'"


def with_code(code: int, text: str) -> str:
    """A refusal as the queue and the inbox show it: B1's code, then its text (as B1SLayer logs it)."""
    return f"({code}) {text}"


KNOWN_ERRORS: tuple[KnownError, ...] = (
    KnownError("sap_b1:period-undefined", r"\b10000156\b|Posting Date deviates from the defined range",
               "Business One: no posting period for the posting date",
               "Business One has no posting period that contains the journal entry's posting date "
               "(message 10000156).",
               "Ask the accounting team to create the posting periods of that year (Administration > System "
               "Initialization > Posting Periods), or correct the date at the source; then replay."),
    KnownError("sap_b1:period-locked", r"Posting period locked",
               "Business One: the posting period is locked",
               "The posting date falls in a period whose status is Locked (or Period-End Closing) in Business One.",
               "Ask the accounting team to unlock the period (Posting Periods), or correct the date at the source; "
               "then ask again or replay."),
    KnownError("sap_b1:exchange-rate", r"Update the exchange rate",
               "Business One: no exchange rate for the day",
               "The journal entry is in a foreign currency and Business One has no exchange rate for its "
               "posting date.",
               "Enter the day's rate in Business One (Exchange Rates and Indexes), then replay."),
    KnownError("sap_b1:unbalanced", r"Unbalanced transaction",
               "Business One: the journal entry does not balance",
               "Its debits and credits differ, so Business One refused it.",
               "Correct the amounts at the source; then replay."),
    KnownError("sap_b1:account",
               r"invalid account code \(AccountCode\)|G/L account '[^']*' is (a title account|inactive|locked)",
               "Business One: the G/L account cannot be posted to",
               "The account is not in Business One's chart of accounts, or it is a title account, inactive, or "
               "locked for manual journal entries.",
               "Correct the account mapping (mapping editor, table accounts) or ask the accounting team to "
               "activate the account; then replay."),
    KnownError("sap_b1:partner", r"invalid business partner code \(ShortName\)|10001071 - (Customer|Vendor) ",
               "Business One: the business partner cannot be posted to",
               "The vendor or employee is not a business partner in Business One, or it is inactive.",
               "Correct the vendor mapping, or ask the master data team to activate the business partner; "
               "then replay."),
    KnownError("sap_b1:distribution-rule", r"distribution rule \(CostingCode\d?\)",
               "Business One: the cost centre cannot be used",
               "The cost centre (distribution rule) is not in Business One, not in that dimension, or inactive.",
               "Correct the cost centre mapping (table cost_centers) or activate the rule; then replay."),
    KnownError("sap_b1:project", r"invalid project code \(ProjectCode\)", "Business One: unknown project",
               "The project code is not in Business One.",
               "Correct the project at the source, or create it in Business One; then replay."),
    KnownError("sap_b1:currency", r"invalid currency \(FCCurrency\)", "Business One: unknown currency",
               "The document's currency is not defined in Business One.",
               "Define the currency in Business One (Currencies), then replay."),
)


def explained(message: str) -> str:
    """`message` (B1's code and text) followed by the console catalogue's words for its cause, for the
    approval queue's verdict: what it means and how to fix it."""
    for known in KNOWN_ERRORS:
        if re.search(known.pattern, message, re.IGNORECASE):
            return f"{message}. {known.title}. {known.fix}"
    return message
