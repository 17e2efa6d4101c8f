"""The Marketing Cloud API call meter: per-day counts shared by the processes of an installation."""

from __future__ import annotations

from ml_connector.systems.sfmc.meter import ApiMeter


def test_calls_of_several_processes_add_up_against_the_yearly_allowance(tmp_path):
    path = tmp_path / "sfmc" / "mc-api-calls.json"
    a, b = ApiMeter(path, 2_000_000, flush_every=10), ApiMeter(path, 2_000_000, flush_every=10)
    for _ in range(25):
        a.add()
    for _ in range(7):
        b.add()
    a.flush()
    b.flush()
    burn = a.burn()
    assert burn.used_this_year == 32 and a.total == 25 and b.total == 7
    assert burn.per_day_7d == 32 / 7 and burn.projected_year == int(32 / 7 * 365)
    assert "32 API calls this year of 2,000,000" in burn.text()
