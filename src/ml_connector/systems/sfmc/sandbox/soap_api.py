"""The emulator's SOAP PartnerAPI: Create / Retrieve / Update / Delete of DataExtension and
DataExtensionObject, Retrieve of DataExtensionField, filters, UpdateAdd, paging, faults, the WSDL."""

from __future__ import annotations

import uuid
from importlib import resources
from typing import Any

from fastapi.responses import Response
from lxml import etree

from ml_connector.systems.sfmc import soap as S  # noqa: N812
from ml_connector.systems.sfmc.sandbox.state import RETRIEVE_PAGE, DataExtension, SfmcSandbox

FIELD_TYPES = ("Text", "Number", "Date", "Boolean", "EmailAddress", "Phone", "Decimal", "Locale")
FAULT_NSMAP: Any = {None: S.FAULT_NS}
SECEXT = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"


def _ctype(version: str) -> str:
    return "text/xml; charset=utf-8" if version == "1.1" else "application/soap+xml; charset=utf-8"


def fault_envelope(version: str, code: str, reason: str, actor: str, *, status: int = 500, api_code: str = "",
                   security: bool = False) -> Response:
    ns = S.SOAP11 if version == "1.1" else S.SOAP12
    nsmap = {"soap": ns}
    if security:
        nsmap["q0"] = SECEXT
    env = etree.Element(S.q(ns, "Envelope"), nsmap=nsmap)
    body = etree.SubElement(env, S.q(ns, "Body"))
    fault = etree.SubElement(body, S.q(ns, "Fault"))
    if version == "1.1":
        etree.SubElement(fault, "faultcode").text = code
        etree.SubElement(fault, "faultstring").text = reason
        etree.SubElement(fault, "faultactor").text = actor
        detail = etree.SubElement(fault, "detail")
    else:
        c = etree.SubElement(fault, S.q(ns, "Code"))
        etree.SubElement(c, S.q(ns, "Value")).text = code if ":" in code else f"soap:{code}"
        r = etree.SubElement(fault, S.q(ns, "Reason"))
        etree.SubElement(r, S.q(ns, "Text")).text = reason
        detail = etree.SubElement(fault, S.q(ns, "Detail"))
    if api_code:
        af = etree.SubElement(detail, S.q(S.FAULT_NS, "apifault"), nsmap=FAULT_NSMAP)
        etree.SubElement(af, S.q(S.FAULT_NS, "Code")).text = api_code
        etree.SubElement(af, S.q(S.FAULT_NS, "Message")).text = reason
    return Response(etree.tostring(env, xml_declaration=True, encoding="utf-8"), status_code=status,
                    media_type=_ctype(version))


def _num(v: str) -> float | None:
    try:
        return float(v)
    except ValueError:
        return None


def matches(flt: etree._Element | None, row: dict[str, str]) -> bool:
    """SimpleFilterPart / ComplexFilterPart against a row of string values (numbers compared as numbers)."""
    if flt is None:
        return True
    ftype = flt.get(S.q(S.XSI, "type"), "")
    if "Complex" in ftype or S.child(flt, "LeftOperand") is not None:
        left = matches(S.child(flt, "LeftOperand"), row)
        right = matches(S.child(flt, "RightOperand"), row)
        return (left and right) if S.text(flt, "LogicalOperator").upper() == "AND" else (left or right)
    prop = S.text(flt, "Property")
    op = S.text(flt, "SimpleOperator")
    values = [(v.text or "") for v in S.children(flt, "Value")] + [(v.text or "") for v in S.children(flt, "DateValue")]
    lower = {k.lower(): v for k, v in row.items()}
    if prop.lower() not in lower:
        raise ValueError(f"Error: Invalid column name {prop!r}")
    have = lower[prop.lower()]
    if op == "isNull":
        return have == ""
    if op == "isNotNull":
        return have != ""
    if op == "IN":
        return have in values
    if not values:
        raise ValueError(f"Error: the filter on {prop!r} has no Value")
    a, b = _num(have), _num(values[0])
    x: Any = a if a is not None and b is not None else have
    y: Any = b if a is not None and b is not None else values[0]
    if op == "equals":
        return bool(x == y)
    if op == "notEquals":
        return bool(x != y)
    if op == "greaterThan":
        return bool(x > y)
    if op == "lessThan":
        return bool(x < y)
    if op == "greaterThanOrEqual":
        return bool(x >= y)
    if op == "lessThanOrEqual":
        return bool(x <= y)
    if op == "between" and len(values) >= 2:
        c = _num(values[1])
        hi: Any = c if isinstance(x, float) and c is not None else values[1]
        return bool(y <= x <= hi)
    raise ValueError(f"Error: the operator {op!r} is not supported for Data Extension rows")


