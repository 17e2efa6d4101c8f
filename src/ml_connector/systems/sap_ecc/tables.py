"""Catalogue of the ECC tables the integrations read, so flows do not hard-code SAP facts.

Per table: the primary key without MANDT (what `TableReader.read(key_fields=...)` needs), how
changes are found (a change-date field on the table, or a change-document object class in
CDHDR/CDPOS), typical WHERE filters, fields to avoid through RFC_READ_TABLE, and notes
(reference §4).

    info = table_info("EKKO")
    where = info.filter("company_code", bukrs="1000")       # "BUKRS = '1000'"
    for package in read_incremental(reader, "EKKO", since=date(2024, 6, 1)):  # incremental.py
        ...
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .table_reader import alpha, quote

__all__ = ["CATALOGUE", "TableInfo", "table_info"]


@dataclass(frozen=True)
class TableInfo:
    name: str
    text: str
    key_fields: tuple[str, ...]  # primary key without MANDT
    change_date_fields: tuple[str, ...] = ()  # DATS fields: a row changed on/after D has one >= D
    change_object_class: str = ""  # CDHDR-OBJECTCLAS when changes are found via change documents
    change_object_id_field: str = ""  # the field CDHDR-OBJECTID holds (e.g. KUNNR for DEBI)
    filters: Mapping[str, str] = field(default_factory=dict)  # name -> WHERE template with {params}
    alpha_params: Mapping[str, int] = field(default_factory=dict)  # params zero-padded (ALPHA) to length
    avoid_fields: Mapping[str, str] = field(default_factory=dict)  # field -> why not via RFC_READ_TABLE
    wider_than_512: bool = False  # needs column groups with RFC_READ_TABLE
    notes: str = ""

    @property
    def incremental(self) -> str:
        """'date' (change-date field), 'change_documents' (CDHDR object class) or '' (full reads)."""
        if self.change_date_fields:
            return "date"
        if self.change_object_class:
            return "change_documents"
        return ""

    def filter(self, name: str, **params: str | int) -> str:
        """A typical WHERE clause with quoted, ALPHA-converted literals.

        >>> table_info("EKPO").filter("plant", werks="1000")
        "WERKS = '1000'"
        """
        template = self.filters.get(name)
        if template is None:
            raise KeyError(f"{self.name} has no filter {name!r}; known: {sorted(self.filters)}")
        values = {}
        for key, value in params.items():
            length = self.alpha_params.get(key)
            values[key] = quote(alpha(value, length) if length else value)
        return template.format(**values)

    def read_fields(self, all_fields: list[str] | tuple[str, ...]) -> list[str]:
        """`all_fields` (e.g. from `TableReader.describe`) without the fields to avoid."""
        return [f for f in all_fields if f not in self.avoid_fields]


_DOC_DATE = {"posting_period": "BUDAT BETWEEN {low} AND {high}"}

_ENTRIES = [
    TableInfo("LFA1", "Vendor master (general)", ("LIFNR",), change_object_class="KRED",
              change_object_id_field="LIFNR", filters={"vendor": "LIFNR = {lifnr}", "not_deleted": "LOEVM = ' '"},
              alpha_params={"lifnr": 10}, wider_than_512=True,
              notes="No change date of its own (ERDAT is the creation date): use CDHDR class KRED."),
    TableInfo("LFB1", "Vendor master (company code)", ("LIFNR", "BUKRS"), change_object_class="KRED",
              change_object_id_field="LIFNR",
              filters={"company_code": "BUKRS = {bukrs}", "vendor": "LIFNR = {lifnr}"}, alpha_params={"lifnr": 10}),
    TableInfo("EKKO", "Purchasing document header", ("EBELN",), change_date_fields=("AEDAT",),
              change_object_class="EINKBELEG", change_object_id_field="EBELN",
              filters={"company_code": "BUKRS = {bukrs}", "purchase_orders": "BSTYP = 'F'",
                       "vendor": "LIFNR = {lifnr}", "document_date": "BEDAT BETWEEN {low} AND {high}",
                       "po": "EBELN = {ebeln}"},
              alpha_params={"lifnr": 10, "ebeln": 10},
              avoid_fields={"WKURS": "DEC9,5: rates of 10 or more (e.g. JPY) do not fit 9 characters ('*')"},
              notes="DDIC calls EKKO-AEDAT the creation date; ME22N changes move it on the sandbox and "
                    "many systems, but CDHDR class EINKBELEG is the complete change log."),
    TableInfo("EKPO", "Purchasing document item", ("EBELN", "EBELP"), change_date_fields=("AEDAT",),
              change_object_class="EINKBELEG", change_object_id_field="EBELN",
              filters={"company_code": "BUKRS = {bukrs}", "plant": "WERKS = {werks}", "po": "EBELN = {ebeln}",
                       "cost_center_items": "KNTTP = 'K'", "not_deleted": "LOEKZ = ' '"},
              alpha_params={"ebeln": 10},
              notes="NETPR CURR11,2 per PEINH units; NETWR CURR13,2 in EKKO-WAERS; MENGE QUAN13,3 in MEINS. "
                    "KNTTP K = cost center (see EKKN), F order, P project, A asset, blank = stock."),
    TableInfo("EKKN", "PO account assignment", ("EBELN", "EBELP", "ZEKKN"), change_date_fields=("AEDAT",),
              change_object_class="EINKBELEG", change_object_id_field="EBELN",
              filters={"po": "EBELN = {ebeln}", "cost_center": "KOSTL = {kostl}"},
              alpha_params={"ebeln": 10, "kostl": 10},
              avoid_fields={"VPROZ": "DEC3,1: split percentages of 10.0 or more render as '*.0'"},
              notes="PS_PSP_PNR is the internal NUMC8 WBS key (convert via PRPS). KOSTL with KOKRS; "
                    "cost center validity in CSKS (DATAB <= date <= DATBI)."),
    TableInfo("T001W", "Plants", ("WERKS",), filters={"plant": "WERKS = {werks}"},
              notes="Company code of a plant: T001K-BUKRS for BWKEY = T001W-BWKEY."),
    TableInfo("T001K", "Valuation area -> company code", ("BWKEY",), filters={"company_code": "BUKRS = {bukrs}"}),
    TableInfo("TKA02", "Company code -> controlling area", ("BUKRS", "GSBER"),
              filters={"company_code": "BUKRS = {bukrs}"},
              notes="KOKRS of a company code (GSBER blank: valid for all business areas)."),
    TableInfo("KNA1", "Customer master (general)", ("KUNNR",), change_object_class="DEBI",
              change_object_id_field="KUNNR",
              filters={"customer": "KUNNR = {kunnr}", "not_deleted": "LOEVM = ' '",
                       "order_blocked": "AUFSD <> ' '"},
              alpha_params={"kunnr": 10}, wider_than_512=True,
              notes="No change date of its own: use CDHDR class DEBI (also covers KNB1/KNVV changes). "
                    "Blocks: SPERR (posting), AUFSD (order), LIFSD (delivery), FAKSD (billing)."),
    TableInfo("KNB1", "Customer master (company code)", ("KUNNR", "BUKRS"), change_object_class="DEBI",
              change_object_id_field="KUNNR", filters={"company_code": "BUKRS = {bukrs}"}),
    TableInfo("KNKK", "Customer credit management (control area)", ("KUNNR", "KKBER"),
              change_date_fields=("AEDAT", "ERDAT"),
              filters={"credit_area": "KKBER = {kkber}", "blocked": "CRBLB = 'X'", "customer": "KUNNR = {kunnr}"},
              alpha_params={"kunnr": 10},
              notes="KLIMK/SKFOR CURR15,2 in the credit control area currency (T014); SKFOR may be negative. "
                    "KNKLI is the credit account (a central payer can carry the limit). Obsolete in S/4."),
    TableInfo("KNVV", "Customer master (sales area)", ("KUNNR", "VKORG", "VTWEG", "SPART"),
              change_object_class="DEBI", change_object_id_field="KUNNR",
              filters={"sales_org": "VKORG = {vkorg}", "customer": "KUNNR = {kunnr}"},
              alpha_params={"kunnr": 10},
              notes="Sales-area blocks AUFSD/LIFSD/FAKSD repeat KNA1's central ones per sales area."),
    TableInfo("KNVP", "Customer partner functions", ("KUNNR", "VKORG", "VTWEG", "SPART", "PARVW", "PARZA"),
              change_object_class="DEBI", change_object_id_field="KUNNR",
              filters={"sales_org": "VKORG = {vkorg}", "customer": "KUNNR = {kunnr}",
                       "function": "PARVW = {parvw}"},
              alpha_params={"kunnr": 10},
              notes="PARVW in internal (German) codes: AG sold-to, WE ship-to, RE bill-to, RG payer."),
    TableInfo("VBAK", "Sales document header", ("VBELN",), change_date_fields=("AEDAT", "ERDAT"),
              change_object_class="VERKBELEG", change_object_id_field="VBELN",
              filters={"sales_org": "VKORG = {vkorg}", "orders": "VBTYP = 'C'", "sold_to": "KUNNR = {kunnr}",
                       "created": "ERDAT BETWEEN {low} AND {high}"},
              alpha_params={"kunnr": 10, "vbeln": 10},
              notes="AEDAT stays 00000000 until the first change: select AEDAT >= D OR ERDAT >= D. "
                    "AUART in internal codes ('TA' = OR)."),
    TableInfo("VBAP", "Sales document item", ("VBELN", "POSNR"), change_date_fields=("AEDAT", "ERDAT"),
              change_object_class="VERKBELEG", change_object_id_field="VBELN",
              filters={"order": "VBELN = {vbeln}", "plant": "WERKS = {werks}", "not_rejected": "ABGRU = ' '"},
              alpha_params={"vbeln": 10}),
    TableInfo("LIKP", "Delivery header", ("VBELN",), change_date_fields=("AEDAT", "ERDAT"),
              change_object_class="LIEFERUNG", change_object_id_field="VBELN",
              filters={"sales_org": "VKORG = {vkorg}", "goods_issued": "WADAT_IST <> '00000000'",
                       "shipping_point": "VSTEL = {vstel}"},
              notes="WADAT_IST (actual goods issue) is 00000000 until goods issue."),
    TableInfo("LIPS", "Delivery item", ("VBELN", "POSNR"), change_date_fields=("AEDAT", "ERDAT"),
              change_object_class="LIEFERUNG", change_object_id_field="VBELN",
              filters={"delivery": "VBELN = {vbeln}", "order": "VGBEL = {vgbel}", "plant": "WERKS = {werks}"},
              alpha_params={"vbeln": 10, "vgbel": 10}, wider_than_512=True,
              notes="VGBEL/VGPOS reference the sales order item; LFIMG QUAN13,3 in VRKME."),
    TableInfo("CDHDR", "Change document header", ("OBJECTCLAS", "OBJECTID", "CHANGENR"),
              change_date_fields=("UDATE",),
              filters={"object_class": "OBJECTCLAS = {objectclas}"}),
    TableInfo("CDPOS", "Change document items",
              ("OBJECTCLAS", "OBJECTID", "CHANGENR", "TABNAME", "TABKEY", "FNAME", "CHNGIND"),
              filters={"object_class": "OBJECTCLAS = {objectclas}", "change": "CHANGENR = {changenr}"},
              wider_than_512=True, notes="774 characters wide: column groups or /BODS/RFC_READ_TABLE."),
    # FI tables (their DDIC and data come from the FI part of the sandbox; facts per reference §4)
    TableInfo("T001", "Company codes", ("BUKRS",)),
    TableInfo("SKA1", "G/L account (chart of accounts)", ("KTOPL", "SAKNR"), alpha_params={"saknr": 10}),
    TableInfo("SKAT", "G/L account texts", ("SPRAS", "KTOPL", "SAKNR")),
    TableInfo("SKB1", "G/L account (company code)", ("BUKRS", "SAKNR"), filters={"company_code": "BUKRS = {bukrs}"}),
    TableInfo("CSKS", "Cost center", ("KOKRS", "KOSTL", "DATBI"),
              filters={"valid_on": "DATAB <= {day} AND DATBI >= {day}", "controlling_area": "KOKRS = {kokrs}"},
              alpha_params={"kostl": 10}, notes="Time-dependent: pick the row with DATAB <= date <= DATBI."),
    TableInfo("CSKT", "Cost center texts", ("SPRAS", "KOKRS", "KOSTL", "DATBI")),
    TableInfo("BKPF", "Accounting document header", ("BUKRS", "BELNR", "GJAHR"), change_date_fields=("CPUDT",),
              change_object_class="BELEG", change_object_id_field="BELNR",
              filters={"company_code_year": "BUKRS = {bukrs} AND GJAHR = {gjahr}", **_DOC_DATE},
              alpha_params={"belnr": 10},
              notes="CPUDT is the entry date (new documents); later changes (e.g. clearing) are in CDHDR "
                    "class BELEG."),
    TableInfo("BSEG", "Accounting document line", ("BUKRS", "BELNR", "GJAHR", "BUZEI"),
              filters={"document": "BUKRS = {bukrs} AND BELNR = {belnr} AND GJAHR = {gjahr}"},
              alpha_params={"belnr": 10}, wider_than_512=True,
              notes="Cluster table RFBLG in ECC: always filter by BUKRS/BELNR/GJAHR. Amounts unsigned; SHKZG "
                    "S debit / H credit."),
    TableInfo("BSIK", "Vendor open items", ("BUKRS", "LIFNR", "UMSKS", "UMSKZ", "AUGDT", "AUGBL", "ZUONR",
                                            "GJAHR", "BELNR", "BUZEI"),
              filters={"vendor": "BUKRS = {bukrs} AND LIFNR = {lifnr}"}, alpha_params={"lifnr": 10}),
    TableInfo("BSAK", "Vendor cleared items", ("BUKRS", "LIFNR", "UMSKS", "UMSKZ", "AUGDT", "AUGBL", "ZUONR",
                                               "GJAHR", "BELNR", "BUZEI"),
              filters={"vendor": "BUKRS = {bukrs} AND LIFNR = {lifnr}",
                       "cleared_since": "AUGDT >= {day}"}, alpha_params={"lifnr": 10}),
]

CATALOGUE: Mapping[str, TableInfo] = MappingProxyType({t.name: t for t in _ENTRIES})


def table_info(name: str) -> TableInfo:
    """The catalogue entry of `name` (case-insensitive); KeyError if the table is not catalogued."""
    try:
        return CATALOGUE[name.strip().upper()]
    except KeyError:
        raise KeyError(f"table {name!r} is not in the ECC table catalogue") from None
