"""Hostile and random SOAP for the parser fuzz tests: each parser run on one body, hypothesis strategies for
envelopes, XXE-style prologs."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from ml_connector.systems.sap_ecc import soap
from ml_connector.systems.sap_ecc.errors import RfcError
from ml_connector.systems.sap_ecc.sandbox import soap as server_soap
from ml_connector.systems.sap_ecc.sandbox.soap import SoapParseError

RFC_NS = soap.RFC_NS
ENV_NS = soap.SOAP_ENV_NS
SECRET = "MLC-XXE-CANARY-7f3a9c"


def client_response(body: bytes) -> Any:
    try:
        return soap.parse_response("RFC_READ_TABLE", body, tables=("DATA", "FIELDS", "OPTIONS"))
    except RfcError as exc:
        return exc


def client_fault(body: bytes) -> Any:
    result = soap.parse_fault(500, body)
    assert isinstance(result, RfcError), f"parse_fault returned {type(result).__name__}"
    return result


def server_request(body: bytes) -> Any:
    try:
        req = server_soap.parse_request(body)
    except SoapParseError as exc:
        return exc
    assert isinstance(req.function, str) and req.function
    for name in req.params:  # the accessors fail only with SoapParseError too
        for access in (req.scalar, req.structure, req.table):
            with contextlib.suppress(SoapParseError):
                access(name)
    return req


PARSERS: list[tuple[str, Callable[[bytes], Any]]] = [
    ("parse_response", client_response), ("parse_fault", client_fault), ("parse_request", server_request)]


def run_all(body: bytes) -> list[Any]:
    """Every parser on `body`; any exception escaping the wrappers above fails the test."""
    return [fn(body) for _, fn in PARSERS]


def text_of(outcome: Any) -> str:
    if isinstance(outcome, RfcError):
        return f"{outcome} {outcome.message} {outcome.key}"
    if isinstance(outcome, server_soap.RfcRequest):
        return repr(outcome.params)
    return repr(outcome)


NAMES = st.sampled_from(["QUERY_TABLE", "DATA", "FIELDS", "WA", "item", "RETURN", "TYPE", "Name",
                         "message", "faultstring", "detail", "_-BODS_-X", "Fault", "Envelope", "Body",
                         "RFC_READ_TABLE.Response", "RFC_READ_TABLE", "x"])


XML_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), min_codepoint=0x20, max_codepoint=0x2FF),
                   max_size=20)


@st.composite
def trees(draw: Any, depth: int = 3) -> str:
    """A random well-formed XML fragment of SOAP-RFC-ish element names."""
    name = draw(NAMES)
    if depth == 0 or draw(st.booleans()):
        return f"<{name}>{soap._escape(draw(XML_TEXT))}</{name}>"
    kids = draw(st.lists(trees(depth=depth - 1), max_size=4))
    return f"<{name}>{''.join(kids)}</{name}>"


@st.composite
def envelopes(draw: Any) -> bytes:
    """A well-formed envelope: request, response or fault, with a random parameter tree."""
    kind = draw(st.sampled_from(["request", "response", "fault"]))
    body = "".join(draw(st.lists(trees(), max_size=4)))
    prefix = draw(st.sampled_from(["urn", "rfc", "n0"]))
    if kind == "request":
        inner = f'<{prefix}:RFC_READ_TABLE xmlns:{prefix}="{RFC_NS}">{body}</{prefix}:RFC_READ_TABLE>'
    elif kind == "response":
        inner = (f'<{prefix}:RFC_READ_TABLE.Response xmlns:{prefix}="{RFC_NS}">{body}'
                 f"</{prefix}:RFC_READ_TABLE.Response>")
    else:
        inner = (f"<SOAP-ENV:Fault><faultcode>SOAP-ENV:Client</faultcode><faultstring>"
                 f"{soap._escape(draw(XML_TEXT))}</faultstring><detail>{body}</detail></SOAP-ENV:Fault>")
    return (f'<?xml version="1.0" encoding="utf-8"?><SOAP-ENV:Envelope xmlns:SOAP-ENV="{ENV_NS}">'
            f"<SOAP-ENV:Body>{inner}</SOAP-ENV:Body></SOAP-ENV:Envelope>").encode()


@st.composite
def broken_envelopes(draw: Any) -> bytes:
    """A well-formed envelope damaged at random: truncated, bytes deleted/inserted/replaced, tags
    swapped, or hostile snippets spliced in."""
    data = bytearray(draw(envelopes()))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["truncate", "delete", "insert", "replace", "splice"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "truncate":
            del data[pos:]
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 8))]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "replace" and data:
            data[pos] = draw(st.integers(0, 255))
        else:
            data[pos:pos] = draw(st.sampled_from([
                b"<", b"</", b"&", b"&amp", b"&#0;", b"&#xD800;", b"]]>", b"<![CDATA[", b"<!--",
                b"<?pi x?>", b"\xff\xfe", b"\xc3", b'xmlns:SOAP-ENV="urn:other"', b"<!DOCTYPE x>",
                b'<!ENTITY e "v">', b"&e;", b"\x00", b'<?xml version="1.0" encoding="ebcdic"?>']))
    return bytes(data)


def envelope_with(prolog: str, value: str, *, fm: str = "RFC_READ_TABLE.Response") -> bytes:
    return (f'<?xml version="1.0"?>{prolog}<SOAP-ENV:Envelope xmlns:SOAP-ENV="{ENV_NS}"><SOAP-ENV:Body>'
            f'<rfc:{fm} xmlns:rfc="{RFC_NS}"><QUERY_TABLE>{value}</QUERY_TABLE><faultstring>{value}</faultstring>'
            f"</rfc:{fm}></SOAP-ENV:Body></SOAP-ENV:Envelope>").encode()


def hostile_bodies(secret_file: Path) -> dict[str, bytes]:
    url = secret_file.as_uri()
    lol = '<!ENTITY lol "lololololololololololololololololololololololololololololololololololol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10))
    docs: dict[str, bytes] = {}
    for fm in ("RFC_READ_TABLE.Response", "RFC_READ_TABLE"):
        tag = "resp" if fm.endswith("Response") else "req"
        docs[f"billion_laughs_{tag}"] = envelope_with(f"<!DOCTYPE SOAP-ENV:Envelope [{lol}]>", "&lol9;", fm=fm)
        docs[f"external_entity_{tag}"] = envelope_with(
            f'<!DOCTYPE SOAP-ENV:Envelope [<!ENTITY xxe SYSTEM "{url}">]>', "&xxe;", fm=fm)
        docs[f"parameter_entity_{tag}"] = envelope_with(
            f'<!DOCTYPE SOAP-ENV:Envelope [<!ENTITY % p SYSTEM "{url}"> %p;]>', "x", fm=fm)
        docs[f"external_dtd_{tag}"] = envelope_with(f'<!DOCTYPE SOAP-ENV:Envelope SYSTEM "{url}">', "x", fm=fm)
        docs[f"undeclared_entity_{tag}"] = envelope_with("", "&xxe;", fm=fm)
        docs[f"xinclude_{tag}"] = envelope_with(
            "", f'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="{url}" parse="text"/>', fm=fm)
    return docs
