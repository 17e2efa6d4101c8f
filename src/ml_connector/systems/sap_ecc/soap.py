"""SOAP-RFC envelopes for `/sap/bc/soap/rfc` (reference §1.1): pure functions.

* `build_envelope(fm, params, tables_wanted)` — the request bytes: SOAP 1.1, the
  FM element `<urn:FM xmlns:urn="urn:sap-com:document:sap:rfc:functions">`,
  unqualified parameter elements, structures as nested elements, tables as
  `<item>` rows, `/` in names written `_-`, XML escaping, dates as YYYYMMDD.
  A parameter whose value is a list is a TABLES parameter. `tables_wanted` names
  TABLES parameters to declare as empty elements, because the SOAP-RFC kernel
  only returns TABLES that the request declares.
* `parse_response(fm, body, tables=...)` — namespace-aware: the reply element is
  found by its LOCAL name `<FM>.Response`, whatever its prefix (urn:, rfc:, none).
  Structures become dicts, `<item>` tables lists of dicts, leaves strings (raw,
  not stripped). A leaf without children is a table (→ []) only when its name
  is in `tables` (the request's declared TABLES), otherwise a string.
* `parse_fault(status, body)` — HTTP 500 SOAP faults → typed `RfcError`.

Dates in replies: whether /sap/bc/soap/rfc emits D-type values as ISO `YYYY-MM-DD`
(the WSDL's `s0:date` pattern) or internal `YYYYMMDD` is unverified (reference §1.1,
[U]). The client cannot see parameter types, so `parse_response` applies one rule:
a leaf value that is exactly `^[0-9]{4}-[0-9]{2}-[0-9]{2}$` is a date and is
normalised to `YYYYMMDD` (`0000-00-00` → `00000000`). Callers therefore always see internal
dates, whichever variant the server emits. The one exception is the `WA` cell of
table rows (RFC_READ_TABLE's TAB512/TAB2048 character work area), which is raw
CHAR data and never rewritten. A CHAR field whose whole value happens to look like
an ISO date would also be rewritten; ABAP CHAR fields holding such text are rare,
and a D field can never legitimately hold anything else.

Responses are untrusted: they are parsed with a hardened lxml parser (no entity
resolution, no network, no DTD loading) and any document carrying a DOCTYPE is
refused (SOAP 1.1 forbids DTDs). Malformed XML becomes `CommunicationError`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from lxml import etree

from .errors import (
    RETRIABLE_RUNTIME_KEYS,
    ABAPApplicationError,
    ABAPRuntimeError,
    CommunicationError,
    RfcError,
)
from .facts import ecc_facts

RFC_NS = ecc_facts().transport.namespace  # provider.yaml transport.namespace
SOAP_ENV_NS = "http://schemas.xmlsoap.org/soap/envelope/"  # SOAP 1.1 itself, not a provider fact
SOAP_ACTION = ecc_facts().transport.soap_action
TABLES_KEY = "__tables__"

_NAME_RE = re.compile(r"^[A-Za-z_/][A-Za-z0-9_/]*$")
_INVALID_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_RAW_CELLS = frozenset({"WA"})  # CHAR work areas of the read-table modules: never rewritten
_FAULTSTRING_KEY = re.compile(r"^\s*([A-Z][A-Z0-9_/]*)\s*(?::\s*(.*))?$", re.S)
# ABAP messages raised without an exception (RFC_ABAP_MESSAGE, code 4 in PyRFC).
_MESSAGE_KEYS = frozenset({"ERROR_MESSAGE_STATE", "MESSAGE_TYPE_X", "MESSAGE_TYPE_UNKNOWN"})


# ----------------------------------------------------------------------------- names and values

def xml_name(name: str) -> str:
    """An ABAP name as an XML element name: `/BODS/RFC_READ_TABLE` → `_-BODS_-RFC_READ_TABLE`."""
    if not _NAME_RE.match(name):
        raise ValueError(f"invalid RFC name {name!r}: only letters, digits, '_' and '/' are allowed")
    return name.replace("/", "_-")


def abap_name(xml: str) -> str:
    """The inverse of `xml_name` (`_-` cannot occur in ABAP names, so it is unambiguous)."""
    return xml.replace("_-", "/")


def _escape(text: str) -> str:
    if _INVALID_XML_CHARS.search(text):
        raise ValueError(f"value {text[:40]!r} contains characters that XML 1.0 cannot carry")
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&apos;"))


def to_abap(value: Any) -> str:
    """The character form SOAP-RFC expects for a scalar value."""
    if isinstance(value, bool):
        return "X" if value else ""
    if isinstance(value, dt.datetime):
        raise TypeError("datetime is ambiguous for ABAP; pass a date (DATS) and a time (TIMS) separately")
    if isinstance(value, dt.date):
        return value.strftime("%Y%m%d")
    if isinstance(value, dt.time):
        return value.strftime("%H%M%S")
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float):
        return format(Decimal(repr(value)), "f")
    if isinstance(value, int | str):
        return str(value)
    raise TypeError(f"cannot send a {type(value).__name__} as an RFC value")


def normalize_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Params with every scalar turned into its ABAP character form (JSON-safe):
    what travels through the agent channel."""
    def norm(v: Any) -> Any:
        if isinstance(v, Mapping):
            return {str(k): norm(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [norm(x) for x in v]
        if v is None:
            return None
        return to_abap(v)

    return {str(k): norm(v) for k, v in (params or {}).items()}


def _element(name: str, value: Any, out: list[str]) -> None:
    tag = xml_name(name)
    if value is None:
        return
    if isinstance(value, Mapping):
        out.append(f"<{tag}>")
        for k, v in value.items():
            _element(str(k), v, out)
        out.append(f"</{tag}>")
    elif isinstance(value, list | tuple):
        if not value:
            out.append(f"<{tag}/>")
            return
        out.append(f"<{tag}>")
        for row in value:
            if isinstance(row, Mapping):
                out.append("<item>")
                for k, v in row.items():
                    _element(str(k), v, out)
                out.append("</item>")
            else:  # table of an elementary line type
                out.append(f"<item>{_escape(to_abap(row))}</item>")
        out.append(f"</{tag}>")
    else:
        out.append(f"<{tag}>{_escape(to_abap(value))}</{tag}>")


def build_envelope(fm: str, params: Mapping[str, Any] | None = None,
                   tables_wanted: Iterable[str] = ()) -> bytes:
    """The SOAP 1.1 request for `fm` (see module docstring)."""
    fm_tag = xml_name(fm)
    params = dict(params or {})
    out: list[str] = [
        '<?xml version="1.0" encoding="utf-8"?>',
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV_NS}">',
        "<soapenv:Header/><soapenv:Body>",
        f'<urn:{fm_tag} xmlns:urn="{RFC_NS}">',
    ]
    for name, value in params.items():
        _element(name, value, out)
    sent = {n.upper() for n, v in params.items() if v is not None}
    for name in tables_wanted:
        if name.upper() not in sent:
            out.append(f"<{xml_name(name)}/>")
            sent.add(name.upper())
    out.append(f"</urn:{fm_tag}></soapenv:Body></soapenv:Envelope>")
    return "".join(out).encode("utf-8")


def declared_tables(params: Mapping[str, Any] | None, tables_wanted: Iterable[str] = ()) -> list[str]:
    """TABLES parameters a request declares: list-valued params plus `tables_wanted`."""
    names = [k for k, v in (params or {}).items() if isinstance(v, list | tuple)]
    names += [t for t in tables_wanted if t not in names]
    return names


# ----------------------------------------------------------------------------- parsing

def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           dtd_validation=False, huge_tree=False, remove_comments=True,
                           remove_pis=True)


