"""The sandbox's in-memory ECC database.

Rows are dicts of internal-format strings, keyed by field name: CHAR values left-justified without
padding, NUMC zero-padded, dates YYYYMMDD, times HHMMSS, packed values as '1234.56'. A field that a
row does not hold has its ABAP initial value. MANDT is implicit: each client-dependent table has one
store per client (rows still carry MANDT); cross-client tables (T000) have a single store.

Each store keeps its rows sorted by the table key (without MANDT), with a parallel list of the
leading key values, so a key-range predicate (`LIFNR > '...'`) is an index seek (bisect).

Vendor changes go through `update_vendor` / `create_vendor` / `flag_vendor_for_deletion`, which
write change documents (CDHDR/CDPOS, object class KRED) the way ECC's vendor master does.
"""

from __future__ import annotations

import bisect
import gc
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from . import ddic

Row = dict[str, str]

DEFAULT_CLIENT = "100"
COMPANY_CODES = {"1000": "US", "2000": "DE", "3000": "GB"}


def alpha_in(value: str, length: int = 10) -> str:
    """ABAP ALPHA conversion exit (input): purely numeric values are zero-padded to `length`."""
    v = value.strip()
    return v.rjust(length, "0") if v.isdigit() and len(v) <= length else v


def alpha_out(value: str) -> str:
    """ALPHA output: leading zeros of a purely numeric value removed."""
    return (value.lstrip("0") or "0") if value.isdigit() else value


@dataclass
class TableStore:
    """Rows of one table in one client, sorted by key."""

    table: ddic.DdicTable
    keys: list[tuple[str, ...]] = field(default_factory=list)
    lead: list[str] = field(default_factory=list)  # keys[i][0], for bisect on the leading key
    rows: list[Row] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.key_fields: tuple[str, ...] = self.table.data_key_fields

    def key_of(self, row: Row) -> tuple[str, ...]:
        return tuple([row.get(k) or "" for k in self.key_fields])

    def find(self, key: tuple[str, ...]) -> int:
        i = bisect.bisect_left(self.keys, key)
        return i if i < len(self.keys) and self.keys[i] == key else -1

    def get(self, key: tuple[str, ...]) -> Row | None:
        i = self.find(key)
        return self.rows[i] if i >= 0 else None

    def insert(self, row: Row) -> None:
        key = self.key_of(row)
        i = bisect.bisect_left(self.keys, key)
        if i < len(self.keys) and self.keys[i] == key:
            raise KeyError(f"{self.table.name}: duplicate key {key}")
        self.keys.insert(i, key)
        self.lead.insert(i, key[0] if key else "")
        self.rows.insert(i, row)

    def bulk_load(self, rows: list[Row]) -> None:
        pairs = sorted(((self.key_of(r), r) for r in rows), key=lambda p: p[0])
        merged = sorted([*zip(self.keys, self.rows, strict=True), *pairs], key=lambda p: p[0])
        self.keys = [k for k, _ in merged]
        self.rows = [r for _, r in merged]
        self.lead = [k[0] if k else "" for k in self.keys]

    def scan(self, low: str | None = None, low_inclusive: bool = True, high: str | None = None,
             high_inclusive: bool = True) -> Iterator[Row]:
        """Rows in key order whose leading key lies within the bounds."""
        start = 0
        if low is not None:
            start = (bisect.bisect_left if low_inclusive else bisect.bisect_right)(self.lead, low)
        stop = len(self.rows)
        if high is not None:
            stop = (bisect.bisect_right if high_inclusive else bisect.bisect_left)(self.lead, high)
        rows = self.rows
        for i in range(start, stop):
            yield rows[i]

    def __len__(self) -> int:
        return len(self.rows)