class SoapApi:
    def __init__(self, state: SfmcSandbox) -> None:
        self.state = state

    def dispatch(self, body: etree._Element, version: str) -> Response:
        op = S.local(body)
        handler = {"CreateRequest": self.create, "UpdateRequest": self.update, "DeleteRequest": self.delete,
                   "RetrieveRequestMsg": self.retrieve}.get(op)
        if handler is None:
            return fault_envelope(version, "soap:Client", f"Unknown operation {op}", "", status=500)
        out_name, resp = handler(body)
        S.sub(resp, "RequestID", str(uuid.uuid4())) if S.child(resp, "RequestID") is None else None
        data = S.envelope(resp, version=version, action=out_name)
        return Response(data, media_type=_ctype(version))

    # -- helpers ----------------------------------------------------------------------------------

    @staticmethod
    def _response(name: str) -> etree._Element:
        return S.root(name)

    @staticmethod
    def _result(resp: etree._Element, kind: str, ordinal: int, ok: bool, message: str,
                code: str = "") -> etree._Element:
        r = S.sub(resp, "Results", xsi_type=kind)
        S.sub(r, "StatusCode", "OK" if ok else "Error")
        S.sub(r, "StatusMessage", message)
        S.sub(r, "OrdinalID", ordinal)
        if not ok:
            S.sub(r, "ErrorCode", code or "310007")
        return r

    @staticmethod
    def _overall(resp: etree._Element, oks: list[bool]) -> None:
        status = "OK" if all(oks) else ("Error" if not any(oks) else "HasErrors")
        # OverallStatus comes before the Results in the schema's sequence
        el = etree.Element(S.q(S.PARTNER, "OverallStatus"))
        el.text = status
        resp.insert(0, el)

    def _de_for(self, obj: etree._Element) -> DataExtension | None:
        key = S.text(obj, "CustomerKey")
        name = S.text(obj, "Name")
        with self.state.lock:
            return self.state.des.get(key) if key else self.state.de_by_name(name)

    @staticmethod
    def _obj_props(obj: etree._Element) -> dict[str, str]:
        return S.properties(obj)

    # -- Create -----------------------------------------------------------------------------------

    def create(self, body: etree._Element) -> tuple[str, etree._Element]:
        resp = self._response("CreateResponse")
        oks = []
        for i, obj in enumerate(S.children(body, "Objects")):
            kind = (obj.get(S.q(S.XSI, "type")) or "").split(":")[-1]
            try:
                if kind == "DataExtension":
                    msg = self._create_de(obj)
                    r = self._result(resp, "DataExtensionCreateResult", i, True, msg)
                elif kind == "DataExtensionObject":
                    de = self._de_for(obj)
                    if de is None:
                        raise ValueError("Unable to find the Data Extension (CustomerKey or Name)")
                    props = self._obj_props(obj)
                    with self.state.lock:
                        if self.state.pk_of(de, props) in de.rows:
                            raise ValueError("Violation of PRIMARY KEY constraint 'PK_" + de.name + "'. Cannot "
                                             "insert duplicate key in object.")
                        self.state.upsert_row(de, props)
                    r = self._result(resp, "DataExtensionCreateResult", i, True, "Created DataExtensionObject")
                else:
                    raise ValueError(f"Unable to find a handler for object type: {kind}")
                oks.append(True)
            except ValueError as exc:
                r = self._result(resp, "DataExtensionCreateResult", i, False, str(exc))
                S.sub(r, "ErrorMessage", str(exc))
                oks.append(False)
        self._overall(resp, oks)
        return "CreateResponse", resp

    def _create_de(self, obj: etree._Element) -> str:
        key = S.text(obj, "CustomerKey") or str(uuid.uuid4())
        name = S.text(obj, "Name")
        if not name:
            raise ValueError("Name is required for a Data Extension")
        fields = []
        fs = S.child(obj, "Fields")
        for f in S.children(fs, "Field") if fs is not None else []:
            ftype = S.text(f, "FieldType") or "Text"
            if ftype not in FIELD_TYPES:
                raise ValueError(f"Field {S.text(f, 'Name')!r}: invalid FieldType {ftype!r}")
            primary = S.text(f, "IsPrimaryKey") == "true"
            ml = S.text(f, "MaxLength")
            fields.append({"Name": S.text(f, "Name"), "FieldType": ftype,
                           "MaxLength": int(ml) if ml.isdigit() else (50 if ftype == "Text" else None),
                           "IsPrimaryKey": primary, "IsRequired": primary or S.text(f, "IsRequired") == "true",
                           "Precision": int(S.text(f, "Precision")) if S.text(f, "Precision").isdigit() else None,
                           "Scale": int(S.text(f, "Scale")) if S.text(f, "Scale").isdigit() else None})
        if not fields:
            raise ValueError("A Data Extension needs at least one field")
        sendable = S.text(S.child(obj, "SendableDataExtensionField"), "Name") or None \
            if S.child(obj, "SendableDataExtensionField") is not None else None
        with self.state.lock:
            if key in self.state.des:
                raise ValueError(f"A Data Extension with CustomerKey {key!r} already exists")
            if self.state.de_by_name(name) is not None:
                raise ValueError(f"A Data Extension named {name!r} already exists")
            self.state.des[key] = DataExtension(key, name, fields, sendable)
        return "Data Extension created."

    # -- Update / Delete --------------------------------------------------------------------------

    def update(self, body: etree._Element) -> tuple[str, etree._Element]:
        resp = self._response("UpdateResponse")
        upsert = False
        opts = S.child(body, "Options")
        if opts is not None:
            for so in opts.iter(S.q(S.PARTNER, "SaveOption")):
                if S.text(so, "SaveAction") == "UpdateAdd":
                    upsert = True
        oks = []
        for i, obj in enumerate(S.children(body, "Objects")):
            try:
                de = self._de_for(obj)
                if de is None:
                    raise ValueError("Unable to find the Data Extension (CustomerKey or Name)")
                props = self._obj_props(obj)
                with self.state.lock:
                    if not upsert and self.state.pk_of(de, props) not in de.rows:
                        raise ValueError("The row to update does not exist (use SaveAction UpdateAdd to add it)")
                    self.state.upsert_row(de, props)
                self._result(resp, "DataExtensionUpdateResult", i, True, "Updated DataExtensionObject")
                oks.append(True)
            except ValueError as exc:
                r = self._result(resp, "DataExtensionUpdateResult", i, False, str(exc))
                S.sub(r, "ErrorMessage", str(exc))
                oks.append(False)
        self._overall(resp, oks)
        return "UpdateResponse", resp

    def delete(self, body: etree._Element) -> tuple[str, etree._Element]:
        resp = self._response("DeleteResponse")
        oks = []
        for i, obj in enumerate(S.children(body, "Objects")):
            kind = (obj.get(S.q(S.XSI, "type")) or "").split(":")[-1]
            try:
                de = self._de_for(obj)
                if de is None:
                    raise ValueError("Unable to find the Data Extension (CustomerKey or Name)")
                with self.state.lock:
                    if kind == "DataExtension":
                        del self.state.des[de.key]
                    else:
                        kel = S.child(obj, "Keys")
                        keys = {S.text(k, "Name"): S.text(k, "Value")
                                for k in (S.children(kel, "Key") if kel is not None else [])}
                        pk = self.state.pk_of(de, keys)
                        if de.rows.pop(pk, None) is None:
                            raise ValueError("The row to delete does not exist")
                self._result(resp, "DataExtensionDeleteResult", i, True, "Deleted")
                oks.append(True)
            except ValueError as exc:
                self._result(resp, "DataExtensionDeleteResult", i, False, str(exc))
                oks.append(False)
        self._overall(resp, oks)
        return "DeleteResponse", resp

    # -- Retrieve ---------------------------------------------------------------------------------

    def retrieve(self, body: etree._Element) -> tuple[str, etree._Element]:
        resp = self._response("RetrieveResponseMsg")
        rr = S.child(body, "RetrieveRequest")
        if rr is None:
            S.sub(resp, "OverallStatus", "Error: RetrieveRequest missing")
            return "RetrieveResponse", resp
        cont = S.text(rr, "ContinueRequest")
        if cont:
            with self.state.lock:
                saved = self.state.continuations.pop(cont, None)
            if saved is None:
                S.sub(resp, "OverallStatus", "Error: ContinueRequest unknown or expired")
                return "RetrieveResponse", resp
            rows, offset, props = saved
            return "RetrieveResponse", self._page(resp, rows, offset, props, "DataExtensionObject")
        otype = S.text(rr, "ObjectType")
        props = [p.text or "" for p in S.children(rr, "Properties")]
        flt = S.child(rr, "Filter")
        try:
            if otype == "DataExtension":
                with self.state.lock:
                    des = list(self.state.des.values())
                rows = [{"Name": d.name, "CustomerKey": d.key, "ObjectID": d.object_id,
                         "IsSendable": "true" if d.sendable_field else "false"} for d in des]
                rows = [r for r in rows if matches(flt, r)]
                return "RetrieveResponse", self._page(resp, rows, 0, props, "DataExtension")
            if otype == "DataExtensionField":
                out = []
                with self.state.lock:
                    des = list(self.state.des.values())
                for d in des:
                    for f in d.fields:
                        row = {"Name": f["Name"], "FieldType": f["FieldType"],
                               "MaxLength": "" if f.get("MaxLength") is None else str(f["MaxLength"]),
                               "IsPrimaryKey": "true" if f.get("IsPrimaryKey") else "false",
                               "IsRequired": "true" if f.get("IsRequired") else "false",
                               "Precision": "" if f.get("Precision") is None else str(f["Precision"]),
                               "Scale": "" if f.get("Scale") is None else str(f["Scale"]),
                               "DataExtension.CustomerKey": d.key}
                        if matches(flt, row):
                            out.append(row)
                return "RetrieveResponse", self._page(resp, out, 0, props, "DataExtensionField")
            if otype.startswith("DataExtensionObject[") and otype.endswith("]"):
                name = otype[len("DataExtensionObject["):-1]
                with self.state.lock:
                    de = self.state.de_by_name(name) or self.state.des.get(name)
                    found = [dict(r) for r in de.rows.values()] if de is not None else None
                if de is None or found is None:
                    raise ValueError(f"Error: Unable to find a handler for object type: {otype}. Object types are "
                                     "case-sensitive, check spelling.")
                bad = [p for p in props if de.field(p) is None]
                if bad:
                    raise ValueError(f"Error: The Request Property(s) {', '.join(bad)} do not match with the fields "
                                     f"of DataExtensionObject retrieve")
                return "RetrieveResponse", self._page(resp, [r for r in found if matches(flt, r)], 0, props,
                                                      "DataExtensionObject")
            raise ValueError(f"Error: Unable to find a handler for object type: {otype}. Object types are "
                             "case-sensitive, check spelling.")
        except ValueError as exc:
            S.sub(resp, "OverallStatus", str(exc))
            return "RetrieveResponse", resp

    def _page(self, resp: etree._Element, rows: list[dict[str, str]], offset: int, props: list[str],
              kind: str) -> etree._Element:
        page = rows[offset:offset + RETRIEVE_PAGE]
        more = offset + RETRIEVE_PAGE < len(rows)
        rid = str(uuid.uuid4())
        S.sub(resp, "OverallStatus", "MoreDataAvailable" if more else "OK")
        S.sub(resp, "RequestID", rid)
        if more:
            with self.state.lock:
                self.state.continuations[rid] = (rows, offset + RETRIEVE_PAGE, props)
        for row in page:
            r = S.sub(resp, "Results", xsi_type=kind)
            if kind == "DataExtensionObject":
                pe = S.sub(r, "Properties")
                for p in props or list(row):
                    prop = S.sub(pe, "Property")
                    name = next((k for k in row if k.lower() == p.lower()), p)
                    S.sub(prop, "Name", name)
                    S.sub(prop, "Value", row.get(name, ""))
            elif kind == "DataExtensionField":
                for p in props or [k for k in row if "." not in k]:
                    if p in row and "." not in p:
                        S.sub(r, p, row[p])
                de_el = S.sub(r, "DataExtension")
                S.sub(de_el, "CustomerKey", row["DataExtension.CustomerKey"])
            else:
                for p in props or list(row):
                    if p in row:
                        S.sub(r, p, row[p])
        return resp


