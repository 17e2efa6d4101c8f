"""Every error that can cross a DBOS step survives pickling (DBOS stores a failed step's exception
and rebuilds it): same class, same str(), same attributes. Issue 16 item 3: RampApiError needed two
arguments, so runs showed a TypeError instead of "Ramp API 500 ..."."""

from __future__ import annotations

import pickle

import pytest

from ml_connector.core.channel import ChannelError, ChannelFault
from ml_connector.core.http import (
    CredentialRefused,
    OAuthError,
    PicklableError,
    TokenEndpointError,
    UncertainWrite,
    should_retry,
)
from ml_connector.systems.ramp.client import RampApiError, RampError, RampTransportError, RampUncertainWrite
from ml_connector.systems.sap_b1 import errors as b1
from ml_connector.systems.sap_ecc import errors as ecc
from ml_connector.systems.sap_ecc.idoc import IdocError, IdocParseError, IdocTooLarge, IdocValidationError
from ml_connector.systems.sap_ecc.idoc_sender import IdocSendError
from ml_connector.systems.sap_ecc.odata import CsrfError, ErrorDetail, GatewayError, GatewayNotFound
from ml_connector.systems.sap_ecc.posting import OutcomeUnknownError, PostingError, ReturnMessage
from ml_connector.systems.sap_ecc.table_reader import FieldValueError, TableReadError


def _permanent(err: TokenEndpointError) -> TokenEndpointError:
    err.permanent = True
    return err


SAMPLES: list[BaseException] = [
    # http / auth
    OAuthError("ramp-prod: token request failed (HTTP 500)", connection="ramp-prod", status=500),
    CredentialRefused("ramp-prod: Ramp refused the credential (HTTP 401 invalid_client: bad client)",
                      connection="ramp-prod", status=401, error="invalid_client"),
    TokenEndpointError("ramp-prod: token request to https://x/token failed: ConnectError", connection="ramp-prod"),
    UncertainWrite("POST /vendors: outcome unknown"),
    _permanent(TokenEndpointError("ramp-prod: token request to https://x/token failed (HTTP 404)",
                                  connection="ramp-prod", status=404)),
    # Ramp
    RampError("plain"),
    RampApiError(500, "DEVELOPER_5000", "internal error", {"k": [1]}, "trace-1"),
    RampApiError(400, None, "bad page size"),
    RampUncertainWrite("POST", "/accounting/vendors", "ReadTimeout", status=None),
    RampUncertainWrite("POST", "/accounting/vendors", "HTTP 502", status=502),
    RampTransportError("Ramp GET /business: ConnectError after 6 attempts"),
    # SAP Business One
    *[cls("Service Layer says no", status=400, code=-5002, lang="en-us", uncertain=cls is b1.B1CommunicationError)
      for cls in b1.ERROR_CLASSES.values()],
    # SAP ECC: RFC, Gateway OData, postings, IDocs, table reads
    *[cls("Name or password is incorrect", key="RFC_LOGON_FAILURE", msg_class="00", msg_type="E", msg_number="152",
          msg_v1="X", raw=b"<fault/>", uncertain=True) for cls in ecc.ERROR_CLASSES.values()],
    GatewayError(400, "Property Name1 invalid", code="/IWBEP/CM_MGW_RT/020", transactionid="T1",
                 details=[ErrorDetail(code="C", message="m", propertyref="Name1")], raw="{}"),
    GatewayNotFound(404, "Resource not found", code="/IWFND/MED/170"),
    CsrfError(403, "CSRF token validation failed"),
    PostingError([ReturnMessage("E", "F5", "702", "Balance in transaction currency", parameter="ACCOUNTGL",
                                row=1, field="AMT_DOCCUR")], function="BAPI_ACC_DOCUMENT_POST"),
    OutcomeUnknownError("posting of MLCX outcome unknown", bukrs="1000", xblnr="MLCX", gjahr="2026",
                        cause=ecc.CommunicationError("timeout", uncertain=True)),
    IdocError("too long", segment="E1LFA1M", field="NAME1", index=2),
    IdocParseError("not XML"),
    IdocTooLarge("over 10 MB"),
    IdocValidationError("IDOCTYP/MESTYP mismatch", segment="EDI_DC40"),
    IdocSendError(400, "IDoc rejected"),
    TableReadError("row too wide"),
    FieldValueError("BSEG", "DMBTR", "*123", "value does not fit"),
    ChannelError(ChannelFault(type="UnknownSystem", key="sap", message="no such system")),
]


@pytest.mark.parametrize("err", SAMPLES, ids=lambda e: type(e).__name__)
def test_round_trip(err: BaseException) -> None:
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err)
    assert str(back) == str(err)
    assert repr(back) == repr(err)
    assert back.args == err.args
    # every attribute (status, code, connection, ...) comes back, nested errors included
    assert set(vars(back)) == set(vars(err))
    for name, value in vars(err).items():
        got = getattr(back, name)
        if isinstance(value, BaseException):
            assert type(got) is type(value) and str(got) == str(value)
        else:
            assert got == value, name


def test_every_error_class_of_the_clients_is_sampled() -> None:
    """A new error class in these modules must be added above."""
    import inspect

    import ml_connector.core.http as http
    import ml_connector.systems.ramp.client as ramp_client
    import ml_connector.systems.sap_ecc.odata as odata

    sampled = {type(e) for e in SAMPLES}
    for mod in (http, ramp_client, b1, ecc, odata):
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == mod.__name__ \
                    and cls not in (PicklableError,) and cls.__name__ != "PermanentError":
                assert cls in sampled, f"{mod.__name__}.{cls.__name__} has no pickling sample"


def test_the_ramp_error_of_issue_16_says_its_cause_after_a_round_trip() -> None:
    err = RampApiError(500, "DEVELOPER_5000", "internal error")
    assert str(pickle.loads(pickle.dumps(err))).startswith("Ramp API 500 DEVELOPER_5000: internal error")


def test_a_refused_credential_is_not_retried_by_a_step() -> None:
    refused = CredentialRefused("c: refused", connection="c", status=401, error="invalid_client")
    assert should_retry(refused) is False
    assert should_retry(pickle.loads(pickle.dumps(refused))) is False
    assert should_retry(TokenEndpointError("c: endpoint down", connection="c")) is True
    wrong_url = _permanent(TokenEndpointError("c: HTTP 404", connection="c", status=404))
    assert should_retry(pickle.loads(pickle.dumps(wrong_url))) is False
    assert should_retry(RampApiError(500, None, "x")) is True
