"""The scheduled full comparison of the SAP ECC → Marketing Cloud flow (`options.full`): a DBOS
schedule of its own beside the flow's `schedule`, at night by default, validated at load; a missed
one caught up at start and by the hourly re-check; a large one kept out of business hours
(`options.business_hours`, `large_extract`), with the clock injected."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ml_connector.config import ConfigError, load_config
from ml_connector.core import engine
from ml_connector.core.flow import RunDeferred
from ml_connector.core.models import RunRow
from ml_connector.core.runtime import Runtime
from ml_connector.flows.sap_ecc_sfmc import BusinessHours
from tests.support.sfmc import sfmc_config

MC = {"auth_base": "http://127.0.0.1:9/", "client_id": "cid", "account_id": "1"}


def entries(tmp_path, options: str) -> dict[str, dict]:
    path = tmp_path / "ml-connector.yaml"
    path.write_text(sfmc_config("http://127.0.0.1:8", MC, options=options), encoding="utf-8")
    rt = Runtime(load_config(path), path)
    try:
        return {e["schedule_name"]: e for e in engine.schedule_entries(rt)}
    finally:
        rt.close()


def test_the_full_comparison_runs_at_night_by_default(tmp_path):
    got = entries(tmp_path, "      page_size: 1000\n")
    assert set(got) == {"mlc:customers_to_sfmc", "mlc:customers_to_sfmc:full", "mlc:customers_to_sfmc:full:catch-up"}
    full = got["mlc:customers_to_sfmc:full"]
    catch_up = got["mlc:customers_to_sfmc:full:catch-up"]  # a missed or deferred night is re-checked hourly
    assert (catch_up["schedule"], catch_up["context"]) == ("0 0 * * * *", {"flow": "customers_to_sfmc",
                                                                           "schedule": "full"})
    assert full["schedule"] == "0 0 2 * * *" and "cron_timezone" not in full
    assert full["context"] == {"flow": "customers_to_sfmc", "streams": ["customers", "hierarchy"],
                               "interval": None, "mode": "full"}
    assert got["mlc:customers_to_sfmc"]["context"].get("mode") is None  # the IDoc-driven runs stay incremental


def test_the_full_comparison_can_be_moved_narrowed_or_switched_off(tmp_path):
    got = entries(tmp_path, '      full: {cron: "30 1 * * 6", timezone: Europe/Berlin, streams: [customers]}\n')
    full = got["mlc:customers_to_sfmc:full"]
    assert (full["schedule"], full["cron_timezone"], full["context"]["streams"]) == \
        ("0 30 1 * * 6", "Europe/Berlin", ["customers"])
    assert set(entries(tmp_path, "      full: null\n")) == {"mlc:customers_to_sfmc"}


@pytest.mark.parametrize(("options", "field"), [
    ('      full: {cron: "at night"}\n', "full.cron"),
    ("      full: {streams: [customer]}\n", "full.streams"),
    ("      full: {cron: '0 2 * * *', at: 2}\n", "full.at"),
])
def test_a_bad_full_comparison_schedule_is_refused_at_load(tmp_path, options, field):
    path = tmp_path / "ml-connector.yaml"
    path.write_text(sfmc_config("http://127.0.0.1:8", MC, options=options), encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert field in str(exc.value)


# Monday 2026-12-07: 12:00 UTC is within the default business hours (Mon-Fri 08:00-18:00 UTC), 19:00 is not.
MONDAY_NOON = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
MONDAY_EVENING = datetime(2026, 12, 7, 19, 0, tzinfo=UTC)
FLOW = "customers_to_sfmc"


@pytest.fixture
def rt(tmp_path) -> Iterator[Runtime]:
    path = tmp_path / "ml-connector.yaml"
    path.write_text(sfmc_config("http://127.0.0.1:8", MC, options="      large_extract: 1000\n"), encoding="utf-8")
    r = Runtime(load_config(path), path)
    r.db.migrate()
    yield r
    r.close()


def add_run(rt: Runtime, stream: str, started: datetime, *, mode: str = "full", read: int = 0) -> None:
    with rt.db.session() as s:
        s.add(RunRow(run_id=f"sync:{FLOW}:{stream}:{mode}:{started.isoformat()}", flow=FLOW, stream=stream,
                     mode=mode, status="succeeded", counts={"read": read}, started_at=started))


def test_business_hours_in_their_time_zone():
    hours = BusinessHours(start="08:00", end="18:00", timezone="Europe/Berlin")
    assert hours.contains(datetime(2026, 12, 7, 7, 0, tzinfo=UTC))        # 08:00 in Berlin
    assert not hours.contains(datetime(2026, 12, 7, 6, 59, tzinfo=UTC))
    assert not hours.contains(datetime(2026, 12, 7, 17, 0, tzinfo=UTC))   # 18:00 in Berlin: closed
    assert not hours.contains(datetime(2026, 12, 12, 10, 0, tzinfo=UTC))  # Saturday
    with pytest.raises(ValueError, match="unknown day"):
        BusinessHours(days=("monday",))


def test_a_large_full_comparison_waits_out_business_hours_and_idocs_do_not(rt):
    f = rt.flow(FLOW)
    assert f.defer_reason("customers", "full", MONDAY_NOON) is None  # a first load: the operator's call
    add_run(rt, "customers", MONDAY_NOON - timedelta(days=3), read=6000)
    add_run(rt, "hierarchy", MONDAY_NOON - timedelta(days=3), read=800)
    reason = f.defer_reason("customers", "full", MONDAY_NOON)
    assert reason and "6000" in reason and "mon/tue/wed/thu/fri 08:00-18:00 UTC" in reason and "--force" in reason
    assert f.defer_reason("customers", "full", MONDAY_EVENING) is None
    assert f.defer_reason("customers", "incremental", MONDAY_NOON) is None  # IDoc-driven runs always flow
    assert f.defer_reason("hierarchy", "full", MONDAY_NOON) is None  # 800 <= large_extract 1000
    assert f.defer_reason("orders", "full", MONDAY_NOON) is None  # no SAP table read


def test_a_missed_nightly_comparison_is_caught_up_at_start_or_after_business_hours(rt, monkeypatch):
    enqueued: list[tuple[Any, ...]] = []
    monkeypatch.setattr(engine, "_enqueue_scheduled", lambda *a: enqueued.append(a))
    night = "20261207T020000Z"  # the latest 02:00 before both clocks
    add_run(rt, "customers", MONDAY_NOON - timedelta(days=3), read=6000)             # large, nights ago
    add_run(rt, "hierarchy", MONDAY_NOON - timedelta(days=3), read=100)              # small, nights ago
    add_run(rt, "orders", MONDAY_NOON - timedelta(days=3), mode="incremental")       # not in the schedule
    # At noon only the small one starts now; the large one waits (no run, no failure).
    assert engine.catch_up_flow_schedules(rt, MONDAY_NOON) == [f"{FLOW}:hierarchy:full:{night}"]
    assert enqueued == [(FLOW, "hierarchy", night, "full")]
    # The hourly re-check after 18:00 starts the large one, under the ID of that night's tick.
    enqueued.clear()
    add_run(rt, "hierarchy", MONDAY_NOON, read=100)
    assert engine.catch_up_flow_schedules(rt, MONDAY_EVENING, only=(FLOW, "full")) == \
        [f"{FLOW}:customers:full:{night}"]
    assert enqueued == [(FLOW, "customers", night, "full")]
    # Once it ran, nothing is due until the next night; a worker's start (catch_up_cron) agrees.
    enqueued.clear()
    add_run(rt, "customers", MONDAY_EVENING, read=6000)
    assert engine.catch_up_cron(rt, MONDAY_EVENING + timedelta(minutes=5)) == [] and enqueued == []


def test_a_stream_that_first_ran_after_the_night_waits_for_the_next(rt, monkeypatch):
    enqueued: list[tuple[Any, ...]] = []
    monkeypatch.setattr(engine, "_enqueue_scheduled", lambda *a: enqueued.append(a))
    add_run(rt, "customers", MONDAY_NOON - timedelta(hours=1), mode="incremental")
    assert engine.catch_up_flow_schedules(rt, MONDAY_EVENING) == [] and enqueued == []
    later = MONDAY_EVENING + timedelta(days=1)  # Tuesday 19:00: Tuesday's 02:00 was missed
    assert engine.catch_up_flow_schedules(rt, later) == [f"{FLOW}:customers:full:20261208T020000Z"]


def test_a_manual_large_full_comparison_in_business_hours_is_refused_unless_forced(tmp_path, monkeypatch):
    path = tmp_path / "ml-connector.yaml"
    around_the_clock = "{start: '00:00', end: '24:00', days: [mon, tue, wed, thu, fri, sat, sun]}"
    path.write_text(sfmc_config("http://127.0.0.1:8", MC, options=f"      business_hours: {around_the_clock}\n"),
                    encoding="utf-8")
    rt = Runtime(load_config(path), path)
    rt.db.migrate()
    try:
        enqueued: list[tuple[Any, ...]] = []
        monkeypatch.setattr(engine, "runtime", lambda: rt)
        monkeypatch.setattr(engine, "_enqueue", lambda *a, **kw: enqueued.append(a))
        add_run(rt, "customers", datetime.now(UTC) - timedelta(days=1), read=6000)
        with pytest.raises(RunDeferred, match="large_extract 5000"):
            engine.start_sync(FLOW, "customers", full=True)
        assert enqueued == []
        engine.start_sync(FLOW, "customers")  # incremental (IDoc-driven) runs are never held back
        engine.start_sync(FLOW, "customers", full=True, force=True)
        assert [a[3:] for a in enqueued] == [(FLOW, "customers", "incremental"), (FLOW, "customers", "full")]
    finally:
        rt.close()
