"""DDIC of the MM (purchasing) and plant tables the integrations read: EKKO, EKPO, EKKN, T001W, T001K,
and TKA02 (company code -> controlling area).

Importing this module registers the tables (`ddic.register_table`). Field lists are realistic ECC
6.0 subsets in real DDIC order; types and lengths per reference §4 (EKPO NETPR CURR11,2, NETWR
CURR13,2, MENGE QUAN13,3; EKKN PS_PSP_PNR NUMC8, VPROZ DEC3,1). Packed types (CURR, QUAN, DEC) are
INTTYPE P with LENG = number of digits, which is also the RFC_READ_TABLE output length: DEC3,1
VPROZ = 50.0 does not fit 3 characters and comes back as '*.0' (reference §2.3).
"""

from __future__ import annotations

from .ddic import FieldSpec, register_table

_K = True
_N = False

EKKO: list[FieldSpec] = [
    ("MANDT", "C", 3, 0, _K, "Client"),
    ("EBELN", "C", 10, 0, _K, "Purchasing Document Number"),
    ("BUKRS", "C", 4, 0, _N, "Company Code"),
    ("BSTYP", "C", 1, 0, _N, "Purchasing Document Category"),
    ("BSART", "C", 4, 0, _N, "Purchasing Document Type"),
    ("BSAKZ", "C", 1, 0, _N, "Control indicator for purchasing document type"),
    ("LOEKZ", "C", 1, 0, _N, "Deletion Indicator in Purchasing Document"),
    ("STATU", "C", 1, 0, _N, "Status of Purchasing Document"),
    ("AEDAT", "D", 8, 0, _N, "Date on Which Record Was Created"),
    ("ERNAM", "C", 12, 0, _N, "Name of Person who Created the Object"),
    ("PINCR", "N", 5, 0, _N, "Item Number Interval"),
    ("LPONR", "N", 5, 0, _N, "Last Item Number"),
    ("LIFNR", "C", 10, 0, _N, "Vendor Account Number"),
    ("SPRAS", "C", 1, 0, _N, "Language Key"),
    ("ZTERM", "C", 4, 0, _N, "Terms of Payment Key"),
    ("ZBD1T", "P", 3, 0, _N, "Cash (Prompt Payment) Discount Days"),
    ("ZBD2T", "P", 3, 0, _N, "Cash (Prompt Payment) Discount Days"),
    ("ZBD3T", "P", 3, 0, _N, "Net Payment Terms Period"),
    ("ZBD1P", "P", 5, 3, _N, "Cash discount percentage 1"),
    ("ZBD2P", "P", 5, 3, _N, "Cash Discount Percentage 2"),
    ("EKORG", "C", 4, 0, _N, "Purchasing Organization"),
    ("EKGRP", "C", 3, 0, _N, "Purchasing Group"),
    ("WAERS", "C", 5, 0, _N, "Currency Key"),
    ("WKURS", "P", 9, 5, _N, "Exchange Rate"),
    ("KUFIX", "C", 1, 0, _N, "Indicator: Fixing of Exchange Rate"),
    ("BEDAT", "D", 8, 0, _N, "Purchasing Document Date"),
    ("KDATB", "D", 8, 0, _N, "Start of Validity Period"),
    ("KDATE", "D", 8, 0, _N, "End of Validity Period"),
    ("IHREZ", "C", 12, 0, _N, "Your Reference"),
    ("UNSEZ", "C", 12, 0, _N, "Our Reference"),
    ("TELF1", "C", 16, 0, _N, "Vendor's Telephone Number"),
    ("INCO1", "C", 3, 0, _N, "Incoterms (Part 1)"),
    ("INCO2", "C", 28, 0, _N, "Incoterms (Part 2)"),
    ("KNUMV", "C", 10, 0, _N, "Number of the Document Condition"),
    ("KALSM", "C", 6, 0, _N, "Procedure (Pricing, Output Control, Acct. Det., Costing,...)"),
    ("FRGGR", "C", 2, 0, _N, "Release group"),
    ("FRGSX", "C", 2, 0, _N, "Release Strategy"),
    ("FRGKE", "C", 1, 0, _N, "Release Indicator: Purchasing Document"),
    ("FRGZU", "C", 8, 0, _N, "Release status"),
    ("FRGRL", "C", 1, 0, _N, "Release Not Yet Completely Effected"),
    ("RLWRT", "P", 15, 2, _N, "Total value at time of release"),
    ("MEMORY", "C", 1, 0, _N, "Purchase order not yet complete"),
    ("PROCSTAT", "C", 2, 0, _N, "Purchasing document processing state"),
]

