"""Function modules of the ECC sandbox, as a registry.

A function module is a handler `(ctx: CallContext) -> None` plus its interface (`Param`s). The
handler reads `ctx.request`, writes exports/tables into `ctx.out`, and signals errors by raising
`AbapException` (classic `RAISE NAME`, optional T100 message), `AbapRuntimeError` (short dump /
message error) or `RfcAuthorizationFailure`.

LUW semantics for later BAPIs: by default one HTTP request = one ABAP session = one LUW. A handler
queues database changes with `ctx.in_update_task(fn)`; they run only if `ctx.commit()` is called in the
same request (BAPI_TRANSACTION_COMMIT inside a wrapper FM); at the end of the request uncommitted work
is discarded (`CallContext.finish`). A commit in a later request therefore commits nothing.
With `SandboxConfig.stateful_sessions` (a [U] behaviour of /sap/bc/soap/rfc, reference §1.1 and §7
item 1) a request carrying the session cookie of an earlier one runs in that same ABAP session: its
queued update-task work survives the request and a later BAPI_TRANSACTION_COMMIT commits it.

Dates: handlers write D-type values in internal form (YYYYMMDD). `render_response` passes every
D-type export parameter and every D-type field of an export/changing/tables structure through
`CallContext.date_out`, so `SandboxConfig.date_output` ('iso' = YYYY-MM-DD, 'internal' = YYYYMMDD;
[U], reference §1.1) decides what goes on the wire. D-type fields are known from the DDIC
(`ddic.table(<structure>)`) and from `STRUCTURE_DATE_FIELDS` / `DATE_TYPES` below. RFC_READ_TABLE's
DATA-WA is a CHAR512 work area: its dates are always internal.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

from ..facts import ecc_facts
from . import ddic
from .data import EccData, Row
from .soap import T100, RfcRequest, build_response, date_in, response_prefix, time_in
from .where import WhereError, compile_where

READ_TABLE_WIDTH = 512
BODS_READ_TABLE_WIDTH = 2048
OPTIONAL_READ_MODULES = ("BBP_RFC_READ_TABLE", "/BODS/RFC_READ_TABLE")


@dataclass
class SandboxConfig:
    """Behaviour switches of the emulator. [U] facts of the reference are switches here."""

    # System id, ICM default client (used when the URL has no sap-client) and release: provider facts.
    sid: str = field(default_factory=lambda: ecc_facts().sandbox.sid)
    default_client: str = field(default_factory=lambda: ecc_facts().sandbox.default_client)
    host: str = "sapecd"
    saprl: str = field(default_factory=lambda: ecc_facts().sandbox.release)
    kernel_release: str = "721"
    release_variant: str = "classic"  # classic: bad WHERE = short dump; class_based: OPTION_NOT_VALID
    response_prefix: str = "echo"  # 'echo' the request's FM prefix (fallback 'urn'), or e.g. 'rfc'
    return_undeclared_tables: bool = False  # True: return every TABLES parameter
    exception_shape: str = "detail"  # detail | detail_name_only | faultstring_only
    date_output: str = "iso"  # D-type scalars out as 'iso' (YYYY-MM-DD) or 'internal' (YYYYMMDD)
    # [U] a later request carrying the session cookie (SAP_SESSIONID_<SID>_<CLNT> / sap-contextid)
    # continues the same ABAP session and LUW; off: every HTTP request is its own session and LUW
    stateful_sessions: bool = False
    # ICF security sessions: a Basic logon sets SAP_SESSIONID_<SID>_<CLNT>, and a later request may log on
    # with that cookie instead, until it has been idle `session_idle_timeout` seconds
    # (http/security_session_timeout) or is ended (`EccSandbox.end_sessions`, SM05). Off ([U] whether
    # /sap/bc/soap/rfc uses them; SICF NO_SESSION_MANAGEMENT): no session is issued or accepted.
    security_sessions: bool = True
    session_idle_timeout: float = field(default_factory=lambda: ecc_facts().sessions.server_idle_seconds)
    # login/create_sso2_ticket: a Basic logon also sets MYSAPSSO2, which logs on (and opens a new security
    # session) while it is valid (login/ticket_expiration_time), also after the session timed out
    sso2_tickets: bool = False
    ticket_validity: float = 8 * 3600.0
    trim_trailing_blanks: bool = True  # RFC_READ_TABLE WA without trailing blanks
    shuffle: bool = False  # reorder RFC_READ_TABLE output randomly on every call
    arbitrary_subset: bool = False  # ROWSKIPS/ROWCOUNT cut the scrambled order, not the key order
    installed_modules: set[str] = field(default_factory=set)  # e.g. {'BBP_RFC_READ_TABLE'}
    packed_trailing_minus: bool = True  # P -> CHAR MOVE puts the sign last ('1234.56-') [U]
    max_request_bytes: int = 8 * 1024 * 1024
    timezone_offset_seconds: int = 0

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "release_variant": ("classic", "class_based"),
        "exception_shape": ("detail", "detail_name_only", "faultstring_only"),
        "date_output": ("iso", "internal"),
    }

    def validate(self) -> None:
        for key, allowed in self.CHOICES.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key} must be one of {allowed}")

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["installed_modules"] = sorted(self.installed_modules)
        return out


class AbapException(Exception):
    """A classic exception (RAISE NAME), optionally with a T100 message."""

    def __init__(self, name: str, message: T100 | None = None) -> None:
        super().__init__(name)
        self.name = name
        self.message = message


class AbapRuntimeError(Exception):
    """A runtime error (short dump) or error message: rfc:Error with <type>/<message>."""

    def __init__(self, error_type: str, text: str) -> None:
        super().__init__(f"{error_type}: {text}")
        self.error_type = error_type
        self.text = text


class RfcAuthorizationFailure(Exception):
    def __init__(self, text: str = "User has no authorization for function module") -> None:
        super().__init__(text)
        self.text = text


@dataclass(frozen=True)
class Param:
    name: str
    direction: str  # import | export | changing | tables
    kind: str = "scalar"  # scalar | structure | table
    abap_type: str = "CHAR"  # DDIC type or structure name (for the WSDL), e.g. TAB512, RFCSI
    optional: bool = True


@dataclass
class CallContext:
    """One call of one function module in one HTTP request (= one ABAP session)."""

    request: RfcRequest
    data: EccData
    config: SandboxConfig
    user: str
    client: str
    language: str = "E"
    forbidden_tables: frozenset[str] = frozenset()
    out: dict[str, Any] = field(default_factory=dict)
    _update_task: list[Callable[[], None]] = field(default_factory=list)
    committed: int = 0
    stateful: bool = False  # runs in a stateful session: `finish` keeps the open LUW

    def in_update_task(self, fn: Callable[[], None]) -> None:
        """Queue a change for the commit of this LUW (CALL FUNCTION ... IN UPDATE TASK)."""
        self._update_task.append(fn)

    def commit(self) -> None:
        """COMMIT WORK: run the queued changes (under the data lock)."""
        with self.data.lock:
            for fn in self._update_task:
                fn()
        self.committed += len(self._update_task)
        self._update_task.clear()

    def rollback(self) -> None:
        self._update_task.clear()

    def finish(self) -> int:
        """End of the request. Stateless (default): the session ends and uncommitted update-task work
        is discarded; returns how many. Stateful: the LUW stays open in the session (returns 0)."""
        if self.stateful:
            return 0
        dropped = len(self._update_task)
        self._update_task.clear()
        return dropped

    def date_param(self, name: str) -> str:
        """A D-type import parameter in internal form (YYYY-MM-DD and YYYYMMDD both accepted)."""
        return date_in(self.request.scalar(name))

    def time_param(self, name: str) -> str:
        return time_in(self.request.scalar(name))

    def date_out(self, yyyymmdd: str) -> str:
        """A D-type value (internal YYYYMMDD; blank = initial) in `config.date_output` form. A value
        that is not an internal date (already ISO, garbage) is passed through unchanged."""
        v = yyyymmdd.strip() or "00000000"
        if len(v) != 8 or not v.isdigit():
            return yyyymmdd
        if self.config.date_output == "iso":
            return f"{v[0:4]}-{v[4:6]}-{v[6:8]}"
        return v


Handler = Callable[[CallContext], None]


@dataclass
class FunctionModule:
    name: str
    handler: Handler
    params: tuple[Param, ...] = ()
    installable: bool = False  # exists only if listed in config.installed_modules

    def tables(self) -> list[str]:
        return [p.name for p in self.params if p.direction == "tables"]

    def output_names(self) -> list[str]:
        return [p.name for p in self.params if p.direction in ("export", "changing", "tables")]


class Registry:
    def __init__(self) -> None:
        self._fms: dict[str, FunctionModule] = {}

    def register(self, name: str, params: Iterable[Param] = (), *, installable: bool = False,
                 ) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.add(FunctionModule(name.upper(), fn, tuple(params), installable))
            return fn
        return deco

    def add(self, fm: FunctionModule) -> None:
        self._fms[fm.name] = fm

    def get(self, name: str, config: SandboxConfig) -> FunctionModule | None:
        fm = self._fms.get(name.upper())
        if fm is None or (fm.installable and fm.name not in config.installed_modules):
            return None
        return fm

    def names(self, config: SandboxConfig) -> list[str]:
        return sorted(n for n in self._fms if self.get(n, config) is not None)


REGISTRY = Registry()


def fu_not_found(name: str) -> AbapException:
    return AbapException("FU_NOT_FOUND", T100("FL", "046", f"Function module {name} not found", name))


# D-type (DATS) data elements of scalar parameters, and D-type fields of the BAPI/wrapper structures
# the emulated FMs return that are not in the sandbox DDIC (ddic.table() covers the rest).
DATE_TYPES = frozenset({"DATS", "DATUM", "SYDATUM", "SY-DATUM", "BUDAT", "BLDAT", "AUGDT", "CPUDT",
                        "AEDAT", "ERDAT", "DZFBDT", "VALUT", "WWERT_D", "ACPI_DOC_DATE", "ACPI_PSTNG_DATE"})
STRUCTURE_DATE_FIELDS: dict[str, frozenset[str]] = {
    "ZMLC_S_DOCREF": frozenset({"BUDAT", "BLDAT", "CPUDT", "AUGDT"}),
    "BAPIACHE09": frozenset({"DOC_DATE", "PSTNG_DATE", "TRANS_DATE", "VATDATE", "INVOICE_REC_DATE"}),
    "BAPIACGL09": frozenset({"VALUE_DATE", "PSTNG_DATE"}),
    "BAPIACAP09": frozenset({"BLINE_DATE"}),
    "BAPIACAR09": frozenset({"BLINE_DATE"}),
    "BAPI_INCINV_CREATE_HEADER": frozenset({"DOC_DATE", "PSTNG_DATE", "BLINE_DATE"}),
}


def register_date_fields(structure: str, fields: Iterable[str]) -> None:
    """Declare the D-type fields of a structure returned by an emulated FM (for `date_output`)."""
    name = structure.upper()
    STRUCTURE_DATE_FIELDS[name] = STRUCTURE_DATE_FIELDS.get(name, frozenset()) | {f.upper() for f in fields}


def date_fields(abap_type: str) -> frozenset[str]:
    """The D-type fields of structure/table type `abap_type` (DDIC and STRUCTURE_DATE_FIELDS)."""
    name = abap_type.upper()
    out = STRUCTURE_DATE_FIELDS.get(name, frozenset())
    table = ddic.table(name)
    if table is not None:
        out = out | {f.fieldname for f in table.fields if f.inttype == "D"}
    return out


def _dates_out(p: Param, value: Any, ctx: CallContext) -> Any:
    """`value` of parameter `p` with its D-type parts in the configured output format."""
    if p.kind == "scalar":
        return ctx.date_out(value) if p.abap_type.upper() in DATE_TYPES and isinstance(value, str) else value
    names = date_fields(p.abap_type)
    if not names:
        return value

    def conv(row: Any) -> Any:
        if not isinstance(row, dict):
            return row
        return {k: ctx.date_out(v) if k in names and isinstance(v, str) else v for k, v in row.items()}

    if isinstance(value, list):
        return [conv(r) for r in value]
    return conv(value)


def render_response(fm: FunctionModule, ctx: CallContext) -> bytes:
    """The SOAP response: exports in interface order, then TABLES parameters - only those present in
    the request unless config.return_undeclared_tables. D-type values in `config.date_output`."""
    values: list[tuple[str, Any]] = []
    for p in fm.params:
        if p.direction not in ("export", "changing", "tables"):
            continue
        if p.direction == "tables":
            if not (ctx.config.return_undeclared_tables or ctx.request.has(p.name)):
                continue
            values.append((p.name, _dates_out(p, ctx.out.get(p.name, []), ctx)))
        elif p.name in ctx.out:
            values.append((p.name, _dates_out(p, ctx.out[p.name], ctx)))
    prefix = response_prefix(ctx.config.response_prefix, ctx.request.prefix)
    return build_response(fm.name, values, prefix=prefix)


def call(fm: FunctionModule, ctx: CallContext) -> bytes:
    """Run `fm` in `ctx` and render its response (exceptions propagate to the HTTP layer)."""
    try:
        fm.handler(ctx)
    finally:
        ctx.finish()
    return render_response(fm, ctx)


# ---------------------------------------------------------------------------------------------
# helpers


def _int_param(req: RfcRequest, name: str) -> int:
    raw = req.scalar(name).strip()
    if not raw:
        return 0
    try:
        return int(raw)
    except ValueError:
        raise AbapRuntimeError("CONVT_NO_NUMBER", f"Unable to interpret \"{raw}\" as a number "
                               f"(parameter {name})") from None


def _render_packed(value: str, leng: int, decimals: int, trailing_minus: bool) -> str:
    try:
        d = Decimal(value.strip() or "0")
    except InvalidOperation:
        d = Decimal(0)
    neg = d < 0
    body = f"{abs(d):.{decimals}f}"
    s = body + ("-" if neg else " ") if trailing_minus else ("-" if neg else "") + body
    if len(s) > leng and not neg:
        s = body  # MOVE P -> C drops the blank sign position of a positive value first
    if len(s) > leng:
        return "*" + s[len(s) - leng + 1:]  # cut on the left, '*' marks the overflow ('*.0')
    return s.rjust(leng)


def _render_float(value: str, leng: int) -> str:
    """MOVE F -> C: scientific notation, mantissa shortened to fit `leng`; '*' if nothing fits."""
    try:
        x = float(value.strip() or 0)
    except ValueError:
        x = 0.0
    for digits in range(16, -1, -1):
        s = f"{x:.{digits}E}"
        if len(s) <= leng:
            return s.rjust(leng)
    return "*".rjust(leng)


def _renderer(f: ddic.DdicField, trailing_minus: bool) -> Callable[[Row], str]:
    name, leng, init = f.fieldname, f.leng, f.initial()
    t = f.inttype
    if t in ("C", "X"):
        def c(row: Row) -> str:
            v = row.get(name)
            if not v:
                return " " * leng
            return v[:leng].ljust(leng)
        return c
    if t == "N":
        def n(row: Row) -> str:
            v = row.get(name) or init
            return v.rjust(leng, "0")[-leng:]
        return n
    if t in ("D", "T"):
        def dt(row: Row) -> str:
            return (row.get(name) or init)[:leng].ljust(leng)
        return dt
    if t in ("P", "I"):
        dec = f.decimals if t == "P" else 0

        def p(row: Row) -> str:
            return _render_packed(row.get(name) or "0", leng, dec, trailing_minus)
        return p

    def fl(row: Row) -> str:
        return _render_float(row.get(name) or "0", leng)
    return fl


def _scramble(rows: list[Row], key_fields: tuple[str, ...], shuffle: bool) -> None:
    """Reorder in place: a fixed non-key order (CRC of the key), or random when `shuffle`."""
    if shuffle:
        random.shuffle(rows)
    else:
        rows.sort(key=lambda r: zlib.crc32("\x00".join([r.get(k) or "" for k in key_fields]).encode()))


# ---------------------------------------------------------------------------------------------
# RFC_READ_TABLE and friends

_READ_TABLE_PARAMS = (
    Param("QUERY_TABLE", "import", abap_type="TABNAME", optional=False),
    Param("DELIMITER", "import", abap_type="SONV-FLAG"),
    Param("NO_DATA", "import", abap_type="SONV-FLAG"),
    Param("ROWSKIPS", "import", abap_type="INT4"),
    Param("ROWCOUNT", "import", abap_type="INT4"),
    Param("DATA", "tables", "table", "TAB512"),
    Param("FIELDS", "tables", "table", "RFC_DB_FLD"),
    Param("OPTIONS", "tables", "table", "RFC_DB_OPT"),
)


def read_table(ctx: CallContext, width: int = READ_TABLE_WIDTH) -> None:
    """RFC_READ_TABLE, classic logic (reference §2.1/§2.2).

    Ordering: SAP runs `SELECT * ... WHERE (OPTIONS)` without ORDER BY, so the output is unsorted.
    The sandbox returns a deterministic non-key order (rows sorted by a CRC of their key), or a
    fresh random order per call with `config.shuffle`. With ROWSKIPS/ROWCOUNT the default takes the
    rows in *key* order (skip, then count) and scrambles only within the page, so key-range paging
    (`LIFNR > '<last>'` + ROWCOUNT) and ROWSKIPS paging are both complete - a well-behaved database.
    `config.arbitrary_subset` emulates the real hazard: skip/count cut the scrambled order, so a
    page is an arbitrary subset and key-range paging that takes max(key) of a page loses rows.
    In the class-based variant, GET_SORTED = 'X' returns key order.
    """
    req, cfg = ctx.request, ctx.config
    tabname = req.scalar("QUERY_TABLE").strip().upper()
    table = ddic.table(tabname) if tabname else None
    if table is None:
        raise AbapException("TABLE_NOT_AVAILABLE", T100("SV", "029", f"Table {tabname} is not available",
                                                        tabname))
    if tabname in ctx.forbidden_tables or "*" in ctx.forbidden_tables:
        msg = T100("TB", "105", f"You are not authorized to display table {tabname}", tabname) \
            if cfg.release_variant == "class_based" else None
        raise AbapException("NOT_AUTHORIZED", msg)
    if table.kind != "TRANSP":
        msg = T100("AD", "718", f"{tabname} is a structure without data", tabname) \
            if cfg.release_variant == "class_based" else None
        raise AbapException("TABLE_WITHOUT_DATA", msg)

    raw_delim = req.scalar("DELIMITER")[:1]
    delim = "" if raw_delim in ("", " ") else raw_delim  # strlen() of a blank CHAR1 is 0
    no_data = req.scalar("NO_DATA").strip() != ""
    rowskips = max(_int_param(req, "ROWSKIPS"), 0)
    rowcount = max(_int_param(req, "ROWCOUNT"), 0)
    get_sorted = cfg.release_variant == "class_based" and req.scalar("GET_SORTED").strip() != ""

    requested = [str(r.get("FIELDNAME", "")).strip().upper() for r in req.table("FIELDS")]
    requested = [n for n in requested if n]
    if requested:
        fields: list[ddic.DdicField] = []
        for n in requested:
            f = table.field(n)
            if f is None:
                msg = T100("SAIS", "000", f"Field {n} is not valid for table {tabname}", n) \
                    if cfg.release_variant == "class_based" else None
                raise AbapException("FIELD_NOT_VALID", msg)
            fields.append(f)
    else:
        fields = list(table.fields)

    out_fields: list[dict[str, str]] = []
    cursor = 0
    for f in fields:
        out_fields.append({"FIELDNAME": f.fieldname, "OFFSET": str(cursor).rjust(6, "0"),
                           "LENGTH": str(f.leng).rjust(6, "0"), "TYPE": f.inttype,
                           "FIELDTEXT": f.fieldtext[:60]})
        cursor += f.leng
        if cursor > width and not no_data:
            msg = T100("AD", "559", "Data buffer exceeded") if cfg.release_variant == "class_based" else None
            raise AbapException("DATA_BUFFER_EXCEEDED", msg)
        cursor += len(delim)
    ctx.out["FIELDS"] = out_fields
    ctx.out["OPTIONS"] = [{"TEXT": r.get("TEXT", "")} for r in req.table("OPTIONS")]
    if no_data:
        ctx.out["DATA"] = []
        return

    option_lines = [str(r.get("TEXT", "")) for r in req.table("OPTIONS")]
    try:
        where = compile_where(option_lines, table)
    except WhereError as exc:
        if cfg.release_variant == "class_based":
            raise AbapException("OPTION_NOT_VALID", T100("SAIS", "000", str(exc)[:220])) from None
        raise AbapRuntimeError("SAPSQL_PARSE_ERROR", f"Runtime error SAPSQL_PARSE_ERROR "
                               f"(CX_SY_DYNAMIC_OSQL_SYNTAX): {exc}") from None

    key_fields = table.data_key_fields
    limit = rowskips + rowcount if rowcount else None
    pred = where.predicate
    bounds = where.key_range(key_fields[0]) if key_fields else None
    picked: list[Row] = []
    with ctx.data.lock:
        store = ctx.data.store(tabname, ctx.client)
        rows = store.scan(bounds.low, bounds.low_inclusive, bounds.high, bounds.high_inclusive) \
            if bounds else iter(store.rows)
        cut_in_key_order = limit is not None and (get_sorted or not cfg.arbitrary_subset)
        trivial = where.is_trivial
        for row in rows:
            if trivial or pred(row):
                picked.append(row)
                if cut_in_key_order and limit is not None and len(picked) >= limit:
                    break
        if cut_in_key_order or get_sorted:
            page = picked[rowskips:limit]  # cut in key order ...
            if not get_sorted:
                _scramble(page, key_fields, cfg.shuffle)  # ... then unsorted within the page
        else:
            _scramble(picked, key_fields, cfg.shuffle)  # no ORDER BY: cut an arbitrary order
            page = picked[rowskips:limit]
        renderers = [_renderer(f, cfg.packed_trailing_minus) for f in fields]
        trim = cfg.trim_trailing_blanks
        data: list[dict[str, str]] = []
        for row in page:
            wa = delim.join([r(row) for r in renderers])
            data.append({"WA": wa.rstrip(" ") if trim else wa})
    ctx.out["DATA"] = data


@REGISTRY.register("RFC_READ_TABLE", _READ_TABLE_PARAMS)
def rfc_read_table(ctx: CallContext) -> None:
    read_table(ctx, READ_TABLE_WIDTH)


@REGISTRY.register("BBP_RFC_READ_TABLE", _READ_TABLE_PARAMS, installable=True)
def bbp_rfc_read_table(ctx: CallContext) -> None:
    read_table(ctx, READ_TABLE_WIDTH)


_BODS_PARAMS = tuple(Param(p.name, p.direction, p.kind, "TAB2048" if p.name == "DATA" else p.abap_type,
                           p.optional) for p in _READ_TABLE_PARAMS)


@REGISTRY.register("/BODS/RFC_READ_TABLE", _BODS_PARAMS, installable=True)
def bods_rfc_read_table(ctx: CallContext) -> None:
    read_table(ctx, BODS_READ_TABLE_WIDTH)


# ---------------------------------------------------------------------------------------------
# connectivity modules


@REGISTRY.register("RFC_PING")
def rfc_ping(ctx: CallContext) -> None:
    return None


RFCSI_FIELDS = ("RFCPROTO", "RFCCHARTYP", "RFCINTTYP", "RFCFLOTYP", "RFCDEST", "RFCHOST", "RFCSYSID",
                "RFCDATABS", "RFCDBHOST", "RFCDBSYS", "RFCSAPRL", "RFCMACH", "RFCOPSYS", "RFCTZONE",
                "RFCDAYST", "RFCIPADDR", "RFCKERNRL", "RFCHOST2", "RFCSI_RESV", "RFCIPV6ADDR")


@REGISTRY.register("RFC_SYSTEM_INFO", (
    Param("CURRENT_RESOURCES", "export", abap_type="INT4"),
    Param("MAXIMAL_RESOURCES", "export", abap_type="INT4"),
    Param("RECOMMENDED_DELAY", "export", abap_type="INT4"),
    Param("RFCSI_EXPORT", "export", "structure", "RFCSI"),
))
def rfc_system_info(ctx: CallContext) -> None:
    cfg = ctx.config
    tz = str(cfg.timezone_offset_seconds).rjust(6)
    info = {
        "RFCPROTO": "011", "RFCCHARTYP": "4103", "RFCINTTYP": "LIT", "RFCFLOTYP": "IE3",
        "RFCDEST": f"{cfg.host}_{cfg.sid}_00", "RFCHOST": cfg.host[:8], "RFCSYSID": cfg.sid,
        "RFCDATABS": cfg.sid, "RFCDBHOST": f"{cfg.host}db", "RFCDBSYS": "ORACLE", "RFCSAPRL": cfg.saprl,
        "RFCMACH": "  390", "RFCOPSYS": "Linux", "RFCTZONE": tz, "RFCDAYST": "", "RFCIPADDR": "127.0.0.1",
        "RFCKERNRL": cfg.kernel_release, "RFCHOST2": cfg.host, "RFCSI_RESV": "", "RFCIPV6ADDR": "127.0.0.1",
    }
    ctx.out["CURRENT_RESOURCES"] = "7"
    ctx.out["MAXIMAL_RESOURCES"] = "8"
    ctx.out["RECOMMENDED_DELAY"] = "0"
    ctx.out["RFCSI_EXPORT"] = {k: info[k] for k in RFCSI_FIELDS}


@REGISTRY.register("STFC_CONNECTION", (
    Param("REQUTEXT", "import", abap_type="SYCHAR255"),
    Param("ECHOTEXT", "export", abap_type="SYCHAR255"),
    Param("RESPTEXT", "export", abap_type="SYCHAR255"),
))
def stfc_connection(ctx: CallContext) -> None:
    cfg = ctx.config
    now = datetime.now(UTC)
    ctx.out["ECHOTEXT"] = ctx.request.scalar("REQUTEXT")[:255]
    ctx.out["RESPTEXT"] = (f"SAP R/3 Rel. {cfg.saprl}   Sysid: {cfg.sid}      Date: {now:%Y%m%d}   "
                           f"Time: {now:%H%M%S}   Logon_Data: {ctx.client}/{ctx.user}/{ctx.language}")
