"""XML IDocs (reference §5): safe parsing, a typed structure, control-record validation, building.

    idocs = parse_idoc_xml(body)                      # several <IDOC BEGIN="1"> per document
    validate_control(idocs[0], IdocPolicy(direct="1", partners=[PartnerProfile("LS", "EQ2CLNT100")]))
    order = orders_document(idocs[0])                 # typed helpers: DEBMAS, ORDERS05, DELVRY
    body = build_idoc_xml([Idoc(make_control(...), [Segment("E1KNA1M", {...})])])

Structure: the root element is the IDoc type (or the extension CIMTYP), each `<IDOC BEGIN="1">` holds
one `EDI_DC40` control record followed by the data segments; the segment hierarchy is the XML
nesting. Names with a namespace (`/LUMBERL/PO_SHIP_WINDOW`) are written `_-LUMBERL_-PO_SHIP_WINDOW`
in XML; the typed structure holds the real (`/`) names.

Untrusted input: parsed with defusedxml (expat), DTDs, entity declarations and external references
forbidden (so no billion laughs and no file:// or network access); a byte limit, a nesting-depth
limit and an element-count limit are enforced. Every failure is an `IdocParseError` with a clear
message; validation failures are `IdocValidationError` naming the segment and field
(`EDI_DC40-DOCNUM`).
"""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET  # building only; parsing uses defusedxml
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from ml_connector.core.http import PicklableError

CONTROL = "EDI_DC40"
MAX_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 48
MAX_ELEMENTS = 500_000

# EDI_DC40 fields in their DDIC order (reference §5.1); used when building.
CONTROL_FIELDS: tuple[str, ...] = (
    "TABNAM", "MANDT", "DOCNUM", "DOCREL", "STATUS", "DIRECT", "OUTMOD", "EXPRSS", "TEST", "IDOCTYP",
    "CIMTYP", "MESTYP", "MESCOD", "MESFCT", "STD", "STDVRS", "STDMES", "SNDPOR", "SNDPRT", "SNDPFC",
    "SNDPRN", "SNDSAD", "SNDLAD", "RCVPOR", "RCVPRT", "RCVPFC", "RCVPRN", "RCVSAD", "RCVLAD", "CREDAT",
    "CRETIM", "REFINT", "REFGRP", "REFMES", "ARCKEY", "SERIAL",
)

# Known basic types (families) and logical message types. Extensions are accepted through
# IdocPolicy.extra_idoctypes / extra_mestypes.
KNOWN_IDOCTYPES: tuple[re.Pattern[str], ...] = (
    re.compile(r"^DEBMAS0[1-7]$"), re.compile(r"^CREMAS0[1-6]$"), re.compile(r"^ORDERS0[1-5]$"),
    re.compile(r"^DELVRY0[1-7]$"), re.compile(r"^DESADV01$"),
)
KNOWN_MESTYPES: frozenset[str] = frozenset({
    "DEBMAS", "CREMAS", "ORDERS", "ORDCHG", "ORDRSP", "DESADV", "SHPORD", "SHPCON", "WHSCON", "DELVRY",
})
# Which logical message types SAP sends with each known basic type (WE82). A pair outside these is
# never produced by SAP, so it is refused; types added through the policy's extras are not checked.
MESTYPES_OF_IDOCTYPE: tuple[tuple[re.Pattern[str], frozenset[str]], ...] = (
    (re.compile(r"^DEBMAS0[1-7]$"), frozenset({"DEBMAS"})),
    (re.compile(r"^CREMAS0[1-6]$"), frozenset({"CREMAS"})),
    (re.compile(r"^ORDERS0[1-5]$"), frozenset({"ORDERS", "ORDCHG", "ORDRSP"})),
    (re.compile(r"^DELVRY0[1-7]$"), frozenset({"DELVRY", "DESADV", "SHPORD", "SHPCON", "WHSCON"})),
    (re.compile(r"^DESADV01$"), frozenset({"DESADV"})),
)
SDATA_WIDTH = 1000  # EDIDD-SDATA: all of a data segment's fields together fit in 1,000 characters


class IdocError(PicklableError, ValueError):
    """Base of IDoc errors. `segment`/`field` name the offending place, `index` the IDOC (1-based)."""

    def __init__(self, message: str, *, segment: str = "", field: str = "", index: int | None = None) -> None:
        self.segment = segment
        self.field = field
        self.index = index
        where = f"{segment}-{field}" if segment and field else segment or field
        text = f"{where}: {message}" if where else message
        if index is not None:
            text += f" (IDOC #{index})"
        super().__init__(text)


