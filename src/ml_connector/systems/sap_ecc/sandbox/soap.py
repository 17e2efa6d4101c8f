"""Server-side SOAP-RFC: parse request envelopes, write responses and faults (reference §1.1).

Requests are untrusted: they are parsed with a hardened lxml parser (no entity resolution, no
network, no DTD loading, no huge trees), a DOCTYPE is refused (SOAP 1.1 forbids it), and the
body size is capped by the caller (`MAX_REQUEST_BYTES` default).

Responses are written as text (fast for 20,000-row tables) with XML escaping of every value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

RFC_NS = "urn:sap-com:document:sap:rfc:functions"
SOAP_FN_NS = "urn:sap-com:document:sap:soap:functions"
SOAP_ENV_NS = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_ENV_NS = "http://www.w3.org/2003/05/soap-envelope"
MAX_REQUEST_BYTES = 8 * 1024 * 1024

# exception fault shapes (the nesting of classic exceptions in the Fault is [U], reference §1.1)
EXCEPTION_SHAPES = ("detail", "detail_name_only", "faultstring_only")

Value = str | dict[str, str] | list[dict[str, str]]


class SoapParseError(ValueError):
    """The request is not a well-formed SOAP-RFC envelope."""


@dataclass
class RfcRequest:
    """A parsed call: FM name (with '/' restored), the request's FM prefix, and its parameters.

    `params` maps parameter name to: str (scalar or empty element), dict (structure), or list of
    dicts (table rows). An empty element (`<DATA/>`) is the empty string; `table()` and
    `structure()` coerce it."""

    function: str
    prefix: str | None
    params: dict[str, Value] = field(default_factory=dict)

    def has(self, name: str) -> bool:
        return name in self.params

    def scalar(self, name: str, default: str = "") -> str:
        v = self.params.get(name)
        if v is None:
            return default
        if isinstance(v, str):
            return v
        raise SoapParseError(f"parameter {name} must be a scalar")

    def structure(self, name: str) -> dict[str, str]:
        v = self.params.get(name)
        if v is None or v == "":
            return {}
        if isinstance(v, dict):
            return v
        if isinstance(v, list) and len(v) == 1:
            return v[0]
        raise SoapParseError(f"parameter {name} must be a structure")

    def table(self, name: str) -> list[dict[str, str]]:
        v = self.params.get(name)
        if v is None or v == "":
            return []
        if isinstance(v, list):
            return v
        raise SoapParseError(f"parameter {name} must be a table (<item> rows)")


def date_in(value: str) -> str:
    """A D-type input value in internal form: accepts 'YYYY-MM-DD' and 'YYYYMMDD' (SharpSapRfc sends
    the latter), blank and '0000-00-00' give the initial '00000000'. Raises SoapParseError."""
    v = value.strip()
    if not v:
        return "00000000"
    compact = v.replace("-", "") if len(v) == 10 and v[4] == "-" and v[7] == "-" else v
    if len(compact) != 8 or not compact.isdigit():
        raise SoapParseError(f"{value!r} is not a date (YYYY-MM-DD or YYYYMMDD)")
    return compact


def time_in(value: str) -> str:
    """A T-type input value in internal form: accepts 'HH:MM:SS' and 'HHMMSS'."""
    v = value.strip()
    if not v:
        return "000000"
    compact = v.replace(":", "") if len(v) == 8 and v[2] == ":" and v[5] == ":" else v
    if len(compact) != 6 or not compact.isdigit():
        raise SoapParseError(f"{value!r} is not a time (HH:MM:SS or HHMMSS)")
    return compact


def element_name_to_abap(name: str) -> str:
    """`_-BODS_-RFC_READ_TABLE` -> `/BODS/RFC_READ_TABLE` (SAP Help 'Structure of a SOAP Message')."""
    return name.replace("_-", "/")


def abap_to_element_name(name: str) -> str:
    return name.replace("/", "_-")


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                           huge_tree=False, remove_comments=True, remove_pis=True, recover=False)


def _local(el: Any) -> str:
    tag = el.tag
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1] if tag.startswith("{") else tag


def _text(el: Any) -> str:
    return el.text or ""


def _value(el: Any) -> Value:
    children = [c for c in el if isinstance(c.tag, str)]
    if not children:
        return _text(el)
    if all(_local(c) == "item" for c in children):
        rows: list[dict[str, str]] = []
        for item in children:
            row: dict[str, str] = {}
            sub = [c for c in item if isinstance(c.tag, str)]
            if not sub and (item.text or "").strip():
                row[""] = item.text or ""  # table of an elementary type
            for c in sub:
                row[element_name_to_abap(_local(c))] = _text(c)
            rows.append(row)
        return rows
    return {element_name_to_abap(_local(c)): _text(c) for c in children}


def parse_request(body: bytes, *, max_bytes: int = MAX_REQUEST_BYTES) -> RfcRequest:
    """Parse a SOAP-RFC request envelope (namespace-aware; any prefixes)."""
    if len(body) > max_bytes:
        raise SoapParseError(f"request of {len(body)} bytes exceeds the limit of {max_bytes}")
    if not body.strip():
        raise SoapParseError("empty request body")
    try:
        root = etree.fromstring(body, parser=_parser())
    except etree.XMLSyntaxError as exc:
        raise SoapParseError(f"XML syntax error: {exc}") from None
    except (ValueError, etree.LxmlError) as exc:  # anything else lxml refuses: still a parse error
        raise SoapParseError(f"XML could not be parsed: {exc}") from None
    tree = root.getroottree()
    if getattr(tree.docinfo, "doctype", "") or tree.docinfo.internalDTD is not None:
        raise SoapParseError("a DOCTYPE is not allowed in a SOAP message")
    if _local(root) != "Envelope" or etree.QName(root).namespace not in (SOAP_ENV_NS, SOAP12_ENV_NS):
        raise SoapParseError("the root element is not a SOAP Envelope")
    body_el = next((c for c in root if _local(c) == "Body"), None)
    if body_el is None:
        raise SoapParseError("the SOAP Envelope has no Body")
    fm_el = next((c for c in body_el if isinstance(c.tag, str)), None)
    if fm_el is None:
        raise SoapParseError("the SOAP Body is empty")
    if etree.QName(fm_el).namespace != RFC_NS:
        raise SoapParseError(f"the function element must be in namespace {RFC_NS}")
    req = RfcRequest(function=element_name_to_abap(_local(fm_el)).upper(), prefix=fm_el.prefix)
    for p in fm_el:
        if isinstance(p.tag, str):
            req.params[element_name_to_abap(_local(p))] = _value(p)
    return req


# ---------------------------------------------------------------------------------------------
# writing

_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def esc(value: str) -> str:
    """XML-escape a text value (control characters that XML 1.0 cannot carry become '#')."""
    if "&" in value:
        value = value.replace("&", "&amp;")
    if "<" in value:
        value = value.replace("<", "&lt;")
    if ">" in value:
        value = value.replace(">", "&gt;")
    if "\r" in value:
        value = value.replace("\r", "&#13;")
    if _INVALID_XML.search(value):
        value = _INVALID_XML.sub("#", value)
    return value


def _write_value(out: list[str], name: str, value: Any) -> None:
    tag = abap_to_element_name(name)
    if isinstance(value, dict):
        out.append(f"<{tag}>")
        for k, v in value.items():
            _write_value(out, k, v)
        out.append(f"</{tag}>")
    elif isinstance(value, list):
        if not value:
            out.append(f"<{tag}/>")
            return
        out.append(f"<{tag}>")
        for row in value:
            if isinstance(row, dict):
                out.append("<item>")
                for k, v in row.items():
                    kt = abap_to_element_name(k)
                    out.append(f"<{kt}>{esc(str(v))}</{kt}>" if v != "" else f"<{kt}/>")
                out.append("</item>")
            else:
                out.append(f"<item>{esc(str(row))}</item>")
        out.append(f"</{tag}>")
    else:
        text = "" if value is None else str(value)
        out.append(f"<{tag}>{esc(text)}</{tag}>" if text != "" else f"<{tag}/>")


_ENVELOPE_OPEN = (
    '<?xml version="1.0" encoding="utf-8"?>'
    f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP_ENV_NS}"><SOAP-ENV:Header/><SOAP-ENV:Body>'
)
_ENVELOPE_CLOSE = "</SOAP-ENV:Body></SOAP-ENV:Envelope>"


def response_prefix(mode: str, request_prefix: str | None) -> str:
    """The FM.Response prefix: 'echo' repeats the request's prefix (falls back to 'urn', as in the
    7.58 capture), anything else is used literally (e.g. 'rfc')."""
    if mode == "echo":
        return request_prefix or "urn"
    return mode


def build_response(function: str, values: list[tuple[str, Any]], *, prefix: str = "urn") -> bytes:
    """`<prefix:FM.Response xmlns:prefix="urn:sap-com:document:sap:rfc:functions">` with parameters in
    the given order: str = scalar, dict = structure, list of dicts = table with <item> rows."""
    fm = abap_to_element_name(function)
    out = [_ENVELOPE_OPEN, f'<{prefix}:{fm}.Response xmlns:{prefix}="{RFC_NS}">']
    for name, value in values:
        _write_value(out, name, value)
    out.append(f"</{prefix}:{fm}.Response>")
    out.append(_ENVELOPE_CLOSE)
    return "".join(out).encode("utf-8")


@dataclass
class T100:
    """A T100 message (ID, number, text, variables)."""

    msgid: str
    number: str
    text: str = ""
    v1: str = ""
    v2: str = ""
    v3: str = ""
    v4: str = ""


def _fault(faultstring: str, detail: str = "", faultcode: str = "SOAP-ENV:Client") -> bytes:
    return (
        f"{_ENVELOPE_OPEN}<SOAP-ENV:Fault><faultcode>{faultcode}</faultcode>"
        f"<faultstring>{esc(faultstring)}</faultstring>"
        + (f"<detail>{detail}</detail>" if detail else "")
        + f"</SOAP-ENV:Fault>{_ENVELOPE_CLOSE}"
    ).encode("utf-8")


def build_exception_fault(function: str, name: str, message: T100 | None = None, *,
                          shape: str = "detail") -> bytes:
    """Fault for a classic ABAP exception (RAISE NAME). Shapes (the real nesting is [U]):

    - 'detail': faultstring = NAME, detail holds `<rfc:FM.Exception><Name/><Message><ID/><Number/>
      <Text/></Message><Attributes><V1/>..</Attributes></rfc:FM.Exception>` (IFR-XML convention);
    - 'detail_name_only': the same element with only `<Name>`;
    - 'faultstring_only': faultstring = NAME, no detail."""
    if shape not in EXCEPTION_SHAPES:
        raise ValueError(f"unknown exception shape {shape!r}")
    if shape == "faultstring_only":
        return _fault(name)
    fm = abap_to_element_name(function)
    parts = [f'<rfc:{fm}.Exception xmlns:rfc="{RFC_NS}"><Name>{esc(name)}</Name>']
    if shape == "detail" and message is not None:
        parts.append(f"<Message><ID>{esc(message.msgid)}</ID><Number>{esc(message.number)}</Number>"
                     f"<Text>{esc(message.text)}</Text></Message>")
        attrs = [(k, v) for k, v in (("V1", message.v1), ("V2", message.v2), ("V3", message.v3),
                                     ("V4", message.v4)) if v]
        if attrs:
            parts.append("<Attributes>" + "".join(f"<{k}>{esc(v)}</{k}>" for k, v in attrs)
                         + "</Attributes>")
    parts.append(f"</rfc:{fm}.Exception>")
    return _fault(name, "".join(parts))


def build_error_fault(error_type: str, message: str, *, faultstring: str = "Internal Server Error") -> bytes:
    """Fault for a runtime/message error: `<rfc:Error xmlns:rfc="urn:sap-com:document:sap:soap:functions">
    <type/><message/></rfc:Error>` in detail (captured shape, reference §1.1)."""
    detail = (f'<rfc:Error xmlns:rfc="{SOAP_FN_NS}"><type>{esc(error_type)}</type>'
              f"<message>{esc(message)}</message></rfc:Error>")
    return _fault(faultstring, detail)


def build_authorization_fault(text: str = "User has no authorization for function module") -> bytes:
    return _fault(f"RFC_AUTHORIZATION_FAILURE: {text}")


def build_client_fault(text: str) -> bytes:
    """A malformed request (not a SOAP-RFC envelope)."""
    return _fault(text)