class EccData:
    """Tables per client, with a deterministic seed and the vendor mutation API.

    Thread-safe: every public method takes `self.lock` (an RLock); callers that iterate a store
    (RFC_READ_TABLE) hold the lock while they do.
    """

    def __init__(self, *, clients: tuple[str, ...] = (DEFAULT_CLIENT,),
                 clock: Callable[[], datetime] | None = None, change_user: str = "RFC_USER") -> None:
        self.lock = threading.RLock()
        self.clients = tuple(clients)
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.change_user = change_user
        self._stores: dict[tuple[str, str], TableStore] = {}
        self._changenr: dict[str, int] = {}
        self._seed_t000()

    # -- stores ------------------------------------------------------------------------------

    def store(self, table: str, client: str) -> TableStore:
        """The store of `table` as seen from `client` (created empty on first use)."""
        t = ddic.table(table)
        if t is None:
            raise KeyError(f"no DDIC table {table}")
        key = (t.name, client if t.client_dependent else "")
        with self.lock:
            st = self._stores.get(key)
            if st is None:
                st = self._stores[key] = TableStore(t)
            return st

    def insert(self, table: str, row: Row, client: str = DEFAULT_CLIENT) -> Row:
        t = ddic.table(table)
        if t is None:
            raise KeyError(f"no DDIC table {table}")
        row = dict(row)
        if t.client_dependent:
            row["MANDT"] = client
        for name in row:
            if not t.has_field(name):
                raise KeyError(f"{t.name} has no field {name}")
        with self.lock:
            self.store(t.name, client).insert(row)
        return row

    def rows(self, table: str, client: str = DEFAULT_CLIENT) -> list[Row]:
        """A copy of the rows in key order (for tests and tools)."""
        with self.lock:
            return [dict(r) for r in self.store(table, client).rows]

    def count(self, table: str, client: str = DEFAULT_CLIENT) -> int:
        with self.lock:
            return len(self.store(table, client))

    def get(self, table: str, key: tuple[str, ...], client: str = DEFAULT_CLIENT) -> Row | None:
        with self.lock:
            r = self.store(table, client).get(key)
            return dict(r) if r is not None else None

    # -- seed --------------------------------------------------------------------------------

    def _seed_t000(self) -> None:
        rows = [
            {"MANDT": "000", "MTEXT": "SAP AG", "ORT01": "Walldorf", "MWAER": "EUR", "CCCATEGORY": "S",
             "CCCORACTIV": "2", "CCNOCLIIND": "1", "CHANGEUSER": "SAP", "CHANGEDATE": "20130812"},
            {"MANDT": "001", "MTEXT": "Auslieferungsmandant R11", "ORT01": "Kundstadt", "MWAER": "EUR",
             "CCCATEGORY": "T", "CCCORACTIV": "1", "CHANGEUSER": "SAP", "CHANGEDATE": "20130812"},
            {"MANDT": "066", "MTEXT": "EarlyWatch", "ORT01": "Walldorf", "MWAER": "EUR",
             "CCCATEGORY": "S", "CCCORACTIV": "2", "CCNOCLIIND": "1", "CHANGEUSER": "SAP",
             "CHANGEDATE": "20130812"},
        ]
        for c in self.clients:
            if c not in ("000", "001", "066"):
                rows.append({"MANDT": c, "MTEXT": "ml-connector sandbox", "ORT01": "Walldorf",
                             "MWAER": "USD", "CCCATEGORY": "C", "CCCORACTIV": "1",
                             "CHANGEUSER": "BASIS", "CHANGEDATE": "20240115", "LOGSYS": f"ECDCLNT{c}"})
        self.store("T000", "").bulk_load(rows)

    def seed_vendors(self, n: int = 3000, seed: int = 42, client: str = DEFAULT_CLIENT) -> None:
        """Add `n` deterministic vendors (LFA1) with their company-code data (LFB1) to `client`."""
        was_enabled = gc.isenabled()
        gc.disable()  # ~100k new dicts: the cyclic GC would rescan them many times over
        try:
            lfa1, lfb1 = generate_vendors(n, seed, client)
            with self.lock:
                self.store("LFA1", client).bulk_load(lfa1)
                self.store("LFB1", client).bulk_load(lfb1)
        finally:
            if was_enabled:
                gc.enable()

    # -- change documents --------------------------------------------------------------------

    def _next_changenr(self, client: str) -> str:
        nr = self._changenr.get(client, 0) + 1
        self._changenr[client] = nr
        return str(nr).rjust(10, "0")

    def _change_document(self, client: str, objectid: str, tcode: str, change_ind: str,
                         items: list[tuple[str, str, str, str, str, str]]) -> str:
        """Write one CDHDR and its CDPOS rows; items are (TABNAME, TABKEY, FNAME, CHNGIND, OLD, NEW)."""
        now = self.clock()
        changenr = self._next_changenr(client)
        hdr = self.store("CDHDR", client)
        hdr.insert({"MANDT": client, "OBJECTCLAS": "KRED", "OBJECTID": objectid, "CHANGENR": changenr,
                    "USERNAME": self.change_user, "UDATE": now.strftime("%Y%m%d"),
                    "UTIME": now.strftime("%H%M%S"), "TCODE": tcode, "CHANGE_IND": change_ind,
                    "LANGU": "E"})
        pos = self.store("CDPOS", client)
        for tabname, tabkey, fname, chngind, old, new in items:
            pos.insert({"MANDT": client, "OBJECTCLAS": "KRED", "OBJECTID": objectid,
                        "CHANGENR": changenr, "TABNAME": tabname, "TABKEY": tabkey, "FNAME": fname,
                        "CHNGIND": chngind, "VALUE_OLD": old[:254], "VALUE_NEW": new[:254]})
        return changenr

    def _check_fields(self, table: str, fields: dict[str, Any]) -> dict[str, str]:
        t = ddic.table(table)
        assert t is not None
        out: dict[str, str] = {}
        for name, value in fields.items():
            f = t.field(name)
            if f is None or f.keyflag:
                raise KeyError(f"{table}-{name.upper()} is not a changeable field")
            v = "" if value is None else str(value)
            if f.inttype == "C":
                v = v.rstrip(" ")
                if len(v) > f.leng:
                    raise ValueError(f"{table}-{f.fieldname}: {v!r} is longer than {f.leng}")
            out[f.fieldname] = v
        return out

    # Customer, purchase-order, sales-order and delivery changes (XD02, ME22N, VA02, VL02N): thin
    # methods over the logistics seed's change helpers, so that the outbound IDoc emitter can hook
    # them like the vendor methods (DEBMAS, ORDERS, ORDRSP, DESADV are sent when they change).
    def update_customer(self, kunnr: str, *, client: str = DEFAULT_CLIENT, **fields: Any) -> str | None:
        from ml_connector.systems.sap_ecc.sandbox.seed_logistics import change_customer

        return change_customer(self, kunnr, client=client, **fields)

    def update_purchase_order(self, ebeln: str, *, client: str = DEFAULT_CLIENT,
                              items: dict[str, dict[str, Any]] | None = None, **fields: Any) -> str:
        from ml_connector.systems.sap_ecc.sandbox.seed_logistics import change_purchase_order

        return change_purchase_order(self, ebeln, client=client, items=items, **fields)

    def update_sales_order(self, vbeln: str, *, client: str = DEFAULT_CLIENT, **fields: Any) -> str:
        from ml_connector.systems.sap_ecc.sandbox.seed_logistics import change_sales_order

        return change_sales_order(self, vbeln, client=client, **fields)

    def update_delivery(self, vbeln: str, *, client: str = DEFAULT_CLIENT, **fields: Any) -> str:
        from ml_connector.systems.sap_ecc.sandbox.seed_logistics import change_delivery

        return change_delivery(self, vbeln, client=client, **fields)

    def update_vendor(self, lifnr: str, *, bukrs: str | None = None, client: str = DEFAULT_CLIENT,
                      tcode: str = "XK02", **fields: Any) -> str | None:
        """Change LFA1 fields (or LFB1 fields when `bukrs` is given) of a vendor, as XK02 does.

        Returns the change number, or None when no value actually changed (ECC writes no change
        document then). Raises KeyError for an unknown vendor or field."""
        lifnr = alpha_in(lifnr)
        table = "LFB1" if bukrs else "LFA1"
        values = self._check_fields(table, fields)
        with self.lock:
            key = (lifnr, bukrs) if bukrs else (lifnr,)
            row = self.store(table, client).get(key)
            if row is None:
                raise KeyError(f"vendor {lifnr}{' in company code ' + bukrs if bukrs else ''} not found")
            t = ddic.table(table)
            assert t is not None
            items = []
            tabkey = client + lifnr + (bukrs or "")
            for name, new in values.items():
                f = t.field(name)
                assert f is not None
                old = row.get(name) or f.initial()
                if old.rstrip(" ") == new.rstrip(" ") or (not new and old == f.initial()):
                    continue
                items.append((table, tabkey, name, "U", old, new or f.initial()))
            if not items:
                return None
            for _, _, name, _, _, new in items:
                row[name] = new
            return self._change_document(client, lifnr, tcode, "U", items)

    def create_vendor(self, *, name1: str, land1: str, lifnr: str | None = None,
                      bukrs: tuple[str, ...] | list[str] | str = (), client: str = DEFAULT_CLIENT,
                      lfb1: dict[str, Any] | None = None, **fields: Any) -> str:
        """Create a vendor (LFA1 plus one LFB1 row per company code), as XK01 does; returns LIFNR."""
        values = self._check_fields("LFA1", {"NAME1": name1, "LAND1": land1, **fields})
        b_values = self._check_fields("LFB1", lfb1 or {})
        codes = (bukrs,) if isinstance(bukrs, str) else tuple(bukrs)
        now = self.clock()
        with self.lock:
            st = self.store("LFA1", client)
            if lifnr is None:
                last = max((k[0] for k in st.keys if k[0].isdigit()), default="0000100000")
                lifnr = str(int(last) + 1).rjust(10, "0")
            lifnr = alpha_in(lifnr)
            if st.get((lifnr,)) is not None:
                raise KeyError(f"vendor {lifnr} already exists")
            row: Row = {"MANDT": client, "LIFNR": lifnr, "KTOKK": "KRED", "SPRAS": "E",
                        "ERDAT": now.strftime("%Y%m%d"), "ERNAM": self.change_user,
                        "SORTL": name1[:10].upper(), "MCOD1": name1[:25].upper(), **values}
            st.insert(row)
            items = [("LFA1", client + lifnr, "KEY", "I", "", "")]
            for code in codes:
                brow: Row = {"MANDT": client, "LIFNR": lifnr, "BUKRS": code, "ERDAT": row["ERDAT"],
                             "ERNAM": self.change_user, "AKONT": "0000160000", "ZTERM": "0001",
                             "ZWELS": "C", "REPRF": "X", **b_values}
                self.store("LFB1", client).insert(brow)
                items.append(("LFB1", client + lifnr + code, "KEY", "I", "", ""))
            self._change_document(client, lifnr, "XK01", "I", items)
            return lifnr

    def flag_vendor_for_deletion(self, lifnr: str, *, bukrs: str | None = None,
                                 client: str = DEFAULT_CLIENT) -> str | None:
        """Set the deletion flag, as XK06 does: LFA1-LOEVM (central), or LFB1-LOEVM for `bukrs`."""
        return self.update_vendor(lifnr, bukrs=bukrs, client=client, tcode="XK06", LOEVM="X")

    def changenr(self, client: str = DEFAULT_CLIENT) -> str:
        """The last change number issued in `client`."""
        return str(self._changenr.get(client, 0)).rjust(10, "0")


