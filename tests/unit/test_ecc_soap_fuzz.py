"""Fuzzing the SOAP-RFC parsers with malformed and hostile input (issue 4, "Tests").

Parsers under test:
- the client's `soap.parse_response` and `soap.parse_fault` (replies are untrusted);
- the sandbox's `sandbox.soap.parse_request` (requests are untrusted).

Whatever the input (random bytes, well-formed envelopes broken at a random point, entity bombs,
external entities, absurd nesting), the outcome is a typed error — `RfcError` (normally
`CommunicationError`) on the client, `SoapParseError` in the sandbox — or a normal result. Never a
crash, never another exception type, and never a byte of an external resource in the output.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml_connector.systems.sap_ecc import soap
from ml_connector.systems.sap_ecc.errors import CommunicationError, RfcError
from ml_connector.systems.sap_ecc.sandbox import soap as server_soap
from ml_connector.systems.sap_ecc.sandbox.soap import SoapParseError

RFC_NS = soap.RFC_NS
ENV_NS = soap.SOAP_ENV_NS
FUZZ = settings(max_examples=int(os.environ.get("MLC_FUZZ_EXAMPLES", "60")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
SECRET = "MLC-XXE-CANARY-7f3a9c"


# ---------------------------------------------------------------------------------------------
# the three parsers, each reduced to "outcome or typed error"


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


# ---------------------------------------------------------------------------------------------
# strategies

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


# ---------------------------------------------------------------------------------------------
# properties


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes_give_typed_errors(body: bytes) -> None:
    resp, fault, req = run_all(body)
    assert isinstance(resp, CommunicationError)  # never a successful parse of garbage
    assert isinstance(fault, RfcError)
    assert isinstance(req, SoapParseError)


@FUZZ
@given(st.binary(max_size=64).map(lambda b: b"<?xml version=\"1.0\"?><SOAP-ENV:Envelope " + b))
def test_random_tails_after_a_plausible_start(body: bytes) -> None:
    run_all(body)


@FUZZ
@given(envelopes())
def test_well_formed_envelopes_parse_or_fail_typed(body: bytes) -> None:
    resp, fault, req = run_all(body)
    if b"RFC_READ_TABLE.Response" in body:
        assert isinstance(resp, dict)
    if b"<SOAP-ENV:Fault>" in body:  # a well-formed fault is never mistaken for a broken reply
        assert fault.key and not isinstance(fault, CommunicationError)
    if b":RFC_READ_TABLE xmlns" in body:
        assert isinstance(req, server_soap.RfcRequest) and req.function == "RFC_READ_TABLE"


@FUZZ
@given(broken_envelopes())
def test_broken_envelopes_give_typed_errors(body: bytes) -> None:
    run_all(body)


@FUZZ
@given(st.text(max_size=200))
def test_random_text_in_any_encoding(text: str) -> None:
    for enc in ("utf-8", "utf-16", "latin-1"):
        try:
            raw = text.encode(enc)
        except UnicodeEncodeError:
            continue
        run_all(raw)
        run_all(f'<?xml version="1.0" encoding="{enc}"?>'.encode() + raw)


@FUZZ
@given(st.text(alphabet="0123456789-:T ", max_size=12))
def test_date_normalisation_only_touches_iso_dates(value: str) -> None:
    out = soap.normalize_date(value)
    if len(value) == 10 and value[4] == value[7] == "-" and (value[:4] + value[5:7] + value[8:]).isdigit():
        assert out == value.replace("-", "")
    else:
        assert out == value


# ---------------------------------------------------------------------------------------------
# entities and depth


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("xxe") / "secret.txt"
    path.write_text(SECRET)
    return path


def _envelope_with(prolog: str, value: str, *, fm: str = "RFC_READ_TABLE.Response") -> bytes:
    return (f'<?xml version="1.0"?>{prolog}<SOAP-ENV:Envelope xmlns:SOAP-ENV="{ENV_NS}"><SOAP-ENV:Body>'
            f'<rfc:{fm} xmlns:rfc="{RFC_NS}"><QUERY_TABLE>{value}</QUERY_TABLE><faultstring>{value}</faultstring>'
            f"</rfc:{fm}></SOAP-ENV:Body></SOAP-ENV:Envelope>").encode()


def _hostile(secret_file: Path) -> dict[str, bytes]:
    url = secret_file.as_uri()
    lol = '<!ENTITY lol "lololololololololololololololololololololololololololololololololololol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10))
    docs: dict[str, bytes] = {}
    for fm in ("RFC_READ_TABLE.Response", "RFC_READ_TABLE"):
        tag = "resp" if fm.endswith("Response") else "req"
        docs[f"billion_laughs_{tag}"] = _envelope_with(f"<!DOCTYPE SOAP-ENV:Envelope [{lol}]>", "&lol9;", fm=fm)
        docs[f"external_entity_{tag}"] = _envelope_with(
            f'<!DOCTYPE SOAP-ENV:Envelope [<!ENTITY xxe SYSTEM "{url}">]>', "&xxe;", fm=fm)
        docs[f"parameter_entity_{tag}"] = _envelope_with(
            f'<!DOCTYPE SOAP-ENV:Envelope [<!ENTITY % p SYSTEM "{url}"> %p;]>', "x", fm=fm)
        docs[f"external_dtd_{tag}"] = _envelope_with(f'<!DOCTYPE SOAP-ENV:Envelope SYSTEM "{url}">', "x", fm=fm)
        docs[f"undeclared_entity_{tag}"] = _envelope_with("", "&xxe;", fm=fm)
        docs[f"xinclude_{tag}"] = _envelope_with(
            "", f'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="{url}" parse="text"/>', fm=fm)
    return docs


def test_entities_are_never_resolved(secret_file: Path) -> None:
    for name, body in _hostile(secret_file).items():
        outcomes = run_all(body)
        for (parser, _), outcome in zip(PARSERS, outcomes, strict=True):
            assert SECRET not in text_of(outcome), f"{parser} resolved an external resource for {name}"
            assert "lollollol" not in text_of(outcome), f"{parser} expanded an entity bomb for {name}"
        resp, _fault, req = outcomes
        if "DOCTYPE" in body.decode():  # SOAP forbids DTDs: refused outright
            assert isinstance(resp, CommunicationError) and isinstance(req, SoapParseError), name


def test_dtd_is_refused_even_without_a_name(secret_file: Path) -> None:
    body = _envelope_with("<!DOCTYPE SOAP-ENV:Envelope>", "x", fm="RFC_READ_TABLE")
    assert isinstance(server_request(body), SoapParseError)
    assert isinstance(client_response(body.replace(b"RFC_READ_TABLE", b"RFC_READ_TABLE.Response")),
                      CommunicationError)


@pytest.mark.parametrize("depth", [100, 255, 300, 5000, 100_000])
def test_huge_depth_is_a_typed_error_not_a_crash(depth: int) -> None:
    nested = "<x>" * depth + "v" + "</x>" * depth
    body = _envelope_with("", nested)
    resp, fault, req = run_all(body)
    assert isinstance(fault, RfcError)
    if depth >= 300:  # beyond libxml2's default depth limit: refused, never a RecursionError
        assert isinstance(resp, CommunicationError) and isinstance(req, SoapParseError)


def test_unclosed_depth_bomb() -> None:
    run_all(b"<a>" * 200_000)


def test_fault_with_empty_exception_name_still_has_a_key() -> None:
    body = (f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{ENV_NS}"><SOAP-ENV:Body><SOAP-ENV:Fault><faultcode/>'
            f'<faultstring/><detail><rfc:X.Exception xmlns:rfc="{RFC_NS}"><Name/></rfc:X.Exception></detail>'
            "</SOAP-ENV:Fault></SOAP-ENV:Body></SOAP-ENV:Envelope>").encode()
    err = client_fault(body)
    assert err.key and err.message
