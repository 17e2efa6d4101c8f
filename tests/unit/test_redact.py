from __future__ import annotations

import hashlib
import io
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ml_connector.core.db import Database
from ml_connector.core.redact import MASK, digest, install_log_redaction, redact, register_secret
from ml_connector.core.vault import MasterKey, Vault


def test_registered_value_is_masked() -> None:
    register_secret("reg1stered-Value")
    assert redact("x reg1stered-Value y reg1stered-Value") == f"x {MASK} y {MASK}"
    # case-sensitive for known values: another string is left alone
    assert redact("REG1STERED-VALUE") == "REG1STERED-VALUE"


def test_regex_rebuilt_when_registry_changes() -> None:
    assert redact("later-added-secret") == "later-added-secret"
    register_secret("later-added-secret")
    assert redact("later-added-secret") == MASK


def test_special_characters_in_values() -> None:
    register_secret("a.b*c(d)[e]+$^")
    assert redact("pw=a.b*c(d)[e]+$^!") .startswith("pw=")
    assert "a.b*c(d)[e]+$^" not in redact("value a.b*c(d)[e]+$^ end")


def test_longest_value_wins() -> None:
    register_secret("prefix-secret")
    register_secret("prefix-secret-longer")
    assert redact("prefix-secret-longer") == MASK


def test_short_values_not_registered() -> None:
    register_secret("abc")
    assert redact("abc abcd") == "abc abcd"


def test_vault_get_registers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLC_MASTER_KEY", raising=False)
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.migrate()
    key = MasterKey.load(tmp_path)
    Vault(db, key).set("pw", "vault-value-42")
    assert Vault(db, key).get("pw") == "vault-value-42"
    assert redact("connecting with vault-value-42") == f"connecting with {MASK}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer eyJabc.def-ghi", "Authorization: Bearer ***"),
        ("authorization: basic dXNlcjpwYXNzd29yZA==", "authorization: basic ***"),
        ("{'Authorization': 'Basic dXNlcjpwYXNz'}", "{'Authorization': 'Basic ***'}"),
        ('{"Authorization": "Bearer tok123456"}', '{"Authorization": "Bearer ***"}'),
        ("sent Bearer abcdefgh12345678 to ramp", "sent Bearer *** to ramp"),
        ('{"access_token": "xyz", "token_type": "Bearer", "expires_in": 3600}',
         '{"access_token": "***", "token_type": "Bearer", "expires_in": 3600}'),
        ('{"client_secret":"s\\"ecret","client_id":"abc"}', '{"client_secret":"***","client_id":"abc"}'),
        ("{'password': 'hunter2', 'user': 'u'}", "{'password': '***', 'user': 'u'}"),
        ("grant_type=client_credentials&client_secret=abc123&scope=a",
         "grant_type=client_credentials&client_secret=***&scope=a"),
        ("GET /x?access_token=abc&x=1", "GET /x?access_token=***&x=1"),
        ("password=pw1 user=u", "password=*** user=u"),
        ("<urn:Password>pw</urn:Password>", "<urn:Password>***</urn:Password>"),
        ("token_type=bearer client_id=ramp", "token_type=bearer client_id=ramp"),
        ("Basic authentication is configured", "Basic authentication is configured"),
        ("nothing to see here", "nothing to see here"),
    ],
)
def test_patterns(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_digest() -> None:
    assert digest(b"abc") == hashlib.sha256(b"abc").hexdigest()
    assert digest("abc") == digest(b"abc")
    assert len(digest("")) == 64


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    flt = install_log_redaction()
    try:
        yield logging.getLogger("ml_connector.test.child"), stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        # leave logging as other tests expect it
        for lg in [root, *logging.Logger.manager.loggerDict.values()]:
            if isinstance(lg, logging.Logger):
                lg.removeFilter(flt)
                for h in lg.handlers:
                    h.removeFilter(flt)


def test_log_filter_masks_child_logger_records(captured: tuple[logging.Logger, io.StringIO]) -> None:
    log, stream = captured
    register_secret("log-secret-value")
    log.info("calling with %s and header %s", "log-secret-value", "Authorization: Bearer abcdefgh123")
    out = stream.getvalue()
    assert "log-secret-value" not in out and "abcdefgh123" not in out
    assert f"calling with {MASK} and header Authorization: Bearer {MASK}" in out


def test_log_filter_masks_tracebacks(captured: tuple[logging.Logger, io.StringIO]) -> None:
    log, stream = captured
    register_secret("trace-secret-value")
    try:
        raise RuntimeError("failed with trace-secret-value")
    except RuntimeError:
        log.exception("boom")
    out = stream.getvalue()
    assert "RuntimeError" in out and "trace-secret-value" not in out


def test_install_is_idempotent(captured: tuple[logging.Logger, io.StringIO]) -> None:
    f1 = install_log_redaction()
    f2 = install_log_redaction()
    assert f1 is f2
    assert logging.getLogger().filters.count(f1) == 1
    for h in logging.getLogger().handlers:
        assert h.filters.count(f1) == 1


def test_redact_is_fast_with_many_values() -> None:
    for i in range(500):
        register_secret(f"bulk-secret-{i:04d}-value")
    text = "ordinary log line with some words and numbers 12345 " * 20
    redact(text)  # build the regex
    start = time.perf_counter()
    for _ in range(200):
        redact(text)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, elapsed
    assert redact("bulk-secret-0420-value") == MASK


def test_handlers_added_later_by_a_library_are_covered_on_reinstall() -> None:
    """DBOS configures a 'dbos' logger with its own handler and propagate=False after our CLI
    installed the filter: installing again (engine.start does) covers that handler too."""
    register_secret("Lib-Logged-Secret-77")
    install_log_redaction()
    lib = logging.getLogger("mlc-test-library")
    lib.propagate = False
    buf = io.StringIO()
    lib.addHandler(logging.StreamHandler(buf))
    lib.warning("connecting with Lib-Logged-Secret-77")
    assert "Lib-Logged-Secret-77" in buf.getvalue()  # the gap: a handler added after install
    install_log_redaction()
    lib.warning("again with Lib-Logged-Secret-77")
    assert buf.getvalue().splitlines()[-1] == "again with ***"
