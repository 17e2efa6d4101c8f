"""What the SAP ECC emulator counts of the load it feels: the most calls in any sliding
1-second window and the most in flight at once (bench scenario 6 reports them against the cap)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from ml_connector.systems.sap_ecc.sandbox.app import EccSandbox, PeakWindow, SandboxStats, create_app

AUTH = ("RFC_USER", "Sandbox-1234")


def test_window_counts_calls_within_one_second_of_each_other():
    w = PeakWindow(1.0)
    # 4 calls/s, evenly spaced (binary fractions: exact times): never more than 4 in any second.
    for i in range(30):
        w.add(i * 0.25)
    assert w.peak == 4
    # Two bursts of 4 straddling t = 11: the window (10.375, 11.375] holds all eight, although
    # each whole second, [10, 11) and [11, 12), holds four (what calls / wall time cannot see).
    for t in (10.5, 10.625, 10.75, 10.875, 11.0, 11.125, 11.25, 11.375):
        w.add(t)
    assert w.peak == 8 and w.peak_at == 11.375


def test_window_is_half_open():
    w = PeakWindow(1.0)
    assert [w.add(t) for t in (0.0, 0.5, 1.0, 1.5, 1.999, 2.0)] == [1, 2, 2, 2, 3, 3]
    assert w.peak == 3 and w.peak_at == 1.999


def test_stats_count_peaks_with_an_injected_clock():
    now = [100.0]
    stats = SandboxStats(clock=lambda: now[0])
    for t in (100.0, 100.2, 100.4):
        now[0] = t
        stats.started()
    assert stats.in_flight == 3 and stats.peak_in_flight == 3
    stats.in_flight -= 3
    for t in (101.3, 101.35):  # 100.4, 101.3, 101.35 are within one second
        now[0] = t
        stats.started()
        stats.in_flight -= 1
    d = stats.to_dict()
    assert (d["peak_per_second"], d["peak_in_flight"], d["peak_window_seconds"]) == (3, 3, 1.0)
    now[0] = 101.39  # 100.4, 101.3, 101.35, 101.39
    stats.started()
    assert stats.to_dict()["peak_per_second"] == 4


def test_emulator_reports_the_window_peak_of_its_rfc_calls():
    state = EccSandbox(vendors=5, seed=1)
    now = [0.0]
    state.stats = SandboxStats(clock=lambda: now[0])
    body = ('<?xml version="1.0" encoding="utf-8"?><soapenv:Envelope '
            'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns:urn="urn:sap-com:document:sap:rfc:functions"><soapenv:Body>'
            '<urn:RFC_PING/></soapenv:Body></soapenv:Envelope>')
    with TestClient(create_app(state)) as http:
        for t in (0.0, 0.5, 0.95, 1.2, 2.5):
            now[0] = t
            r = http.post("/sap/bc/soap/rfc?sap-client=100", content=body, auth=AUTH,
                          headers={"content-type": "text/xml"})
            assert r.status_code == 200, r.text
        stats = http.get("/_sandbox/stats").json()
    assert stats["calls"] == {"RFC_PING": 5}
    assert stats["peak_per_second"] == 3  # 0.0, 0.5, 0.95 (and 0.5, 0.95, 1.2)
    assert stats["peak_in_flight"] == 1 and stats["in_flight"] == 0