def parse_xml(body: bytes) -> etree._Element:
    """Parse an untrusted SOAP document; any failure → CommunicationError."""
    if not body or not body.strip():
        raise CommunicationError("empty response body where a SOAP document was expected",
                                 key="INVALID_RESPONSE", uncertain=True)
    try:
        root = etree.fromstring(body, parser=_parser())
    except etree.XMLSyntaxError as exc:
        raise CommunicationError(f"response is not well-formed XML: {exc.msg}", key="INVALID_RESPONSE",
                                 raw=body, uncertain=True) from None
    except (ValueError, etree.LxmlError) as exc:
        raise CommunicationError(f"response could not be parsed as XML: {exc}", key="INVALID_RESPONSE",
                                 raw=body, uncertain=True) from None
    docinfo: Any = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise CommunicationError("response carries a DOCTYPE/DTD, which SOAP forbids; refused",
                                 key="INVALID_RESPONSE", raw=body, uncertain=True)
    return root


def _local(el: etree._Element) -> str:
    tag = el.tag
    if not isinstance(tag, str):
        return ""
    return etree.QName(tag).localname


def _children(el: etree._Element) -> list[etree._Element]:
    return [c for c in el if isinstance(c.tag, str)]


def normalize_date(text: str) -> str:
    """`YYYY-MM-DD` → `YYYYMMDD`; any other text unchanged (see module docstring)."""
    if len(text) == 10 and _ISO_DATE.fullmatch(text):
        return text[0:4] + text[5:7] + text[8:10]
    return text