# ---------------------------------------------------------------------------------------------
# deterministic vendor generator

_US_FIRST = ["Acme", "Summit", "Pioneer", "Liberty", "Keystone", "Cascade", "Redwood", "Patriot", "Atlas",
             "Frontier", "Harbor", "Granite", "Evergreen", "Blue Ridge", "Lakeside", "Ironwood", "Prairie",
             "Northstar", "Sterling", "Coastal"]
_US_SECOND = ["Industrial Supply", "Logistics", "Electric", "Packaging", "Concrete", "Steel Works",
              "Office Products", "Fasteners", "Plumbing & Heating", "Janitorial Services", "Freight",
              "Consulting Group", "Equipment Rental", "Lumber", "Chemicals", "IT Solutions"]
_US_SUFFIX = ["Inc.", "LLC", "Corp.", "Co.", "Inc", "L.P."]
_US_CITIES = [("New York", "NY", "10001"), ("Chicago", "IL", "60601"), ("Houston", "TX", "77002"),
              ("Phoenix", "AZ", "85003"), ("Philadelphia", "PA", "19103"), ("San Jose", "CA", "95113"),
              ("Denver", "CO", "80202"), ("Seattle", "WA", "98101"), ("Atlanta", "GA", "30303"),
              ("Columbus", "OH", "43215")]