def fault_xsd() -> str:
    return """<?xml version="1.0" encoding="utf-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:fault.partner.exacttarget.com"
           xmlns="urn:fault.partner.exacttarget.com" elementFormDefault="qualified">
  <xs:element name="apifault"><xs:complexType><xs:sequence>
    <xs:element name="Code" type="xs:int"/><xs:element name="Message" type="xs:string"/>
  </xs:sequence></xs:complexType></xs:element>
</xs:schema>
"""


def wsdl_text(address: str, fault_xsd_url: str) -> str:
    """A WSDL of the operations the emulator serves (PartnerAPI, document/literal, soapAction = the
    operation name), with this emulator's address and its fault schema importable from it."""
    ops = ("Create", "Retrieve", "Update", "Delete")
    msgs = {"Create": ("CreateRequest", "CreateResponse"), "Retrieve": ("RetrieveRequestMsg", "RetrieveResponseMsg"),
            "Update": ("UpdateRequest", "UpdateResponse"), "Delete": ("DeleteRequest", "DeleteResponse")}
    messages = "".join(f'<message name="{o}In"><part name="parameters" element="tns:{msgs[o][0]}"/></message>'
                       f'<message name="{o}Out"><part name="parameters" element="tns:{msgs[o][1]}"/></message>'
                       for o in ops)
    port_ops = "".join(f'<operation name="{o}"><input message="tns:{o}In"/><output message="tns:{o}Out"/></operation>'
                       for o in ops)
    bind_ops = "".join(f'<operation name="{o}"><soap:operation soapAction="{o}" style="document"/>'
                       f'<input><soap:body use="literal"/></input><output><soap:body use="literal"/></output>'
                       f'</operation>' for o in ops)
    text = resources.files("ml_connector.systems.sfmc.sandbox").joinpath("etframework.wsdl").read_text("utf-8")
    for k, v in (("@PARTNER@", S.PARTNER), ("@FAULT_XSD@", fault_xsd_url), ("@MESSAGES@", messages),
                 ("@PORT_OPS@", port_ops), ("@BIND_OPS@", bind_ops), ("@ADDRESS@", address)):
        text = text.replace(k, v)
    return text