class IdocParseError(IdocError):
    """The document is not a well-formed, safe XML IDoc."""


class IdocTooLarge(IdocParseError):
    """The document exceeds the byte limit."""


class IdocValidationError(IdocError):
    """The control record (or structure) is not acceptable."""


# -- names ------------------------------------------------------------------------------------


def xml_name(name: str) -> str:
    """SAP name -> XML element name (`/` -> `_-`)."""
    return name.replace("/", "_-")


def sap_name(tag: str) -> str:
    """XML element name -> SAP name (`_-` -> `/`)."""
    return tag.replace("_-", "/")


# -- typed structure ----------------------------------------------------------------------------


@dataclass
class Segment:
    """One data segment: its fields (strings, as sent) and its child segments (nesting)."""

    name: str
    fields: dict[str, str] = field(default_factory=dict)
    children: list[Segment] = field(default_factory=list)

    def get(self, name: str, default: str = "") -> str:
        return self.fields.get(name, default)

    def child(self, name: str) -> Segment | None:
        return next((c for c in self.children if c.name == name), None)

    def children_named(self, name: str) -> list[Segment]:
        return [c for c in self.children if c.name == name]

    def walk(self) -> Iterator[Segment]:
        """This segment and all descendants, depth first (document order)."""
        stack = [self]
        while stack:
            seg = stack.pop()
            yield seg
            stack.extend(reversed(seg.children))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"segment": self.name, "fields": dict(self.fields)}
        if self.children:
            d["children"] = [c.to_dict() for c in self.children]
        return d


@dataclass
class Idoc:
    """One IDoc: the EDI_DC40 control record (field -> value) and the top-level data segments."""

    control: dict[str, str]
    segments: list[Segment] = field(default_factory=list)
    root: str = ""  # the document root (IDoc type or extension), SAP spelling

    @property
    def docnum(self) -> str:
        return self.control.get("DOCNUM", "")

    @property
    def mestyp(self) -> str:
        return self.control.get("MESTYP", "")

    @property
    def idoctyp(self) -> str:
        return self.control.get("IDOCTYP", "")

    @property
    def cimtyp(self) -> str:
        return self.control.get("CIMTYP", "")

    @property
    def sndprn(self) -> str:
        return self.control.get("SNDPRN", "")

    @property
    def sndprt(self) -> str:
        return self.control.get("SNDPRT", "")

    def walk(self) -> Iterator[Segment]:
        for seg in self.segments:
            yield from seg.walk()

    def find(self, name: str) -> Segment | None:
        """The first segment called `name` at any level."""
        return next((s for s in self.walk() if s.name == name), None)

    def find_all(self, name: str) -> list[Segment]:
        return [s for s in self.walk() if s.name == name]

    def top(self, name: str) -> list[Segment]:
        return [s for s in self.segments if s.name == name]

    def to_dict(self) -> dict[str, Any]:
        return {"root": self.root, "control": dict(self.control),
                "segments": [s.to_dict() for s in self.segments]}


# -- parsing -----------------------------------------------------------------------------------


def _local(tag: Any) -> str:
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1]


def parse_idoc_xml(data: bytes | str, *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH,
                   max_elements: int = MAX_ELEMENTS) -> list[Idoc]:
    """Parse an XML IDoc document (one or more `<IDOC BEGIN="1">`). Raises IdocParseError or
    IdocValidationError (missing EDI_DC40); never resolves entities or fetches anything."""
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if len(raw) > max_bytes:
        raise IdocTooLarge(f"document of {len(raw)} bytes exceeds the limit of {max_bytes} bytes")
    if not raw.strip():
        raise IdocParseError("empty document")
    depth = 0
    count = 0
    root: Any = None
    try:
        for event, elem in SafeET.iterparse(io.BytesIO(raw), events=("start", "end"), forbid_dtd=True,
                                            forbid_entities=True, forbid_external=True):
            if event == "start":
                depth += 1
                count += 1
                if root is None:
                    root = elem
                if depth > max_depth:
                    raise IdocParseError(f"XML nesting deeper than {max_depth} levels")
                if count > max_elements:
                    raise IdocParseError(f"more than {max_elements} XML elements")
            else:
                depth -= 1
    except IdocParseError:
        raise
    except DefusedXmlException as exc:
        raise IdocParseError(f"forbidden XML construct ({type(exc).__name__}): DTDs, entities and "
                             "external references are not accepted") from None
    except ET.ParseError as exc:
        raise IdocParseError(f"malformed XML: {exc}") from None
    except (ValueError, TypeError, LookupError, UnicodeError, RecursionError, MemoryError) as exc:
        raise IdocParseError(f"unreadable XML: {type(exc).__name__}: {exc}") from None
    if root is None:
        raise IdocParseError("no XML root element")
    return _idocs_from_root(root)