_US_STREETS = ["Main St", "Oak Ave", "Industrial Pkwy", "Commerce Dr", "Market St", "Elm St", "Route 9"]

_DE_FIRST = ["Müller", "Schröder", "Weiß", "Groß", "Bäcker", "Köhler", "Schäfer", "Krüger", "Hoffmann",
             "Schulz", "Wagner", "Böhm", "Fuß", "Jäger", "Löwe", "Strauß", "Maßmann", "Götz"]
_DE_SECOND = ["Metallbau", "Großhandel", "Elektrotechnik", "Spedition", "Maschinenbau", "Bürobedarf",
              "Gebäudereinigung", "Straßenbau", "Kunststofftechnik", "Verpackungen", "Präzisionsteile"]
_DE_SUFFIX = ["GmbH", "GmbH & Co. KG", "KG", "AG", "e.K.", "OHG", "& Söhne GmbH"]
_DE_CITIES = [("München", "09", "80331"), ("Köln", "05", "50667"), ("Düsseldorf", "05", "40213"),
              ("Nürnberg", "09", "90402"), ("Frankfurt am Main", "06", "60311"), ("Berlin", "11", "10117"),
              ("Hamburg", "02", "20095"), ("Stuttgart", "08", "70173"), ("Würzburg", "09", "97070")]