_ABAP_NAMES: dict[str, str] = {}  # element tag → its ABAP name (`abap_name(_local(el))`), bounded


def _abap(tag: Any) -> str:
    """`abap_name(_local(el))` by the element's tag, remembered: a table's rows repeat a few tags
    many thousand times (an RFC_READ_TABLE page: one `item` and one `WA` per row)."""
    name = _ABAP_NAMES.get(tag) if isinstance(tag, str) else ""
    if name is None:
        name = abap_name(etree.QName(tag).localname)
        if len(_ABAP_NAMES) < 4096:
            _ABAP_NAMES[tag] = name
    return name


_NO_TABLES: frozenset[str] = frozenset()


def _value(el: etree._Element, tables: frozenset[str], *, raw: bool = False) -> Any:
    kids = _children(el)
    name = _abap(el.tag)
    if not kids:
        if name.upper() in tables:
            return []
        text = el.text or ""
        return text if raw else normalize_date(text)
    if all(_abap(k.tag) == "item" for k in kids) or name.upper() in tables:
        rows: list[Any] = []
        for item in kids:
            cells = _children(item)
            if cells:
                row: dict[str, Any] = {}
                for c in cells:
                    n = _abap(c.tag)
                    if len(c):  # any child node: the general case
                        row[n] = _value(c, _NO_TABLES, raw=n.upper() in _RAW_CELLS)
                    else:  # a leaf cell (nearly all): its text
                        text = c.text or ""
                        row[n] = text if n.upper() in _RAW_CELLS else normalize_date(text)
                rows.append(row)
            else:
                rows.append(normalize_date(item.text or ""))
        return rows
    return {_abap(k.tag): _value(k, _NO_TABLES) for k in kids}


def parse_response(fm: str, body: bytes, *, tables: Iterable[str] = ()) -> dict[str, Any]:
    """The export/changing/tables parameters of a successful reply, as a dict."""
    root = parse_xml(body)
    wanted = {f"{xml_name(fm)}.Response", f"{fm}.Response"}
    resp = next((el for el in root.iter() if _local(el) in wanted), None)
    if resp is None:
        if any(_local(el) == "Fault" for el in root.iter()):
            raise parse_fault(200, body)
        raise CommunicationError(f"reply has no <{fm}.Response> element", key="INVALID_RESPONSE",
                                 raw=body, uncertain=True)
    tset = frozenset(t.upper() for t in tables)
    return {abap_name(_local(k)): _value(k, tset) for k in _children(resp)}


