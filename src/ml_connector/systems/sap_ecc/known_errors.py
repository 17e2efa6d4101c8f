"""SAP ECC's messages that stop a posting, explained for finance staff (the console's inbox).

Matched against the error text of a refused posting, which carries each RETURN message as
`<TYPE> <class> <number> <text>` (posting.ReturnMessage). The texts are SAP's (FI, CO).
"""

from __future__ import annotations

from ml_connector.core.known_errors import KnownError


def _sap(cls: str, number: str) -> str:
    return rf"\b[EA] {cls} {number}\b"


KNOWN_ERRORS: tuple[KnownError, ...] = (
    KnownError("sap_ecc:F5-201", _sap("F5", "201"), "SAP: the posting period is not open",
               "SAP refused the document because its posting date falls in a period that is closed "
               "(message F5 201).",
               "Ask the accounting team to open the period (transaction OB52), or correct the posting date at "
               "the source; then replay."),
    KnownError("sap_ecc:F5-104", _sap("F5", "104"), "SAP: the vendor is not set up in this company code",
               "The vendor exists in SAP but not in the company code of the document (message F5 104).",
               "Extend the vendor to the company code (transaction XK01/FK01), then replay."),
    KnownError("sap_ecc:KI-248", _sap("KI", "248"), "SAP: the cost center does not exist on the posting date",
               "The document names a cost center that SAP does not know, or not on that date (message KI 248).",
               "Correct the cost center mapping or create the cost center (KS01); then replay."),
    KnownError("sap_ecc:KI-235", _sap("KI", "235"), "SAP: the expense account needs a cost center or project",
               "The G/L account of a line requires a CO assignment (cost center, order, WBS element) that the "
               "document does not carry (message KI 235).",
               "Add the cost center at the source (or its mapping), then replay."),
    KnownError("sap_ecc:FH-010", _sap("FH", "010"), "SAP: the G/L account is not defined in the company code",
               "The line's G/L account does not exist in the document's company code (message FH 010).",
               "Correct the account mapping, or create the account in the company code (FS00); then replay."),
    KnownError("sap_ecc:F5-351", _sap("F5", "351"), "SAP: the account is blocked for posting",
               "The vendor or G/L account is blocked for posting in the company code (message F5 351).",
               "Ask the master data team to remove the posting block, then replay."),
    KnownError("sap_ecc:F5-702", _sap("F5", "702"), "SAP: the document does not balance",
               "Debits and credits of the document differ (message F5 702): a line or a tax amount is missing "
               "or rounded differently.",
               "Correct the amounts at the source; then replay."),
    KnownError("sap_ecc:MC-601", _sap("MC", "601"), "SAP: the record is locked by a user",
               "Someone is editing the same object in SAP right now (message MC 601).",
               "Wait a few minutes, then replay."),
    KnownError("sap_ecc:logon", r"RFC_LOGON_FAILURE|LogonError", "SAP refused our logon",
               "SAP refused the RFC user or its password (it may be locked or changed).",
               "An administrator enters the current password on the Connections page and tests it; then replay."),
)