_DE_STREETS = ["Hauptstraße", "Bahnhofstraße", "Industriestraße", "Schloßallee", "Gartenweg",
               "Mühlenstraße", "Königstraße"]

_GB_FIRST = ["Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Evans", "Thomas", "Roberts",
             "Walker", "Wright", "Hughes", "O'Brien", "McAllister"]
_GB_SECOND = ["Engineering", "Haulage", "Builders Merchants", "Facilities", "Print", "Catering",
              "Components", "Waste Management", "Joinery", "Electrical"]
_GB_SUFFIX = ["Ltd", "Limited", "PLC", "& Sons Ltd", "LLP"]
_GB_CITIES = [("London", "", "EC1A 1BB"), ("Manchester", "", "M1 1AE"), ("Birmingham", "", "B1 1BB"),
              ("Leeds", "", "LS1 4DY"), ("Glasgow", "", "G1 1XQ"), ("Bristol", "", "BS1 4DJ"),
              ("Sheffield", "", "S1 2HE")]
_GB_STREETS = ["High Street", "Station Road", "Church Lane", "Victoria Road", "Mill Lane", "Park Road"]

# Names that stress delimiter-based parsing and XML escaping (each used now and then).
_TRICKY = ["Smith | Jones Ltd", "A|B Logistik GmbH", "Pipe|Line Services Inc.", "Alpha; Omega Corp.",
           "Tab\tSeparated Trading Co.", "Hash #1 Supplies LLC", "Quote \"Best\" Parts Inc.",
           "Ampersand & <Angle> Brackets Ltd", "Comma, Colon: and Co.", "Back\\slash Tools GmbH",
           "Tilde~Caret^Dollar$ Ltd", "Brace {Curly} Partners LLP", "Percent% and At@ Corp."]

_COUNTRY_PLAN = [("1000", "US")] * 45 + [("2000", "DE")] * 30 + [("3000", "GB")] * 20 + \
                [("2000", "AT"), ("2000", "CH"), ("1000", "CA"), ("3000", "IE"), ("2000", "FR")]


def _pad35(name: str, rnd: random.Random) -> str:
    """Lengthen `name` to exactly 35 characters with a realistic suffix."""
    extra = rnd.choice([" International Trading Division", " Worldwide Procurement Services",
                        " Niederlassung Süddeutschland Ost", " Northern Regional Distribution"])
    return (name + extra)[:35].rstrip(" ").ljust(35, ".")