EKPO: list[FieldSpec] = [
    ("MANDT", "C", 3, 0, _K, "Client"),
    ("EBELN", "C", 10, 0, _K, "Purchasing Document Number"),
    ("EBELP", "N", 5, 0, _K, "Item Number of Purchasing Document"),
    ("LOEKZ", "C", 1, 0, _N, "Deletion Indicator in Purchasing Document"),
    ("STATU", "C", 1, 0, _N, "RFQ status"),
    ("AEDAT", "D", 8, 0, _N, "Purchasing Document Item Change Date"),
    ("TXZ01", "C", 40, 0, _N, "Short Text"),
    ("MATNR", "C", 18, 0, _N, "Material Number"),
    ("EMATN", "C", 18, 0, _N, "Material number"),
    ("BUKRS", "C", 4, 0, _N, "Company Code"),
    ("WERKS", "C", 4, 0, _N, "Plant"),
    ("LGORT", "C", 4, 0, _N, "Storage Location"),
    ("BEDNR", "C", 10, 0, _N, "Requirement Tracking Number"),
    ("MATKL", "C", 9, 0, _N, "Material Group"),
    ("INFNR", "C", 10, 0, _N, "Number of Purchasing Info Record"),
    ("IDNLF", "C", 35, 0, _N, "Material Number Used by Vendor"),
    ("KTMNG", "P", 13, 3, _N, "Target Quantity"),
    ("MENGE", "P", 13, 3, _N, "Purchase Order Quantity"),
    ("MEINS", "C", 3, 0, _N, "Purchase Order Unit of Measure"),
    ("BPRME", "C", 3, 0, _N, "Order Price Unit (Purchasing)"),
    ("BPUMZ", "P", 5, 0, _N, "Numerator for Conversion of Order Price Unit into Order Unit"),
    ("BPUMN", "P", 5, 0, _N, "Denominator for Conv. of Order Price Unit into Order Unit"),
    ("UMREZ", "P", 5, 0, _N, "Numerator for Conversion of Order Unit to Base Unit"),
    ("UMREN", "P", 5, 0, _N, "Denominator for Conversion of Order Unit to Base Unit"),
    ("NETPR", "P", 11, 2, _N, "Net Price in Purchasing Document (in Document Currency)"),
    ("PEINH", "P", 5, 0, _N, "Price unit"),
    ("NETWR", "P", 13, 2, _N, "Net Order Value in PO Currency"),
    ("BRTWR", "P", 13, 2, _N, "Gross order value in PO currency"),
    ("AGDAT", "D", 8, 0, _N, "Deadline for Submission of Bid/Quotation"),
    ("WEBAZ", "P", 3, 0, _N, "Goods Receipt Processing Time in Days"),
    ("MWSKZ", "C", 2, 0, _N, "Tax on sales/purchases code"),
    ("TXJCD", "C", 15, 0, _N, "Tax Jurisdiction"),
    ("INSMK", "C", 1, 0, _N, "Stock Type"),
    ("ELIKZ", "C", 1, 0, _N, "\"Delivery Completed\" Indicator"),
    ("EREKZ", "C", 1, 0, _N, "Final Invoice Indicator"),
    ("PSTYP", "C", 1, 0, _N, "Item Category in Purchasing Document"),
    ("KNTTP", "C", 1, 0, _N, "Account Assignment Category"),
    ("KZVBR", "C", 1, 0, _N, "Consumption Posting"),
    ("VRTKZ", "C", 1, 0, _N, "Distribution indicator for multiple account assignment"),
    ("TWRKZ", "C", 1, 0, _N, "Partial invoice indicator"),
    ("WEPOS", "C", 1, 0, _N, "Goods Receipt Indicator"),
    ("WEUNB", "C", 1, 0, _N, "Goods Receipt, Non-Valuated"),
    ("REPOS", "C", 1, 0, _N, "Invoice Receipt Indicator"),
    ("WEBRE", "C", 1, 0, _N, "Indicator: GR-Based Invoice Verification"),
    ("KONNR", "C", 10, 0, _N, "Number of Principal Purchase Agreement"),
    ("KTPNR", "N", 5, 0, _N, "Item Number of Principal Purchase Agreement"),
    ("BANFN", "C", 10, 0, _N, "Purchase Requisition Number"),
    ("BNFPO", "N", 5, 0, _N, "Item Number of Purchase Requisition"),
    ("EGLKZ", "C", 1, 0, _N, "Outward Delivery Completed Indicator"),
    ("PRDAT", "D", 8, 0, _N, "Date of Price Determination"),
    ("BSTYP", "C", 1, 0, _N, "Purchasing Document Category"),
    ("EFFWR", "P", 13, 2, _N, "Effective value of item"),
    ("LMEIN", "C", 3, 0, _N, "Base Unit of Measure"),
]

