"""JSON log lines (MLC_LOG_FORMAT=json): correlation ids, exceptions, and no secret (issue 15)."""

from __future__ import annotations

import io
import json
import logging

from ml_connector.core.db import Database
from ml_connector.core.jsonlog import RECORD, JsonFormatter, correlate
from ml_connector.core.redact import install_log_redaction, register_secret
from tests.support.fencing import LoggingTarget, deliver, stage


def test_json_lines_carry_correlation_ids_and_no_secret() -> None:
    register_secret("Json-Log-Secret-77")
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("mlc.test.jsonlog")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    install_log_redaction()
    try:
        log.info("posted %s with Json-Log-Secret-77", "bill-1",
                 extra={"run_id": "sync:bills_to_sap:bills:incremental:g1", "flow": "bills_to_sap", "record": "b-1"})
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["message"] == "posted bill-1 with ***" and first["level"] == "INFO"
    assert (first["run_id"], first["flow"], first["record"]) == ("sync:bills_to_sap:bills:incremental:g1",
                                                                 "bills_to_sap", "b-1")
    assert first["time"].endswith("Z") and "stream" not in first
    assert second["message"] == "failed" and "ValueError: boom" in second["error"]
    assert "run_id" not in second  # not logged from a DBOS workflow, none given
    assert "Json-Log-Secret-77" not in out.getvalue()


def test_a_targets_log_line_names_the_record_being_written(tmp_path) -> None:
    db = Database(f"sqlite:///{tmp_path}/t.sqlite")
    db.migrate()
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("mlc.test.target")
    log.addHandler(handler)
    try:
        stage(db, ["b-1", "b-2"])
        with correlate(flow="f", stream="s"):
            assert deliver(db, LoggingTarget()) == {"posted": 2}
        log.warning("after the delivery")
    finally:
        log.removeHandler(handler)
        db.dispose()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(x["flow"], x["stream"], x["record"]) for x in lines[:2]] == [("f", "s", "f:b-1"), ("f", "s", "f:b-2")]
    assert "record" not in lines[2] and "flow" not in lines[2]  # the context ends with the work


def test_the_record_being_mapped_is_named_over_the_outer_context() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("mlc.test.mapping")
    log.addHandler(handler)
    try:
        with correlate(flow="f", stream="s"):
            token = RECORD.set("f:bill-9")  # as the engine's mapping loop does per record
            log.warning("no cost center")
            RECORD.reset(token)
            log.warning("page done")
    finally:
        log.removeHandler(handler)
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert (first["flow"], first["stream"], first["record"]) == ("f", "s", "f:bill-9")
    assert "record" not in second and second["flow"] == "f"
