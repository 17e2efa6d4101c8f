"""The sandbox's ABAP Dictionary (DDIC): per table, its fields in order with their types.

Kept as data so that more tables (SKA1, CSKS, BKPF, BSEG, ...) are one entry each. A field is
`(FIELDNAME, INTTYPE, LENG, DECIMALS, KEYFLAG, FIELDTEXT)`:

- INTTYPE is the ABAP internal type RFC_READ_TABLE reports in FIELDS-TYPE: C (CHAR, also CLNT,
  CUKY, UNIT, LANG), N (NUMC), D (DATS, YYYYMMDD), T (TIMS, HHMMSS), P (packed: DEC, CURR, QUAN),
  I (INT4), F (FLTP), X (RAW).
- LENG is the DDIC *character* length (what RFC_READ_TABLE reports as LENGTH); for P it is the
  number of digits, for I it is 10.

Field lists follow the real ECC 6.0 tables (order and lengths per reference §4 and the public DDIC
pages it cites); tables keep a realistic subset of their fields, in real order. LFA1 and CDPOS are
(like on a real system) wider than RFC_READ_TABLE's 512-character work area.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

INTTYPES = frozenset("CNDTPIFX")

# (FIELDNAME, INTTYPE, LENG, DECIMALS, KEYFLAG, FIELDTEXT)
FieldSpec = tuple[str, str, int, int, bool, str]

_K = True
_N = False

TABLE_SPECS: dict[str, dict[str, object]] = {
    "T000": {
        "text": "Clients",
        "client_dependent": False,  # cross-client: lists every client of the system
        "fields": [
            ("MANDT", "C", 3, 0, _K, "Client"),
            ("MTEXT", "C", 25, 0, _N, "Client name"),
            ("ORT01", "C", 25, 0, _N, "City"),
            ("MWAER", "C", 5, 0, _N, "Standard currency for the client"),
            ("ADRNR", "C", 10, 0, _N, "Address"),
            ("CCCATEGORY", "C", 1, 0, _N, "Client control: role of client (production, test,...)"),
            ("CCCORACTIV", "C", 1, 0, _N, "Client control: changes to client-specific objects"),
            ("CCNOCLIIND", "C", 1, 0, _N, "Client control: changes to cross-client objects"),
            ("CCCOPYLOCK", "C", 1, 0, _N, "Client control: protection against client copy"),
            ("CCNOCASCAD", "C", 1, 0, _N, "Client control: no cascade of customizing"),
            ("CCSOFTLOCK", "C", 1, 0, _N, "Client control: soft lock"),
            ("CCORIGCONT", "C", 1, 0, _N, "Client control: recording of changes"),
            ("CCIMAILDIS", "C", 1, 0, _N, "Client control: CATT and eCATT restrictions"),
            ("CCTEMPLOCK", "C", 1, 0, _N, "Client control: temporary lock"),
            ("CHANGEUSER", "C", 12, 0, _N, "Last changed by"),
            ("CHANGEDATE", "D", 8, 0, _N, "Date of last change"),
            ("LOGSYS", "C", 10, 0, _N, "Logical system"),
        ],
    },
    "LFA1": {
        "text": "Vendor Master (General Section)",
        "client_dependent": True,
        "fields": [
            ("MANDT", "C", 3, 0, _K, "Client"),
            ("LIFNR", "C", 10, 0, _K, "Account Number of Vendor or Creditor"),
            ("LAND1", "C", 3, 0, _N, "Country Key"),
            ("NAME1", "C", 35, 0, _N, "Name 1"),
            ("NAME2", "C", 35, 0, _N, "Name 2"),
            ("NAME3", "C", 35, 0, _N, "Name 3"),
            ("NAME4", "C", 35, 0, _N, "Name 4"),
            ("ORT01", "C", 35, 0, _N, "City"),
            ("ORT02", "C", 35, 0, _N, "District"),
            ("PFACH", "C", 10, 0, _N, "PO Box"),
            ("PSTL2", "C", 10, 0, _N, "P.O. Box Postal Code"),
            ("PSTLZ", "C", 10, 0, _N, "Postal Code"),
            ("REGIO", "C", 3, 0, _N, "Region (State, Province, County)"),
            ("SORTL", "C", 10, 0, _N, "Sort field"),
            ("STRAS", "C", 35, 0, _N, "House number and street"),
            ("ADRNR", "C", 10, 0, _N, "Address"),
            ("MCOD1", "C", 25, 0, _N, "Search term for matchcode search"),
            ("MCOD2", "C", 25, 0, _N, "Search term for matchcode search"),
            ("MCOD3", "C", 25, 0, _N, "Search term for matchcode search"),
            ("ANRED", "C", 15, 0, _N, "Title"),
            ("BEGRU", "C", 4, 0, _N, "Authorization Group"),
            ("BRSCH", "C", 4, 0, _N, "Industry key"),
            ("ERDAT", "D", 8, 0, _N, "Date on which the Record Was Created"),
            ("ERNAM", "C", 12, 0, _N, "Name of Person who Created the Object"),
            ("KONZS", "C", 10, 0, _N, "Group key"),
            ("KTOKK", "C", 4, 0, _N, "Vendor account group"),
            ("KUNNR", "C", 10, 0, _N, "Customer Number"),
            ("LNRZA", "C", 10, 0, _N, "Account Number of the Alternative Payee"),
            ("LOEVM", "C", 1, 0, _N, "Central Deletion Flag for Master Record"),
            ("SPERR", "C", 1, 0, _N, "Central posting block"),
            ("SPERM", "C", 1, 0, _N, "Centrally imposed purchasing block"),
            ("SPRAS", "C", 1, 0, _N, "Language Key"),
            ("STCD1", "C", 16, 0, _N, "Tax Number 1"),
            ("STCD2", "C", 11, 0, _N, "Tax Number 2"),
            ("STKZA", "C", 1, 0, _N, "Indicator: Business Partner Subject to Equalization Tax?"),
            ("STKZU", "C", 1, 0, _N, "Liable for VAT"),
            ("TELF1", "C", 16, 0, _N, "First telephone number"),
            ("TELF2", "C", 16, 0, _N, "Second telephone number"),
            ("TELFX", "C", 31, 0, _N, "Fax Number"),
            ("XCPDK", "C", 1, 0, _N, "Indicator: Is the account a one-time account?"),
            ("XZEMP", "C", 1, 0, _N, "Indicator: Alternative payee in document allowed?"),
            ("VBUND", "C", 6, 0, _N, "Company ID of trading partner"),
            ("STCEG", "C", 20, 0, _N, "VAT Registration Number"),
            ("STKZN", "C", 1, 0, _N, "Natural Person"),
            ("SPERQ", "C", 2, 0, _N, "Function That Will Be Blocked"),
            ("NODEL", "C", 1, 0, _N, "Central deletion block for master record"),
            ("SPERZ", "C", 1, 0, _N, "Payment Block"),
            ("UPDAT", "D", 8, 0, _N, "Last Change Confirmation Date"),
            ("UPTIM", "T", 6, 0, _N, "Time of Last Change Confirmation"),
        ],
    },
    "LFB1": {
        "text": "Vendor Master (Company Code)",
        "client_dependent": True,
        "fields": [
            ("MANDT", "C", 3, 0, _K, "Client"),
            ("LIFNR", "C", 10, 0, _K, "Account Number of Vendor or Creditor"),
            ("BUKRS", "C", 4, 0, _K, "Company Code"),
            ("PERNR", "N", 8, 0, _N, "Personnel Number"),
            ("ERDAT", "D", 8, 0, _N, "Date on which the Record Was Created"),
            ("ERNAM", "C", 12, 0, _N, "Name of Person who Created the Object"),
            ("SPERR", "C", 1, 0, _N, "Posting block for company code"),
            ("LOEVM", "C", 1, 0, _N, "Deletion Flag for Master Record (Company Code Level)"),
            ("ZUAWA", "C", 3, 0, _N, "Key for sorting according to assignment numbers"),
            ("AKONT", "C", 10, 0, _N, "Reconciliation Account in General Ledger"),
            ("BEGRU", "C", 4, 0, _N, "Authorization Group"),
            ("ZWELS", "C", 10, 0, _N, "List of the Payment Methods to be Considered"),
            ("XVERR", "C", 1, 0, _N, "Indicator: Clearing between customer and vendor?"),
            ("ZAHLS", "C", 1, 0, _N, "Block key for payment"),
            ("ZTERM", "C", 4, 0, _N, "Terms of Payment Key"),
            ("EIKTO", "C", 12, 0, _N, "Our account number with the vendor"),
            ("ZSABE", "C", 15, 0, _N, "Clerk at vendor"),
            ("FDGRV", "C", 10, 0, _N, "Planning group"),
            ("BUSAB", "C", 2, 0, _N, "Accounting clerk"),
            ("WEBTR", "P", 13, 2, _N, "Bill of exchange limit (in local currency)"),
            ("REPRF", "C", 1, 0, _N, "Check Flag for Double Invoices or Credit Memos"),
            ("HBKID", "C", 5, 0, _N, "Short key for a house bank"),
            ("XPORE", "C", 1, 0, _N, "Indicator: Pay all items separately?"),
            ("QSSKZ", "C", 2, 0, _N, "Withholding Tax Code"),
            ("MINDK", "C", 3, 0, _N, "Minority Indicators"),
            ("ALTKN", "C", 10, 0, _N, "Previous Master Record Number"),
            ("UPDAT", "D", 8, 0, _N, "Last Change Confirmation Date"),
            ("UPTIM", "T", 6, 0, _N, "Time of Last Change Confirmation"),
        ],
    },
    "CDHDR": {
        "text": "Change document header",
        "client_dependent": True,
        "fields": [
            ("MANDT", "C", 3, 0, _K, "Client"),
            ("OBJECTCLAS", "C", 15, 0, _K, "Object class"),
            ("OBJECTID", "C", 90, 0, _K, "Object value"),
            ("CHANGENR", "C", 10, 0, _K, "Document change number"),
            ("USERNAME", "C", 12, 0, _N, "User name of the person responsible in change document"),
            ("UDATE", "D", 8, 0, _N, "Creation date of the change document"),
            ("UTIME", "T", 6, 0, _N, "Time changed"),
            ("TCODE", "C", 20, 0, _N, "Transaction in which a change was made"),
            ("PLANCHNGNR", "C", 12, 0, _N, "Planned change number"),
            ("ACT_CHNGNO", "C", 10, 0, _N, "Change number of the document created by this change"),
            ("WAS_PLANND", "C", 1, 0, _N, "Flag that changes were generated from planned changes"),
            ("CHANGE_IND", "C", 1, 0, _N, "Application object change type (U, I, E, D)"),
            ("LANGU", "C", 1, 0, _N, "Language Key"),
            ("VERSION", "C", 3, 0, _N, "3-Byte field"),
        ],
    },
    "CDPOS": {
        "text": "Change document items",
        "client_dependent": True,
        "fields": [
            ("MANDT", "C", 3, 0, _K, "Client"),
            ("OBJECTCLAS", "C", 15, 0, _K, "Object class"),
            ("OBJECTID", "C", 90, 0, _K, "Object value"),
            ("CHANGENR", "C", 10, 0, _K, "Document change number"),
            ("TABNAME", "C", 30, 0, _K, "Table Name"),
            ("TABKEY", "C", 70, 0, _K, "Changed table record key"),
            ("FNAME", "C", 30, 0, _K, "Field Name"),
            ("CHNGIND", "C", 1, 0, _K, "Change Type (U, I, S, D)"),
            ("TEXT_CASE", "C", 1, 0, _N, "Flag: X=Text change"),
            ("UNIT_OLD", "C", 3, 0, _N, "Change documents, unit referenced"),
            ("UNIT_NEW", "C", 3, 0, _N, "Change documents, unit referenced"),
            ("CUKY_OLD", "C", 5, 0, _N, "Change documents, referenced currency"),
            ("CUKY_NEW", "C", 5, 0, _N, "Change documents, referenced currency"),
            ("VALUE_NEW", "C", 254, 0, _N, "New contents of changed field"),
            ("VALUE_OLD", "C", 254, 0, _N, "Old contents of changed field"),
        ],
    },
    # A structure (DDIC INTTAB): RFC_READ_TABLE answers TABLE_WITHOUT_DATA for it.
    "BAPIRET2": {
        "text": "Return Parameter",
        "client_dependent": False,
        "kind": "INTTAB",
        "fields": [
            ("TYPE", "C", 1, 0, _N, "Message type: S Success, E Error, W Warning, I Info, A Abort"),
            ("ID", "C", 20, 0, _N, "Message Class"),
            ("NUMBER", "N", 3, 0, _N, "Message Number"),
            ("MESSAGE", "C", 220, 0, _N, "Message Text"),
            ("LOG_NO", "C", 20, 0, _N, "Application log: log number"),
            ("LOG_MSG_NO", "N", 6, 0, _N, "Application log: Internal message serial number"),
            ("MESSAGE_V1", "C", 50, 0, _N, "Message Variable"),
            ("MESSAGE_V2", "C", 50, 0, _N, "Message Variable"),
            ("MESSAGE_V3", "C", 50, 0, _N, "Message Variable"),
            ("MESSAGE_V4", "C", 50, 0, _N, "Message Variable"),
            ("PARAMETER", "C", 32, 0, _N, "Parameter Name"),
            ("ROW", "I", 10, 0, _N, "Lines in parameter"),
            ("FIELD", "C", 30, 0, _N, "Field in parameter"),
            ("SYSTEM", "C", 10, 0, _N, "Logical system from which message originates"),
        ],
    },
}


@dataclass(frozen=True)
class DdicField:
    fieldname: str
    inttype: str
    leng: int
    decimals: int = 0
    keyflag: bool = False
    fieldtext: str = ""

    def initial(self) -> str:
        """The ABAP initial value in internal character form."""
        if self.inttype == "N":
            return "0" * self.leng
        if self.inttype == "D":
            return "00000000"
        if self.inttype == "T":
            return "000000"
        if self.inttype in ("P", "I", "F"):
            return "0"
        return ""


@dataclass(frozen=True)
class DdicTable:
    name: str
    text: str
    fields: tuple[DdicField, ...]
    client_dependent: bool = True
    kind: str = "TRANSP"  # TRANSP (transparent table) or INTTAB (structure)
    _by_name: dict[str, DdicField] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name.update({f.fieldname: f for f in self.fields})

    def field(self, name: str) -> DdicField | None:
        return self._by_name.get(name.upper())

    def has_field(self, name: str) -> bool:
        return name.upper() in self._by_name

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.fieldname for f in self.fields)

    @property
    def key_fields(self) -> tuple[DdicField, ...]:
        return tuple(f for f in self.fields if f.keyflag)

    @property
    def data_key_fields(self) -> tuple[str, ...]:
        """Key fields without the client (MANDT is implicit per client in EccData)."""
        return tuple(f.fieldname for f in self.key_fields if not (self.client_dependent and
                                                                    f.fieldname == "MANDT"))

    @property
    def width(self) -> int:
        """Sum of the character lengths (no delimiters)."""
        return sum(f.leng for f in self.fields)


def _build(name: str, spec: dict[str, object]) -> DdicTable:
    raw_fields = spec["fields"]
    assert isinstance(raw_fields, list)
    fields: list[DdicField] = []
    for fs in raw_fields:
        fname, inttype, leng, decimals, key, text = fs
        if inttype not in INTTYPES:
            raise ValueError(f"DDIC {name}-{fname}: unknown INTTYPE {inttype!r}")
        fields.append(DdicField(fname, inttype, int(leng), int(decimals), bool(key), str(text)))
    return DdicTable(name=name, text=str(spec.get("text", "")), fields=tuple(fields),
                     client_dependent=bool(spec.get("client_dependent", True)),
                     kind=str(spec.get("kind", "TRANSP")))


@cache
def _all_tables() -> dict[str, DdicTable]:
    return {name: _build(name, spec) for name, spec in TABLE_SPECS.items()}


def register_table(name: str, fields: list[FieldSpec], *, text: str = "", client_dependent: bool = True,
                   kind: str = "TRANSP") -> DdicTable:
    """Add (or replace) a table definition at runtime, e.g. from a later task's module."""
    spec: dict[str, object] = {"text": text, "client_dependent": client_dependent, "kind": kind,
                               "fields": list(fields)}
    TABLE_SPECS[name.upper()] = spec
    table = _build(name.upper(), spec)
    _all_tables()[name.upper()] = table
    return table


def table(name: str) -> DdicTable | None:
    """The DDIC definition of `name` (case-insensitive), or None if the object does not exist."""
    return _all_tables().get(name.strip().upper())


def table_names() -> list[str]:
    return sorted(_all_tables())