def _idocs_from_root(root: Any) -> list[Idoc]:
    root_name = sap_name(_local(root.tag))
    if root_name == "IDOC":
        blocks = [root]
        root_name = ""
    else:
        blocks = [c for c in root if _local(c.tag) == "IDOC"]
    if not blocks:
        raise IdocValidationError(f"no <IDOC BEGIN=\"1\"> element under the root <{_local(root.tag)}>",
                                  segment="IDOC")
    out: list[Idoc] = []
    for i, block in enumerate(blocks, 1):
        children = [c for c in block if isinstance(c.tag, str)]
        if not children or _local(children[0].tag) != CONTROL:
            raise IdocValidationError("the control record must be the first element of <IDOC>",
                                      segment=CONTROL, index=i)
        control = _fields_of(children[0])
        segments = [_segment(c) for c in children[1:]]
        out.append(Idoc(control=control, segments=segments, root=root_name))
    return out


def _is_segment(elem: Any) -> bool:
    return elem.get("SEGMENT") is not None or any(isinstance(c.tag, str) for c in elem)


def _fields_of(elem: Any) -> dict[str, str]:
    fields: dict[str, str] = {}
    for c in elem:
        if isinstance(c.tag, str) and not _is_segment(c):
            fields[sap_name(_local(c.tag))] = (c.text or "").strip()
    return fields


def _segment(elem: Any) -> Segment:
    # Iterative to avoid deep Python recursion (depth is bounded anyway).
    top = Segment(sap_name(_local(elem.tag)))
    stack: list[tuple[Any, Segment]] = [(elem, top)]
    while stack:
        node, seg = stack.pop()
        for c in node:
            if not isinstance(c.tag, str):
                continue
            if _is_segment(c):
                child = Segment(sap_name(_local(c.tag)))
                seg.children.append(child)
                stack.append((c, child))
            else:
                seg.fields[sap_name(_local(c.tag))] = (c.text or "").strip()
    return top


# -- validation -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartnerProfile:
    """A (WE20-like) partner profile: sender partner type + number, optionally limited to message
    types (None = any known message type)."""

    sndprt: str
    sndprn: str
    mestypes: frozenset[str] | None = None

    def matches(self, sndprt: str, sndprn: str) -> bool:
        return self.sndprt.upper() == sndprt.upper() and self.sndprn.upper() == sndprn.upper()


@dataclass
class IdocPolicy:
    """What a receiver accepts. `direct` '1' = outbound from SAP (our receiver), '2' = inbound into
    SAP (the emulator's /sap/bc/idoc_xml). `partners` None = do not check the sender."""

    direct: str = "1"
    partners: Sequence[PartnerProfile] | None = None
    extra_mestypes: frozenset[str] = frozenset()
    extra_idoctypes: frozenset[str] = frozenset()
    require_docnum: bool = True
    client: str | None = None  # the SAP client (MANDT) the IDocs must come from; None = any client

    def mestypes_of(self, idoctyp: str) -> frozenset[str] | None:
        """The message types SAP sends with this basic type; None = not checked (an extension)."""
        if idoctyp in self.extra_idoctypes:
            return None
        return next((m for p, m in MESTYPES_OF_IDOCTYPE if p.match(idoctyp)), None)

    def known_mestyp(self, mestyp: str) -> bool:
        return mestyp in KNOWN_MESTYPES or mestyp in self.extra_mestypes

    def known_idoctyp(self, idoctyp: str) -> bool:
        return idoctyp in self.extra_idoctypes or any(p.match(idoctyp) for p in KNOWN_IDOCTYPES)