def _text(el: etree._Element) -> str:
    return "".join(str(t) for t in el.itertext())


def _find_text(scope: etree._Element, *names: str) -> str | None:
    """Text of the first descendant whose local name is one of `names` (case-insensitive)."""
    lowered = {n.lower() for n in names}
    for el in scope.iter():
        if el is not scope and _local(el).lower() in lowered:
            return _text(el).strip()
    return None


def _find_exact(scope: etree._Element, name: str) -> etree._Element | None:
    for el in scope.iter():
        if el is not scope and _local(el) == name:
            return el
    return None


def parse_fault(status: int, body: bytes) -> RfcError:
    """A SOAP fault (normally HTTP 500) as a typed error. Order of evidence, per the
    reference's client rule: detail//Name (classic exception), then
    detail//message (rfc:Error runtime shape), then faultstring."""
    try:
        root = parse_xml(body)
    except CommunicationError as exc:
        exc.message = f"HTTP {status}: {exc.message}"
        exc.args = (exc.message,)
        return exc
    fault = _find_exact(root, "Fault")
    if fault is None:
        return CommunicationError(f"HTTP {status} without a SOAP Fault", key=f"HTTP_{status}", raw=body,
                                  uncertain=True)
    faultstring = (_find_text(fault, "faultstring") or "").strip()
    detail = _find_exact(fault, "detail")

    if detail is not None:
        name_el = _find_exact(detail, "Name")
        exc_el = next((el for el in detail.iter() if _local(el).endswith(".Exception")), None)
        if name_el is not None or exc_el is not None:
            scope = exc_el if exc_el is not None else detail
            # an exception element without a usable name still yields a typed error with a key
            key = ((_text(name_el).strip() if name_el is not None else _text(scope).strip()) or faultstring
                   or "UNKNOWN_EXCEPTION")
            msg_id = _find_text(scope, "ID") or ""
            number = _find_text(scope, "Number") or ""
            text = _find_text(scope, "Text") or ""
            mtype = _find_text(scope, "Type") or ("E" if msg_id or number else "")
            vs = [_find_text(scope, f"V{i}") or "" for i in range(1, 5)]
            if msg_id or number:
                message = " ".join(p for p in (f"ID:{msg_id}", f"Type:{mtype}", f"Number:{number}",
                                               *[v for v in vs if v]) if p)
            else:
                message = text or key
            return ABAPApplicationError(message, key=key, msg_class=msg_id, msg_type=mtype,
                                        msg_number=number, msg_v1=vs[0], msg_v2=vs[1], msg_v3=vs[2],
                                        msg_v4=vs[3], raw=body)
        msg = _find_text(detail, "message")
        if msg is not None:
            rtype = (_find_text(detail, "type") or "").strip() or "SYSTEM_FAILURE"
            code = 4 if rtype in _MESSAGE_KEYS else 3
            return ABAPRuntimeError(msg, key=rtype, code=code, raw=body)

    m = _FAULTSTRING_KEY.match(faultstring)
    if m:
        key, text = m.group(1), (m.group(2) or "").strip()
        if key in RETRIABLE_RUNTIME_KEYS or key.startswith(("SAPSQL_", "DBIF_", "TSV_")):
            return ABAPRuntimeError(text or key, key=key, raw=body)
        return ABAPApplicationError(text or key, key=key, raw=body)
    return ABAPRuntimeError(faultstring or f"HTTP {status} SOAP fault", key="SOAP_FAULT", raw=body)


def split_tables_param(params: Mapping[str, Any] | None) -> tuple[dict[str, Any], list[str]]:
    """Undo the channel encoding: params travel with the wanted TABLES under `__tables__`."""
    p = dict(params or {})
    raw = p.pop(TABLES_KEY, None) or []
    tables: Sequence[Any] = raw if isinstance(raw, list | tuple) else [raw]
    return p, [str(t) for t in tables]
