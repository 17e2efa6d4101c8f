"""Which records wait for approval (core/approval.py): a flow's rule by stream and company code (the
target's scope of the payload), and the configuration's check of the rule's streams."""

from __future__ import annotations

from typing import Any

import pytest

from ml_connector.config import ConfigError, FlowConfig, example_config, parse_config
from ml_connector.core import approval
from ml_connector.core.flow import Source, Stream, Target
from ml_connector.core.ledger import Parked


class ScopedTarget(Target):
    def scope(self, payload: dict[str, Any]) -> str | None:
        if "broken" in payload:
            raise ValueError("cannot read")
        return payload.get("bukrs")


def _flow(rule: dict[str, Any] | None) -> FlowConfig:
    return FlowConfig.model_validate({"pair": "p", "source": "a", "target": "b", "streams": ["bills", "status"],
                                      **({"approval": rule} if rule is not None else {})})


def test_rule_by_stream_and_company_code() -> None:
    t = ScopedTarget()
    assert not approval.applies(_flow(None), "bills", t, {"bukrs": "1000"})
    every = _flow({})
    assert approval.applies(every, "bills", t, {}) and approval.applies(every, "status", t, {})
    rule = _flow({"streams": ["bills"], "company_codes": ["1000"]})
    assert approval.applies(rule, "bills", t, {"bukrs": "1000"})
    assert not approval.applies(rule, "bills", t, {"bukrs": "2000"})
    assert not approval.applies(rule, "status", t, {"bukrs": "1000"})
    # a payload whose company code cannot be told waits: a person looks at it first
    assert approval.applies(rule, "bills", t, {}) and approval.applies(rule, "bills", t, {"broken": 1})


def test_hold_stages_only_pending_writes_that_wait() -> None:
    rule = _flow({"company_codes": ["1000"]})
    stream = Stream("bills", Source(), lambda ctx, k, r: Parked(k, "x"), ScopedTarget())
    rows = [{"op": "create", "payload": {"bukrs": "1000"}}, {"op": "create", "payload": {"bukrs": "2000"}},
            {"op": "deactivate", "payload": {"bukrs": "1000"}},
            {"op": "create", "payload": {"bukrs": "1000"}, "state": "parked"}]
    approval.hold(rule, stream, rows)
    assert [r.get("state") for r in rows] == ["approval", None, None, "parked"]


def test_approval_streams_must_be_streams_of_the_flow() -> None:
    text = example_config("http://127.0.0.1:9", "http://127.0.0.1:9").replace(
        "  bills_to_sap:\n", "  bills_to_sap:\n    approval: {streams: [bill], company_codes: ['1000']}\n", 1)
    with pytest.raises(ConfigError, match=r"approval\.streams names bill, not a stream of this flow"):
        parse_config(text)
