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

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml_connector.systems.sap_ecc import soap
from ml_connector.systems.sap_ecc.errors import CommunicationError, RfcError
from ml_connector.systems.sap_ecc.sandbox import soap as server_soap
from ml_connector.systems.sap_ecc.sandbox.soap import SoapParseError
from tests.support.soap_fuzz import (
    ENV_NS,
    PARSERS,
    RFC_NS,
    SECRET,
    broken_envelopes,
    client_fault,
    client_response,
    envelope_with,
    envelopes,
    hostile_bodies,
    run_all,
    server_request,
    text_of,
)

FUZZ = settings(max_examples=int(os.environ.get("MLC_FUZZ_EXAMPLES", "60")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


# ---------------------------------------------------------------------------------------------
# the three parsers, each reduced to "outcome or typed error"


# ---------------------------------------------------------------------------------------------
# strategies


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


def test_entities_are_never_resolved(secret_file: Path) -> None:
    for name, body in hostile_bodies(secret_file).items():
        outcomes = run_all(body)
        for (parser, _), outcome in zip(PARSERS, outcomes, strict=True):
            assert SECRET not in text_of(outcome), f"{parser} resolved an external resource for {name}"
            assert "lollollol" not in text_of(outcome), f"{parser} expanded an entity bomb for {name}"
        resp, _fault, req = outcomes
        if "DOCTYPE" in body.decode():  # SOAP forbids DTDs: refused outright
            assert isinstance(resp, CommunicationError) and isinstance(req, SoapParseError), name


def test_dtd_is_refused_even_without_a_name(secret_file: Path) -> None:
    body = envelope_with("<!DOCTYPE SOAP-ENV:Envelope>", "x", fm="RFC_READ_TABLE")
    assert isinstance(server_request(body), SoapParseError)
    assert isinstance(client_response(body.replace(b"RFC_READ_TABLE", b"RFC_READ_TABLE.Response")),
                      CommunicationError)


@pytest.mark.parametrize("depth", [100, 255, 300, 5000, 100_000])
def test_huge_depth_is_a_typed_error_not_a_crash(depth: int) -> None:
    nested = "<x>" * depth + "v" + "</x>" * depth
    body = envelope_with("", nested)
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