# EDI_DC40's field widths (DDIC); a value longer than its field cannot come from SAP.
_CONTROL_WIDTHS = {"TABNAM": 10, "MANDT": 3, "DOCNUM": 16, "DOCREL": 4, "STATUS": 2, "DIRECT": 1, "OUTMOD": 1,
                   "EXPRSS": 1, "TEST": 1, "IDOCTYP": 30, "CIMTYP": 30, "MESTYP": 30, "MESCOD": 3, "MESFCT": 3,
                   "STD": 1, "STDVRS": 6, "STDMES": 6, "SNDPOR": 10, "SNDPRT": 2, "SNDPFC": 2, "SNDPRN": 10,
                   "SNDSAD": 21, "SNDLAD": 70, "RCVPOR": 10, "RCVPRT": 2, "RCVPFC": 2, "RCVPRN": 10,
                   "RCVSAD": 21, "RCVLAD": 70, "CREDAT": 8, "CRETIM": 6, "REFINT": 14, "REFGRP": 14,
                   "REFMES": 14, "ARCKEY": 70, "SERIAL": 20}


def validate_control(idoc: Idoc, policy: IdocPolicy, *, index: int | None = None) -> None:
    """Check the EDI_DC40 record; raise IdocValidationError naming `EDI_DC40-<FIELD>`."""
    c = idoc.control

    def fail(fld: str, msg: str) -> IdocValidationError:
        return IdocValidationError(msg, segment=CONTROL, field=fld, index=index)

    for fld, value in c.items():
        width = _CONTROL_WIDTHS.get(fld)
        if width is None:
            raise fail(fld, "not a field of the control record")
        if len(value) > width:
            raise fail(fld, f"longer than {width} characters ({len(value)})")
    mandt = c.get("MANDT", "")
    if not re.fullmatch(r"\d{3}", mandt):
        raise fail("MANDT", f"expected the SAP client as 3 digits, got {mandt!r}")
    if policy.client is not None and mandt != policy.client:
        raise fail("MANDT", f"IDoc from client {mandt}, this receiver takes client {policy.client}")
    tabnam = c.get("TABNAM", "")
    if tabnam != CONTROL:
        raise fail("TABNAM", f"expected 'EDI_DC40', got {tabnam!r}" if tabnam else "missing (expected 'EDI_DC40')")
    direct = c.get("DIRECT", "")
    if direct != policy.direct:
        what = "outbound from SAP" if policy.direct == "1" else "inbound into SAP"
        raise fail("DIRECT", f"expected {policy.direct!r} ({what}), got {direct!r}")
    docnum = c.get("DOCNUM", "")
    if policy.require_docnum and not re.fullmatch(r"\d{16}", docnum):
        raise fail("DOCNUM", f"expected 16 digits (zero-padded), got {docnum!r}")
    if not policy.require_docnum and docnum and not re.fullmatch(r"\d{1,16}", docnum):
        raise fail("DOCNUM", f"expected up to 16 digits, got {docnum!r}")
    if docnum and not docnum.strip("0"):
        raise fail("DOCNUM", "all zeros: SAP numbers every IDoc from 1")
    idoctyp = c.get("IDOCTYP", "")
    if not idoctyp:
        raise fail("IDOCTYP", "missing")
    if not policy.known_idoctyp(idoctyp):
        raise fail("IDOCTYP", f"unknown basic type {idoctyp!r}")
    mestyp = c.get("MESTYP", "")
    if not mestyp:
        raise fail("MESTYP", "missing")
    if not policy.known_mestyp(mestyp):
        raise fail("MESTYP", f"unknown message type {mestyp!r}")
    allowed = policy.mestypes_of(idoctyp)
    if allowed is not None and mestyp not in allowed and mestyp not in policy.extra_mestypes:
        raise fail("MESTYP", f"message type {mestyp!r} is not sent with basic type {idoctyp!r} "
                   f"(expected {', '.join(sorted(allowed))})")
    for seg in idoc.walk():
        used = sum(len(v) for v in seg.fields.values())
        if used > SDATA_WIDTH:
            raise IdocValidationError(f"{used} characters of data, more than a segment holds ({SDATA_WIDTH})",
                                      segment=seg.name, index=index)
    if policy.partners is not None:
        sndprt, sndprn = c.get("SNDPRT", ""), c.get("SNDPRN", "")
        if not sndprn:
            raise fail("SNDPRN", "missing sender partner")
        profiles = [p for p in policy.partners if p.matches(sndprt, sndprn)]
        if not profiles:
            raise fail("SNDPRN", f"no partner profile for sender {sndprt or '?'}/{sndprn}")
        if not any(p.mestypes is None or mestyp in p.mestypes for p in profiles):
            raise fail("MESTYP", f"partner {sndprt}/{sndprn} has no profile for message type {mestyp!r}")


def validate_all(idocs: Sequence[Idoc], policy: IdocPolicy) -> None:
    for i, idoc in enumerate(idocs, 1):
        validate_control(idoc, policy, index=i)


# -- building -----------------------------------------------------------------------------------


