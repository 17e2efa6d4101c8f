"""SOAP envelopes of Marketing Cloud's PartnerAPI: building (lxml) and safe parsing (no DTD, no
entities, no network), shared by the client and the emulator."""

from __future__ import annotations

from typing import Any

from lxml import etree

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
PARTNER = "http://exacttarget.com/wsdl/partnerAPI"
ET_NS = "http://exacttarget.com"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
WSA = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
FAULT_NS = "urn:fault.partner.exacttarget.com"
MAX_BYTES = 20_000_000


class SoapParseError(ValueError):
    pass


def parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                           huge_tree=False, remove_blank_text=True)


def parse(data: bytes) -> etree._Element:
    if len(data) > MAX_BYTES:
        raise SoapParseError(f"SOAP message larger than {MAX_BYTES} bytes")
    if b"<!DOCTYPE" in data[:2000] or b"<!ENTITY" in data:
        raise SoapParseError("SOAP message with a DTD or entity declaration refused")
    try:
        return etree.fromstring(data, parser())
    except etree.XMLSyntaxError as exc:
        raise SoapParseError(f"not well-formed XML: {exc}") from None


#: Default namespace partnerAPI with the xsi prefix (lxml takes None for the default prefix).
NSMAP: Any = {None: PARTNER, "xsi": XSI}
FUEL_NSMAP: Any = {None: ET_NS}


def root(name: str) -> etree._Element:
    """A partnerAPI request/response element in the default namespace."""
    return etree.Element(q(PARTNER, name), nsmap=NSMAP)


def q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def sub(parent: etree._Element, tag: str, text: Any = None, ns: str = PARTNER,
        xsi_type: str | None = None) -> etree._Element:
    el = etree.SubElement(parent, q(ns, tag))
    if xsi_type:
        el.set(q(XSI, "type"), xsi_type)
    if text is not None:
        el.text = text if isinstance(text, str) else ("true" if text is True else "false" if text is False
                                                      else str(text))
    return el


def envelope(body: etree._Element, *, token: str | None = None, version: str = "1.1", action: str = "",
             to: str = "") -> bytes:
    ns = SOAP11 if version == "1.1" else SOAP12
    env = etree.Element(q(ns, "Envelope"), nsmap={"soap": ns, "xsi": XSI, "wsa": WSA})
    head = etree.SubElement(env, q(ns, "Header"))
    if version == "1.2":
        sub(head, "Action", action, ns=WSA)
        sub(head, "To", to, ns=WSA)
    if token is not None:
        fuel = etree.SubElement(head, q(ET_NS, "fueloauth"), nsmap=FUEL_NSMAP)
        fuel.text = token
    b = etree.SubElement(env, q(ns, "Body"))
    b.append(body)
    return bytes(etree.tostring(env, xml_declaration=True, encoding="utf-8"))


def local(el: etree._Element) -> str:
    return etree.QName(el).localname


def child(el: etree._Element, name: str) -> etree._Element | None:
    for c in el:
        if isinstance(c.tag, str) and local(c) == name:
            return c
    return None


def children(el: etree._Element, name: str) -> list[etree._Element]:
    return [c for c in el if isinstance(c.tag, str) and local(c) == name]


def text(el: etree._Element | None, name: str | None = None, default: str = "") -> str:
    node = el if name is None or el is None else child(el, name)
    return (node.text or "").strip() if node is not None else default


def body_of(doc: etree._Element) -> etree._Element:
    b = child(doc, "Body")
    if b is None or len(b) == 0:
        raise SoapParseError("no SOAP Body")
    first = next((c for c in b if isinstance(c.tag, str)), None)
    if first is None:
        raise SoapParseError("empty SOAP Body")
    return first


def properties(el: etree._Element) -> dict[str, str]:
    """`Properties/Property{Name,Value}` of a DataExtensionObject as a dict."""
    props = child(el, "Properties")
    out: dict[str, str] = {}
    for p in children(props, "Property") if props is not None else []:
        out[text(p, "Name")] = text(p, "Value")
    return out


def fault_of(doc: etree._Element) -> tuple[str, str, str] | None:
    """(faultcode, faultstring, apifault code) of a SOAP 1.1 or 1.2 fault, or None."""
    try:
        b = body_of(doc)
    except SoapParseError:
        return None
    if local(b) != "Fault":
        return None
    code = text(b, "faultcode") or text(child(b, "Code"), "Value")
    reason = text(b, "faultstring") or text(child(b, "Reason"), "Text")
    detail = child(b, "detail")
    if detail is None:
        detail = child(b, "Detail")
    api = ""
    if detail is not None:
        for el in detail.iter():
            if isinstance(el.tag, str) and local(el) == "Code" and el is not detail:
                api = (el.text or "").strip()
                break
    return code, reason, api