EKKN: list[FieldSpec] = [
    ("MANDT", "C", 3, 0, _K, "Client"),
    ("EBELN", "C", 10, 0, _K, "Purchasing Document Number"),
    ("EBELP", "N", 5, 0, _K, "Item Number of Purchasing Document"),
    ("ZEKKN", "N", 2, 0, _K, "Sequential Number of Account Assignment"),
    ("LOEKZ", "C", 1, 0, _N, "Deletion Indicator: Purchasing Document Account Assignment"),
    ("AEDAT", "D", 8, 0, _N, "Date on Which Record Was Created"),
    ("KFLAG", "C", 1, 0, _N, "Indicator: Record Blocked for Cost Accounting"),
    ("MENGE", "P", 13, 3, _N, "Quantity"),
    ("VPROZ", "P", 3, 1, _N, "Distribution percentage in the case of multiple acct assgt"),
    ("NETWR", "P", 13, 2, _N, "Net Order Value in PO Currency"),
    ("SAKTO", "C", 10, 0, _N, "G/L Account Number"),
    ("GSBER", "C", 4, 0, _N, "Business Area"),
    ("KOSTL", "C", 10, 0, _N, "Cost Center"),
    ("PROJN", "C", 16, 0, _N, "Old: Project number : No longer used --> PS_POSNR"),
    ("VBELN", "C", 10, 0, _N, "Sales and Distribution Document Number"),
    ("VBELP", "N", 6, 0, _N, "Sales Document Item"),
    ("VETEN", "N", 4, 0, _N, "Schedule Line Number"),
    ("KZBRB", "C", 1, 0, _N, "Indicator for GR/IR clearing posting"),
    ("ANLN1", "C", 12, 0, _N, "Main Asset Number"),
    ("ANLN2", "C", 4, 0, _N, "Asset Subnumber"),
    ("AUFNR", "C", 12, 0, _N, "Order Number"),
    ("WEMPF", "C", 12, 0, _N, "Goods Recipient/Ship-To Party"),
    ("ABLAD", "C", 25, 0, _N, "Unloading Point"),
    ("KOKRS", "C", 4, 0, _N, "Controlling Area"),
    ("KSTRG", "C", 12, 0, _N, "Cost Object"),
    ("PAOBJNR", "N", 10, 0, _N, "Profitability Segment Number (CO-PA)"),
    ("PRCTR", "C", 10, 0, _N, "Profit Center"),
    ("PS_PSP_PNR", "N", 8, 0, _N, "Work Breakdown Structure Element (WBS Element)"),
    ("NPLNR", "C", 12, 0, _N, "Network Number for Account Assignment"),
    ("AUFPL", "N", 10, 0, _N, "Routing number of operations in the order"),
    ("APLZL", "N", 8, 0, _N, "Internal counter"),
    ("FISTL", "C", 16, 0, _N, "Funds Center"),
    ("GEBER", "C", 10, 0, _N, "Fund"),
    ("FKBER", "C", 16, 0, _N, "Functional Area"),
]