def generate_vendors(n: int, seed: int, client: str = DEFAULT_CLIENT) -> tuple[list[Row], list[Row]]:
    """Deterministic LFA1 and LFB1 rows for `n` vendors (LIFNR 0000100001...)."""
    rnd = random.Random(seed)
    lfa1: list[Row] = []
    lfb1: list[Row] = []
    base = date(2009, 1, 1)
    rand = rnd.random

    def choice(seq: Any) -> Any:
        return seq[int(rand() * len(seq))]

    def randint(a: int, b: int) -> int:
        return a + int(rand() * (b - a + 1))

    ernams = ["MIGRATION", "JSMITH", "MWEBER", "AP_CLERK1", "BATCH_MDG", "KBAUER", "TJONES"]
    zterms = ["0001", "NT30", "NT45", "NT60", "ZB01", "Z014"]
    for i in range(n):
        lifnr = str(100001 + i).rjust(10, "0")
        bukrs, land1 = _COUNTRY_PLAN[i % len(_COUNTRY_PLAN)] if i % 7 else choice(_COUNTRY_PLAN)
        if land1 in ("DE", "AT", "CH"):
            name = f"{choice(_DE_FIRST)} {choice(_DE_SECOND)} {choice(_DE_SUFFIX)}"
            city, regio, pstlz = choice(_DE_CITIES)
            street = f"{choice(_DE_STREETS)} {randint(1, 180)}"
            stcd1 = f"{randint(10, 99)}/{randint(100, 999)}/{randint(10000, 99999)}"
            stceg = f"{land1}{randint(100000000, 999999999)}"
            telf1 = f"+49 {randint(30, 989)} {randint(100000, 9999999)}"
            if land1 != "DE":
                regio = ""
        elif land1 in ("GB", "IE"):
            name = f"{choice(_GB_FIRST)} {choice(_GB_SECOND)} {choice(_GB_SUFFIX)}"
            city, regio, pstlz = choice(_GB_CITIES)
            street = f"{randint(1, 250)} {choice(_GB_STREETS)}"
            stcd1 = ""
            stceg = f"{land1}{randint(100000000, 999999999)}"
            telf1 = f"+44 {randint(20, 1999)} {randint(100000, 999999)}"
        else:
            name = f"{choice(_US_FIRST)} {choice(_US_SECOND)} {choice(_US_SUFFIX)}"
            city, regio, pstlz = choice(_US_CITIES)
            street = f"{randint(1, 9999)} {choice(_US_STREETS)}"
            stcd1 = f"{randint(10, 99)}-{randint(1000000, 9999999)}"
            stceg = ""
            telf1 = f"+1 {randint(201, 989)} {randint(200, 999)} {randint(1000, 9999)}"
        r = rand()
        if r < 0.03:
            name = _TRICKY[i % len(_TRICKY)]
        elif r < 0.08:
            name = _pad35(name, rnd)
        name1 = name[:35]
        erdat = (base + timedelta(days=randint(0, 5500))).strftime("%Y%m%d")
        row: Row = {"MANDT": client, "LIFNR": lifnr, "LAND1": land1, "NAME1": name1,
                    "ORT01": city[:35], "PSTLZ": pstlz, "REGIO": regio, "STRAS": street[:35],
                    "SORTL": name1[:10].upper(), "MCOD1": name1[:25].upper(), "MCOD2": "",
                    "MCOD3": city[:25].upper(), "ADRNR": str(20000 + i).rjust(10, "0"),
                    "ERDAT": erdat, "ERNAM": choice(ernams), "KTOKK": "KRED" if rand() > 0.1 else "LIEF",
                    "SPRAS": "D" if land1 in ("DE", "AT", "CH") else "E", "TELF1": telf1[:16]}
        if rand() < 0.15:
            row["NAME2"] = choice(["c/o Accounts Payable", "Abt. Buchhaltung", "Attn: Remittance",
                                   "Zweigniederlassung Nord"])
        if stcd1:
            row["STCD1"] = stcd1[:16]
        if stceg:
            row["STCEG"] = stceg
        if land1 == "US" and rand() < 0.3:
            row["STCD2"] = f"{randint(100, 999)}{randint(10, 99)}{randint(1000, 9999)}"
        if rand() < 0.04:
            row["LOEVM"] = "X"
        if rand() < 0.03:
            row["SPERR"] = "X"
        if rand() < 0.02:
            row["SPERM"] = "X"
        if rand() < 0.02:
            row["KUNNR"] = str(randint(1, 99999)).rjust(10, "0")
        lfa1.append(row)
        codes = [bukrs]
        if rand() < 0.2:
            codes.append(choice([c for c in COMPANY_CODES if c != bukrs]))
        for code in codes:
            b: Row = {"MANDT": client, "LIFNR": lifnr, "BUKRS": code, "ERDAT": erdat,
                      "ERNAM": row["ERNAM"], "AKONT": "0000160000" if code != "3000" else "0000210000",
                      "ZTERM": choice(zterms), "ZWELS": choice(["C", "T", "CT", "U"]), "REPRF": "X",
                      "ZUAWA": "009", "FDGRV": "A1" if land1 != "US" else "V1", "WEBTR": "0.00"}
            if row.get("LOEVM") == "X":
                b["LOEVM"] = "X"
            if row.get("SPERR") == "X" or rand() < 0.01:
                b["SPERR"] = "X"
            if rand() < 0.03:
                b["ZAHLS"] = choice(["A", "B", "R"])
            lfb1.append(b)
    return lfa1, lfb1
