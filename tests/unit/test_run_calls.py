"""The calls a run makes (core/calls.py): counted on the step's thread only while counting, named after
the connection whose URL has the host."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from ml_connector.core import calls


def test_counting_notes_calls_of_this_thread_only() -> None:
    calls.note("nobody-counts")  # outside a step: ignored
    with calls.counting() as tally:
        calls.note("127.0.0.1:8001")
        calls.note("127.0.0.1:8001", 2)
        calls.note("sap_ecc")
        t = threading.Thread(target=calls.note, args=("other-thread",))
        t.start()
        t.join()
    calls.note("127.0.0.1:8001")
    assert dict(tally) == {"127.0.0.1:8001": 3, "sap_ecc": 1}


def test_totals_name_hosts_after_their_connections() -> None:
    conns = {"ramp": SimpleNamespace(model_dump=lambda: {"base_url": "http://127.0.0.1:8001/developer/v1",
                                                         "auth": {"token_url": "http://user@127.0.0.1:8002/t"}}),
             "erp": SimpleNamespace(model_dump=lambda: {"url": "https://erp.example:8443/sap", "n": 3})}
    events = [SimpleNamespace(detail={"step": "page", "calls": {"127.0.0.1:8001": 2, "127.0.0.1:8002": 1}}),
              SimpleNamespace(detail={"step": "deliver", "calls": {"erp.example:8443": 4, "site-agent": 1}})]
    assert calls.totals(events, conns) == {"erp": 4, "ramp": 3, "site-agent": 1}