def make_control(*, mestyp: str, idoctyp: str, docnum: str | int = "", direct: str = "1",
                 status: str | None = None, cimtyp: str = "", mandt: str = "100", docrel: str = "701",
                 sndpor: str = "", sndprt: str = "LS", sndprn: str = "", rcvpor: str = "", rcvprt: str = "LS",
                 rcvprn: str = "", now: datetime | None = None, **extra: str) -> dict[str, str]:
    """A control record with TABNAM, zero-padded DOCNUM, CREDAT/CRETIM/SERIAL filled in."""
    now = now or datetime.now(UTC)
    dn = str(docnum)
    c: dict[str, str] = {
        "TABNAM": CONTROL, "MANDT": mandt, "DOCNUM": dn.zfill(16) if dn else "", "DOCREL": docrel,
        "STATUS": status if status is not None else ("30" if direct == "1" else ""), "DIRECT": direct,
        "OUTMOD": "2" if direct == "1" else "", "IDOCTYP": idoctyp, "CIMTYP": cimtyp, "MESTYP": mestyp,
        "SNDPOR": sndpor, "SNDPRT": sndprt, "SNDPRN": sndprn, "RCVPOR": rcvpor, "RCVPRT": rcvprt,
        "RCVPRN": rcvprn, "CREDAT": now.strftime("%Y%m%d"), "CRETIM": now.strftime("%H%M%S"),
        "SERIAL": now.strftime("%Y%m%d%H%M%S"),
    }
    c.update({k.upper(): v for k, v in extra.items()})
    return {k: v for k, v in c.items() if v != ""}


def _append_segment(parent: ET.Element, seg: Segment) -> None:
    el = ET.SubElement(parent, xml_name(seg.name), {"SEGMENT": "1"})
    for k, v in seg.fields.items():
        if v is None or v == "":
            continue
        ET.SubElement(el, xml_name(k)).text = str(v)
    for c in seg.children:
        _append_segment(el, c)


def build_idoc_xml(idocs: Iterable[Idoc], *, root: str | None = None) -> bytes:
    """Serialize IDocs into one XML document (root = `root`, else CIMTYP or IDOCTYP of the first)."""
    items = list(idocs)
    if not items:
        raise ValueError("no IDoc to build")
    first = items[0]
    root_name = root or first.cimtyp or first.idoctyp or first.root
    if not root_name:
        raise ValueError("the IDoc has neither IDOCTYP nor CIMTYP")
    doc = ET.Element(xml_name(root_name))
    for idoc in items:
        block = ET.SubElement(doc, "IDOC", {"BEGIN": "1"})
        dc = ET.SubElement(block, CONTROL, {"SEGMENT": "1"})
        ordered = [k for k in CONTROL_FIELDS if k in idoc.control]
        ordered += [k for k in idoc.control if k not in CONTROL_FIELDS]
        for k in ordered:
            v = idoc.control[k]
            if v != "":
                ET.SubElement(dc, xml_name(k)).text = v
        for seg in idoc.segments:
            _append_segment(block, seg)
    ET.indent(doc, space="  ")
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(doc, encoding="utf-8") + b"\n"


# -- message helpers ------------------------------------------------------------------------------


@dataclass
class Customer:
    """DEBMAS: E1KNA1M (KNA1) with credit (E1KNKKM/KNKK), sales areas (E1KNVVM/KNVV) with partner
    functions (E1KNVPM/KNVP) and company codes (E1KNB1M/KNB1)."""

    kunnr: str
    name1: str
    msgfn: str
    fields: dict[str, str]
    credit: list[dict[str, str]]
    partners: list[dict[str, str]]
    sales_areas: list[dict[str, str]]
    company_codes: list[dict[str, str]] = field(default_factory=list)

    @property
    def credit_limit(self) -> str:
        """KLIMK of the first credit-control-area segment ('' when none)."""
        return self.credit[0].get("KLIMK", "") if self.credit else ""