T001W: list[FieldSpec] = [
    ("MANDT", "C", 3, 0, _K, "Client"),
    ("WERKS", "C", 4, 0, _K, "Plant"),
    ("NAME1", "C", 30, 0, _N, "Name"),
    ("BWKEY", "C", 4, 0, _N, "Valuation Area"),
    ("KUNNR", "C", 10, 0, _N, "Customer Number of Plant"),
    ("LIFNR", "C", 10, 0, _N, "Vendor Number of Plant"),
    ("FABKL", "C", 2, 0, _N, "Factory calendar key"),
    ("NAME2", "C", 30, 0, _N, "Name 2"),
    ("STRAS", "C", 30, 0, _N, "House number and street"),
    ("PFACH", "C", 10, 0, _N, "PO Box"),
    ("PSTLZ", "C", 10, 0, _N, "Postal Code"),
    ("ORT01", "C", 25, 0, _N, "City"),
    ("EKORG", "C", 4, 0, _N, "Purchasing Organization"),
    ("VKORG", "C", 4, 0, _N, "Sales Organization for Intercompany Billing"),
    ("CHAZV", "C", 1, 0, _N, "Indicator: batch status management active"),
    ("KKOWK", "C", 1, 0, _N, "Indicator: Conditions at Plant Level"),
    ("KORDB", "C", 1, 0, _N, "Indicator: Source list requirement"),
    ("BEDPL", "C", 1, 0, _N, "Activating requirements planning"),
    ("LAND1", "C", 3, 0, _N, "Country Key"),
    ("REGIO", "C", 3, 0, _N, "Region (State, Province, County)"),
    ("COUNC", "C", 3, 0, _N, "County Code"),
    ("CITYC", "C", 4, 0, _N, "City Code"),
    ("ADRNR", "C", 10, 0, _N, "Address"),
    ("IWERK", "C", 4, 0, _N, "Maintenance Planning Plant"),
    ("TXJCD", "C", 15, 0, _N, "Tax Jurisdiction"),
    ("VTWEG", "C", 2, 0, _N, "Distribution channel for intercompany billing"),
    ("SPART", "C", 2, 0, _N, "Division for intercompany billing"),
    ("SPRAS", "C", 1, 0, _N, "Language Key"),
    ("WKSOP", "C", 1, 0, _N, "SOP plant"),
    ("BZIRK", "C", 6, 0, _N, "Sales district"),
    ("ZONE1", "C", 10, 0, _N, "Supply region (region supplied)"),
    ("TAXIW", "C", 1, 0, _N, "Tax Indicator: Plant (Purchasing)"),
]

# Valuation area -> company code: how a plant (BWKEY = WERKS at plant-level valuation) maps to BUKRS.
T001K: list[FieldSpec] = [
    ("MANDT", "C", 3, 0, _K, "Client"),
    ("BWKEY", "C", 4, 0, _K, "Valuation Area"),
    ("BUKRS", "C", 4, 0, _N, "Company Code"),
    ("BWMOD", "C", 4, 0, _N, "Valuation Grouping Code"),
    ("XBKNG", "C", 1, 0, _N, "Negative stocks allowed in plant"),
    ("MLBWA", "C", 1, 0, _N, "Material ledger activated at valuation area level"),
    ("MLBWV", "C", 1, 0, _N, "Valuation area material ledger activation is mandatory"),
    ("XVKBW", "C", 1, 0, _N, "Sales price valuation active"),
]

TKA02: list[FieldSpec] = [  # assignment of company codes (and business areas) to controlling areas
    ("MANDT", "C", 3, 0, _K, "Client"),
    ("BUKRS", "C", 4, 0, _K, "Company Code"),
    ("GSBER", "C", 4, 0, _K, "Business Area"),
    ("KOKRS", "C", 4, 0, _N, "Controlling Area"),
]

TABLES: dict[str, tuple[str, list[FieldSpec]]] = {
    "EKKO": ("Purchasing Document Header", EKKO),
    "EKPO": ("Purchasing Document Item", EKPO),
    "EKKN": ("Account Assignment in Purchasing Document", EKKN),
    "T001W": ("Plants/Branches", T001W),
    "T001K": ("Valuation area", T001K),
    "TKA02": ("Controlling area assignment", TKA02),
}


def register() -> None:
    """(Re-)register the tables of this module in the sandbox DDIC (idempotent)."""
    for name, (text, fields) in TABLES.items():
        register_table(name, fields, text=text)


register()