def debmas_customer(idoc: Idoc) -> Customer:
    head = idoc.find("E1KNA1M")
    if head is None:
        raise IdocValidationError("missing (a DEBMAS IDoc carries the customer in E1KNA1M)", segment="E1KNA1M")
    partners: list[dict[str, str]] = []
    areas: list[dict[str, str]] = []
    nested: set[int] = set()
    for vv in idoc.find_all("E1KNVVM"):
        area = {k: vv.get(k) for k in ("VKORG", "VTWEG", "SPART") if vv.get(k)}
        areas.append(dict(vv.fields))
        for vp in vv.children_named("E1KNVPM"):
            nested.add(id(vp))
            partners.append({**area, **vp.fields})
    # a flat layout (E1KNVPM outside E1KNVVM) still counts
    partners += [dict(vp.fields) for vp in idoc.find_all("E1KNVPM") if id(vp) not in nested]
    credit = [dict(s.fields) for s in idoc.find_all("E1KNKKM")]
    company_codes = [dict(s.fields) for s in idoc.find_all("E1KNB1M")]
    return Customer(kunnr=head.get("KUNNR"), name1=head.get("NAME1"), msgfn=head.get("MSGFN"),
                    fields=dict(head.fields), credit=credit, partners=partners, sales_areas=areas,
                    company_codes=company_codes)


@dataclass
class OrderItem:
    posex: str
    quantity: str
    unit: str
    price: str
    net_value: str
    plant: str
    material: str
    description: str
    fields: dict[str, str]
    schedule: list[dict[str, str]]
    partners: list[dict[str, str]]


@dataclass
class Order:
    """ORDERS05: header E1EDK01, org data E1EDK14, dates E1EDK03, partners E1EDKA1, items E1EDP01."""

    belnr: str
    currency: str
    doc_type: str
    doc_date: str
    header: dict[str, str]
    org: dict[str, str]
    partners: list[dict[str, str]]
    items: list[OrderItem]
    total: str


def orders_document(idoc: Idoc) -> Order:
    k01 = idoc.find("E1EDK01")
    if k01 is None:
        raise IdocValidationError("missing (an ORDERS IDoc carries the header in E1EDK01)", segment="E1EDK01")
    org = {s.get("QUALF"): s.get("ORGID") for s in idoc.top("E1EDK14")}
    dates = {s.get("IDDAT"): s.get("DATUM") for s in idoc.top("E1EDK03")}
    partners = [dict(s.fields) for s in idoc.top("E1EDKA1")]
    items: list[OrderItem] = []
    for p in idoc.top("E1EDP01"):
        p19 = [s for s in p.children_named("E1EDP19") if s.get("QUALF") in ("001", "002")]
        mat = p19[0] if p19 else None
        items.append(OrderItem(
            posex=p.get("POSEX"), quantity=p.get("MENGE"), unit=p.get("MENEE"), price=p.get("VPREI"),
            net_value=p.get("NETWR"), plant=p.get("WERKS"), material=mat.get("IDTNR") if mat else "",
            description=mat.get("KTEXT") if mat else "", fields=dict(p.fields),
            schedule=[dict(s.fields) for s in p.children_named("E1EDP20")],
            partners=[dict(s.fields) for s in p.children_named("E1EDPA1")]))
    total = next((s.get("SUMME") for s in idoc.top("E1EDS01") if s.get("SUMID") == "002"), "")
    return Order(belnr=k01.get("BELNR"), currency=k01.get("CURCY"), doc_type=k01.get("BSART"),
                 doc_date=dates.get("012", ""), header=dict(k01.fields), org=org, partners=partners,
                 items=items, total=total)


@dataclass
class DeliveryItem:
    posnr: str
    material: str
    quantity: str
    unit: str
    vgbel: str
    vgpos: str
    fields: dict[str, str]


@dataclass
class Delivery:
    """DELVRY0x: header E1EDL20 (VBELN …), partners E1ADRM1, items E1EDL24 with VGBEL/VGPOS."""

    vbeln: str
    shipping_point: str
    sales_org: str
    header: dict[str, str]
    partners: list[dict[str, str]]
    items: list[DeliveryItem]


def delivery_document(idoc: Idoc) -> Delivery:
    l20 = idoc.find("E1EDL20")
    if l20 is None:
        raise IdocValidationError("missing (a DELVRY IDoc carries the delivery in E1EDL20)", segment="E1EDL20")
    items = [DeliveryItem(posnr=s.get("POSNR"), material=s.get("MATNR"), quantity=s.get("LFIMG"),
                          unit=s.get("VRKME"), vgbel=s.get("VGBEL"), vgpos=s.get("VGPOS"), fields=dict(s.fields))
             for s in l20.walk() if s.name == "E1EDL24"]
    partners = [dict(s.fields) for s in l20.walk() if s.name == "E1ADRM1"]
    return Delivery(vbeln=l20.get("VBELN"), shipping_point=l20.get("VSTEL"), sales_org=l20.get("VKORG"),
                    header=dict(l20.fields), partners=partners, items=items)
