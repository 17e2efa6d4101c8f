"""The durable engine: DBOS workflows, steps, queues and schedules.

How a record travels (see shared architecture.md):
1. A schedule, the API or `sync` starts `sync_workflow` with a deterministic ID
   naming the flow, stream and window, so a duplicated trigger is the same run.
2. `_page_step` reads one page from the source and, in ONE transaction, plans
   the changes against the ledger, stores them in the outbox and advances the
   cursor. The cursor lives in the domain database, so a re-executed step
   continues where the committed state says, never from a stale argument.
3. Each page's outbox batch is delivered by `deliver_workflow`, enqueued on the
   target connection's queue (concurrency and rate from the provider's facts),
   so reads of the next page overlap with writes of this one.
4. At the end, batches left open by a crash are swept and delivered, and the
   run's counts are computed from the outbox.

Who runs DBOS: on SQLite one process per database, the holder of its worker lock
(`start`, `connect`); a command started beside it enqueues its workflow through the
DBOS client with the same deterministic ID and follows it (`connect` in client mode).
On Postgres every process launches DBOS with its own executor id.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dbos import DBOS, DBOSClient, EnqueueOptions, Queue, SetEnqueueOptions, SetWorkflowID
from sqlalchemy import and_, func, or_, select, update

from ml_connector import __version__
from ml_connector.core import approval, audit, calls, flow_pause, jsonlog, killpoints, ledger, outbox, worker_lock
from ml_connector.core.alerts import Alert, Alerter
from ml_connector.core.db import dbos_url, in_chunks, is_sqlite
from ml_connector.core.flow import Outcome, RunContext, RunDeferred, Stream, load_pair
from ml_connector.core.http import should_retry
from ml_connector.core.models import OutboxRow, RunRow, utcnow
from ml_connector.core.redact import install_log_redaction, redact
from ml_connector.core.runtime import Runtime
from ml_connector.core.worker_lock import WorkerBusy, WorkerLock

log = logging.getLogger(__name__)

APP_NAME = "ml-connector"
SYNC_QUEUE = "mlc-sync"
REPLAY_QUEUE = "mlc-replay"
# Registered workflow names: a client process enqueues by name (it runs no workflow code).
SYNC_WORKFLOW = "mlc.sync"
REPLAY_WORKFLOW = "mlc.replay"
WORKER_READY_TIMEOUT = 60.0  # seconds a command waits for a worker that is still launching
MAX_PAGES_AHEAD = 2  # staged pages whose delivery has not finished, per run
ENDED = RunRow.ENDED


def _retry_interval(seconds: float) -> float:
    """A step's first wait before it is retried, times $MLC_STEP_RETRY_SCALE (default 1). DBOS waits
    between a step's attempts with a real sleep, fixed when the step is declared: the scale is how a
    test suite runs the same attempts without sleeping through minutes of backoff."""
    try:
        scale = float(os.environ.get("MLC_STEP_RETRY_SCALE", "1"))
    except ValueError:
        scale = 1.0
    return seconds * scale if scale > 0 else seconds


# How often the sync workflow checks whether a page's delivery has finished (DBOS polls the
# database for a queued workflow's result; its default, 1 s, left reading idle for up to a
# second at each back-pressure wait and at the end of every run).
RESULT_POLL = 0.05
# Operator replays are not latency-sensitive: their queue is polled at most once a second
# (each poll of a queue is a few queries, whether it holds work or not).
REPLAY_POLLING_INTERVAL = 1.0
# Outcomes of a lookup (recovery of writes in doubt) recorded per this many, as the target finds them.
LOOKUP_FLUSH = 50
LOOKUP_FLUSH_SECONDS = 0.5  # ... and at least this often while a lookup finds records
_RT: Runtime | None = None
_QUEUES: dict[str, Queue] = {}
_polling_interval = 0.2
_launched = False
_LOCKS: dict[Path, WorkerLock] = {}
_CLIENT: DBOSClient | None = None  # set when another process is this database's worker
_client_role = ""


def runtime() -> Runtime:
    if _RT is None:
        raise RuntimeError("the engine is not configured: call engine.start(runtime) first")
    return _RT


def default_executor_id(database_url: str) -> str:
    # SQLite has one worker process (see worker_lock): a stable id lets a restarted worker recover its runs.
    if is_sqlite(database_url):
        return "local"
    return os.environ.get("MLC_WORKER_ID") or f"{socket.gethostname()}-{os.getpid()}"


def start(rt: Runtime, *, executor_id: str | None = None, schedules: bool = False,
          polling_interval: float | None = None, role: str = "run") -> None:
    """Launch DBOS in this process as the database's worker; register queues (and schedules).

    On SQLite this takes the database's worker lock first and raises `WorkerBusy`
    (naming the lock file and the holder's pid) when another process holds it.
    """
    lock = _worker_lock(rt)
    if lock is not None and not lock.try_acquire(role):
        raise WorkerBusy(lock.path, lock.holder())
    _launch(rt, executor_id=executor_id, schedules=schedules, polling_interval=polling_interval)


def connect(rt: Runtime, *, role: str) -> str:
    """Get ready to run work for a one-off command (`sync`, `replay`, `mappings set`).

    Returns "executor" when this process launched DBOS itself (Postgres always; SQLite
    when no worker holds the database's lock, which this process then takes), or
    "worker:<pid>" when a worker already runs on this SQLite database: then no executor
    is launched here, and `start_sync`/`replay` enqueue the work for that worker
    through the DBOS client and `wait` follows it from here.
    """
    global _RT, _CLIENT, _client_role
    lock = _worker_lock(rt)
    deadline = time.monotonic() + WORKER_READY_TIMEOUT
    while True:
        if lock is None or lock.try_acquire(role):
            _launch(rt)
            return "executor"
        holder = lock.holder()
        # A worker that has just taken the lock may still be creating DBOS's tables.
        if holder.ready or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    _RT = rt
    _client_role = role
    _CLIENT = DBOSClient(system_database_url=dbos_url(rt.database_url), application_name=APP_NAME)
    return f"worker:{holder.pid if holder.pid is not None else 'unknown'}"


def _worker_lock(rt: Runtime) -> WorkerLock | None:
    path = worker_lock.lock_path(rt.database_url)
    if path is None:
        return None
    # Held until the process ends (a workflow thread may outlive DBOS.destroy); a process
    # that starts the engine again on the same database keeps using its lock.
    if path not in _LOCKS:
        _LOCKS[path] = WorkerLock(path)
    return _LOCKS[path]


def _launch(rt: Runtime, *, executor_id: str | None = None, schedules: bool = False,
            polling_interval: float | None = None) -> None:
    global _RT, _polling_interval, _launched
    _RT = rt
    eng = getattr(rt.config, "engine", None)
    _polling_interval = polling_interval or float(getattr(eng, "queue_polling_interval", 0.2) or 0.2)
    exec_id = executor_id or getattr(eng, "executor_id", None) or default_executor_id(rt.database_url)
    DBOS(config={
        "name": APP_NAME,
        "system_database_url": dbos_url(rt.database_url),
        "application_version": __version__,
        "executor_id": exec_id,
        "log_level": os.environ.get("MLC_DBOS_LOG_LEVEL", "WARNING"),
        "scheduler_polling_interval_sec": 5.0,
    })
    DBOS.launch()
    _share_writer_lock(rt)
    # DBOS adds its own, non-propagating log handler: mask secrets in its records too.
    install_log_redaction()
    _launched = True
    _tune_gc()
    _register_queues(rt)
    _await_queue_workers()
    if schedules:
        apply_schedules(rt)
        for run in catch_up_cron(rt):
            log.info("catching up the cron run missed while no worker ran: %s", run)
    if not is_sqlite(rt.database_url):
        _start_watchdog(rt, exec_id)
    lock = _worker_lock(rt)
    if lock is not None:
        lock.mark_ready()


def _share_writer_lock(rt: Runtime) -> None:
    """On SQLite, DBOS's writes queue with this process's own (`Database.share_writer_lock`)."""
    from dbos import _dbos

    engine = getattr(getattr(_dbos._dbos_global_instance, "_sys_db_field", None), "engine", None)
    if engine is not None:
        rt.db.share_writer_lock(engine)


# Young-generation size for the cyclic GC of a worker (CPython's default is 700 allocations).
GC_THRESHOLDS = (10000, 10, 10)
_gc_tuned = False


def _tune_gc() -> None:
    """The cyclic GC of a worker process: a sync allocates a few container objects per record
    (rows, payloads, statement parameters), nearly all freed by reference counting, so with the
    defaults the collector ran every 700 allocations and every full collection rescanned the
    whole runtime (modules, configuration, DBOS, SQLAlchemy): about a fifth of a full sync's CPU.
    What exists once the engine is up is long-lived: frozen (never rescanned; still freed by
    reference counting), and the young generation is larger. Once per process: a process that
    starts the engine again (tests) keeps what it froze the first time."""
    global _gc_tuned
    if _gc_tuned:
        return
    _gc_tuned = True
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _take_over() -> bool:
    """Client mode: if the worker has gone (its lock is free), become the worker here.

    Launching DBOS with the stable executor id recovers what the worker left pending and
    dequeues what it never started, so the command being waited for still completes.
    """
    global _CLIENT
    rt = runtime()
    lock = _worker_lock(rt)
    if _CLIENT is None or lock is None or not lock.try_acquire(_client_role):
        return False
    _CLIENT.destroy()
    _CLIENT = None
    log.warning("the worker on %s has stopped: this process runs the remaining work", lock.path.parent)
    _launch(rt)
    return True


def shutdown() -> None:
    global _RT, _launched, _CLIENT
    _watchdog_stop.set()
    if _launched:
        DBOS.destroy(destroy_registry=False)
    if _RT is not None:
        calls.flush(_RT.db)  # counts a read-ahead thread noted after its step's end (core/calls.py)
    if _CLIENT is not None:
        _CLIENT.destroy()
        _CLIENT = None
    _launched = False
    _QUEUES.clear()
    _RT = None


# --------------------------------------------------------------------------- dead-worker takeover

_watchdog_stop = threading.Event()


def _start_watchdog(rt: Runtime, exec_id: str) -> None:
    """Heartbeat this worker; recover the pending workflows of workers silent for too long.

    DBOS recovers a worker's in-progress workflows when that worker restarts with
    the same executor id. A worker that never comes back would leave them pending
    (and a sync waiting on its deliveries), so the survivors take them over. Doing
    it twice is harmless: steps resolve in-flight writes by lookup before resending.
    """
    interval = float(os.environ.get("MLC_HEARTBEAT_SECONDS", "10"))
    dead_after = float(os.environ.get("MLC_WORKER_DEAD_AFTER", "120"))
    _watchdog_stop.clear()
    t = threading.Thread(target=_watchdog, args=(rt, exec_id, interval, dead_after), name="mlc-watchdog",
                         daemon=True)
    t.start()


def _watchdog(rt: Runtime, exec_id: str, interval: float, dead_after: float) -> None:
    from sqlalchemy import delete, text

    from ml_connector.core.models import WorkerRow

    host = socket.gethostname()
    while True:
        try:
            with rt.db.session() as s:
                row = s.get(WorkerRow, exec_id)
                if row is None:
                    s.add(WorkerRow(id=exec_id, host=host))
                else:
                    row.last_seen = utcnow()
            cutoff = datetime.fromtimestamp(time.time() - dead_after, UTC)
            with rt.db.session() as s:
                dead = list(s.scalars(select(WorkerRow.id).where(WorkerRow.last_seen < cutoff,
                                                                 WorkerRow.id != exec_id)))
            for worker in dead:
                with rt.db.engine.begin() as conn:
                    got = conn.execute(text("SELECT pg_try_advisory_xact_lock(hashtext(:k))"),
                                       {"k": f"mlc-recover:{worker}"}).scalar()
                    if not got:
                        continue
                    still = conn.execute(select(WorkerRow.last_seen).where(WorkerRow.id == worker)).scalar()
                    if still is None or still >= cutoff:
                        continue  # it came back, or another worker took over already
                    handles = DBOS._recover_pending_workflows([worker])
                    conn.execute(delete(WorkerRow).where(WorkerRow.id == worker))
                log.warning("worker %s silent for over %.0fs: took over %d workflow(s)", worker, dead_after,
                            len(handles))
                with rt.db.session() as s:
                    audit.record(s, "worker.taken_over", outcome="ok",
                                 detail={"dead_worker": worker, "by": exec_id, "workflows": len(handles)})
        except Exception:
            log.exception("worker heartbeat failed")
        if _watchdog_stop.wait(interval):
            return


# DBOS's queue manager starts a worker thread per registered queue when it next lists the queues
# (once a second): a run enqueued meanwhile, or its first delivery, waited up to that second.
QUEUE_WORKERS_WAIT = 3.0


def _await_queue_workers(timeout: float = QUEUE_WORKERS_WAIT) -> bool:
    """Return once every queue registered here has its DBOS worker thread (the engine is ready to take
    work), or after `timeout` (False; the queues are served all the same, a little later)."""
    names = {f"queue-worker-{q}" for q in _QUEUES}
    deadline = time.monotonic() + timeout
    while True:
        missing = names - {t.name for t in threading.enumerate()}
        if not missing or time.monotonic() >= deadline:
            return not missing
        time.sleep(0.02)


def _register_queues(rt: Runtime) -> None:
    _QUEUES[SYNC_QUEUE] = DBOS.register_queue(
        SYNC_QUEUE, partition_concurrency=1, polling_interval_sec=_polling_interval,
        on_conflict="always_update")
    _QUEUES[REPLAY_QUEUE] = DBOS.register_queue(
        REPLAY_QUEUE, polling_interval_sec=max(_polling_interval, REPLAY_POLLING_INTERVAL),
        on_conflict="always_update")
    for name in rt.config.connections:
        target_queue(name)


def target_queue(connection: str) -> Queue:
    """One queue per target API connection, limits from the provider's facts."""
    qname = f"mlc-target-{connection}"
    if qname in _QUEUES:
        return _QUEUES[qname]
    from ml_connector.core import registry
    from ml_connector.core.providers import fact

    rt = runtime()
    # A system without provider facts (its entry's `provider` is None) has the default limits.
    facts = registry.get(rt.config.connections[connection].type).provider
    conc = int(fact(facts, "delivery", "concurrency", default=2) or 2) if facts else 2
    lim = fact(facts, "delivery", "workflows_per_period", default=None) if facts else None
    limiter = {"limit": int(lim["limit"]), "period": float(lim["period"])} if lim else None
    _QUEUES[qname] = DBOS.register_queue(qname, worker_concurrency=conc, limiter=limiter,  # type: ignore[arg-type]
                                         polling_interval_sec=_polling_interval, on_conflict="always_update")
    return _QUEUES[qname]


# --------------------------------------------------------------------------- workflows


@DBOS.workflow(name=SYNC_WORKFLOW)
def sync_workflow(flow: str, stream: str, mode: str) -> dict[str, Any]:
    run_id = DBOS.workflow_id or ""
    try:
        return _sync(flow, stream, mode, run_id)
    except Exception as exc:
        # The run has ended: record it, so that it shows as failed and the next trigger
        # starts a new run instead of re-attaching to this one.
        _fail_step(flow, stream, mode, run_id, f"{type(exc).__name__}: {exc}")
        raise


def _sync(flow: str, stream: str, mode: str, run_id: str) -> dict[str, Any]:
    _begin_step(flow, stream, mode, run_id)
    target = runtime().flow(flow).stream(stream).target_connection
    handles: list[Any] = []
    while True:
        page = _page_step(flow, stream, mode, run_id)
        if page["batch"] is not None:
            handles.append(target_queue(target).enqueue(deliver_workflow, flow, stream, run_id, page["batch"]))
        if page["done"]:
            break
        # Back-pressure: reading may run ahead of writing by a few pages only, so
        # memory and the outbox backlog stay bounded whatever the table size.
        while len(handles) > MAX_PAGES_AHEAD:
            handles.pop(0).get_result(polling_interval_sec=RESULT_POLL)
    for h in handles:
        h.get_result(polling_interval_sec=RESULT_POLL)
    # Batches staged by a step whose completion DBOS never recorded (a crash in
    # between) have no delivery yet: sweep them.
    for batch in _open_batches_step(run_id):
        target_queue(target).enqueue(deliver_workflow, flow, stream, run_id, batch).get_result(
            polling_interval_sec=RESULT_POLL)
    return _finish_step(flow, stream, mode, run_id)


@DBOS.workflow(name="mlc.deliver")
def deliver_workflow(flow: str, stream: str, run_id: str, batch: int) -> dict[str, int]:
    return _deliver_step(flow, stream, run_id, batch)


@DBOS.workflow(name=REPLAY_WORKFLOW)
def replay_workflow(ids: list[int]) -> dict[str, int]:
    return _replay_step(ids)


@DBOS.workflow(name="mlc.tick")
def schedule_tick(scheduled_at: datetime, context: dict[str, Any]) -> None:
    """Fired by the DBOS scheduler; starts at most one run per flow/stream per window.

    An interval schedule runs a stream only when it is due: it never ran, or its last run started at
    least one interval ago. So a restart starts nothing that ran recently, and a worker that was down
    for several intervals catches up with one run, not one per missed window."""
    interval = float(context.get("interval") or 0)
    at = scheduled_at.timestamp()
    window = datetime.fromtimestamp(at - (at % interval) if interval else at, UTC).strftime("%Y%m%dT%H%M%SZ")
    streams = list(context["streams"])
    if _paused_step(context["flow"]):
        return  # paused after repeated failed runs, until `ml-connector resume`
    if interval:
        streams = _due_step(context["flow"], streams, interval, at)
    mode = str(context.get("mode") or "incremental")
    if mode != "incremental":
        streams = _not_deferred_step(context["flow"], streams, mode, at)  # the rest wait for the catch-up
    for stream in streams:
        _enqueue_scheduled(context["flow"], stream, window, mode)


@DBOS.step(name="mlc.not_deferred")
def _not_deferred_step(flow: str, streams: list[str], mode: str, at: float) -> list[str]:
    f = runtime().flow(flow)
    now = datetime.fromtimestamp(at, UTC)
    out = []
    for st in streams:
        reason = f.defer_reason(st, mode, now)
        if reason:
            log.info("scheduled %s run deferred: %s", mode, reason)
        else:
            out.append(st)
    return out


@DBOS.workflow(name="mlc.catch_up_tick")
def catch_up_tick(scheduled_at: datetime, context: dict[str, Any]) -> None:
    """Fired hourly for a flow schedule with `catch_up`: runs its latest time if it was missed or
    deferred (`catch_up_flow_schedules`), under the workflow ID that time's tick gives, so once."""
    if _paused_step(context["flow"]):
        return
    for flow, stream, window, mode in _catch_up_step(context["flow"], context["schedule"], scheduled_at.timestamp()):
        _enqueue_scheduled(flow, stream, window, mode)


@DBOS.step(name="mlc.catch_up")
def _catch_up_step(flow: str, schedule: str, at: float) -> list[tuple[str, str, str, str]]:
    return due_catch_ups(runtime(), datetime.fromtimestamp(at, UTC), only=(flow, schedule))


def _enqueue_scheduled(flow: str, stream: str, window: str, mode: str = "incremental") -> None:
    wid = f"sync:{flow}:{stream}:{mode}:{window}"
    with SetWorkflowID(wid), SetEnqueueOptions(queue_partition_key=f"{flow}:{stream}"):
        _QUEUES[SYNC_QUEUE].enqueue(sync_workflow, flow, stream, mode)


def last_started(sess: Any, flow: str, streams: list[str], *, mode: str | None = None) -> dict[str, datetime]:
    """When each stream's latest run (scheduled or manual, any outcome; of `mode` if given) started,
    for those that ran."""
    q = select(RunRow.stream, func.max(RunRow.started_at)).where(RunRow.flow == flow, RunRow.stream.in_(streams))
    if mode is not None:
        q = q.where(RunRow.mode == mode)
    rows = sess.execute(q.group_by(RunRow.stream)).all()
    # SQLite hands back naive datetimes; they were stored in UTC.
    return {st: (ts if ts.tzinfo else ts.replace(tzinfo=UTC)) for st, ts in rows if ts is not None}


def first_started(sess: Any, flow: str, streams: list[str]) -> dict[str, datetime]:
    """When each stream's first run started, for those that ran."""
    rows = sess.execute(select(RunRow.stream, func.min(RunRow.started_at)).where(
        RunRow.flow == flow, RunRow.stream.in_(streams)).group_by(RunRow.stream)).all()
    return {st: (ts if ts.tzinfo else ts.replace(tzinfo=UTC)) for st, ts in rows if ts is not None}


def due_streams(sess: Any, flow: str, streams: list[str], interval: float, now: float) -> list[str]:
    last = last_started(sess, flow, streams)
    return [st for st in streams if st not in last or now - last[st].timestamp() >= interval]


@DBOS.step(name="mlc.paused")
def _paused_step(flow: str) -> bool:
    with runtime().db.read() as sess:
        return flow_pause.state(sess, flow) is not None


@DBOS.step(name="mlc.due")
def _due_step(flow: str, streams: list[str], interval: float, at: float) -> list[str]:
    with runtime().db.session() as sess:
        return due_streams(sess, flow, streams, interval, at)


def catch_up_cron(rt: Runtime, now: datetime | None = None) -> list[str]:
    """At a worker's start: a cron time missed while no worker ran (the stream ran before, but not
    since the latest cron time) is due, once. A stream that never ran waits for its first cron time.
    The run gets the workflow ID that tick would have given it, so it runs once across workers."""
    from zoneinfo import ZoneInfo

    from croniter import croniter

    started: list[str] = []
    now = now or datetime.now(UTC)
    for name, f in rt.config.flows.items():
        sched = getattr(f, "schedule", None)
        if sched is None or not sched.cron:
            continue
        zone = ZoneInfo(sched.timezone) if getattr(sched, "timezone", None) else UTC
        prev = croniter(sched.cron, now.astimezone(zone), second_at_beginning=len(sched.cron.split()) == 6
                        ).get_prev(datetime).astimezone(UTC)
        window = prev.strftime("%Y%m%dT%H%M%SZ")
        with rt.db.session() as sess:
            last = last_started(sess, name, list(f.streams))
        for stream in f.streams:
            if stream in last and last[stream] < prev:
                _enqueue_scheduled(name, stream, window)
                started.append(f"{name}:{stream}:{window}")
    return started + catch_up_flow_schedules(rt, now)


def catch_up_flow_schedules(rt: Runtime, now: datetime | None = None, *,
                            only: tuple[str, str] | None = None) -> list[str]:
    """The flow schedules with `catch_up` (e.g. sap_ecc_sfmc's nightly full comparison) whose latest
    time passed with no run in their mode since: run it now, once (the workflow ID of that time's
    tick), unless the flow defers it (`Flow.defer_reason`, e.g. business hours): then the hourly
    re-check (`catch_up_tick`) starts it later. As for a flow's own cron, a stream that had not run
    before that time waits for the next one. `only`: (flow, schedule name)."""
    started: list[str] = []
    for flow, stream, window, mode in due_catch_ups(rt, now or datetime.now(UTC), only=only):
        _enqueue_scheduled(flow, stream, window, mode)
        started.append(f"{flow}:{stream}:{mode}:{window}")
    return started


def due_catch_ups(rt: Runtime, now: datetime, *, only: tuple[str, str] | None = None
                  ) -> list[tuple[str, str, str, str]]:
    """(flow, stream, window, mode) of each caught-up run `catch_up_flow_schedules` starts."""
    from zoneinfo import ZoneInfo

    from croniter import croniter

    due: list[tuple[str, str, str, str]] = []
    for name, f in rt.config.flows.items():
        pair = getattr(f, "pair", None)
        if not pair or (only is not None and only[0] != name):
            continue
        flow = rt.flow(name)
        for fs in flow.schedules():
            if not fs.catch_up or (only is not None and only[1] != fs.name):
                continue
            streams = [st for st in fs.streams if st in f.streams]
            zone = ZoneInfo(fs.timezone) if fs.timezone else UTC
            prev = croniter(fs.cron, now.astimezone(zone), second_at_beginning=len(fs.cron.split()) == 6
                            ).get_prev(datetime).astimezone(UTC)
            window = prev.strftime("%Y%m%dT%H%M%SZ")
            with rt.db.session() as sess:
                if flow_pause.state(sess, name) is not None:
                    break
                first = first_started(sess, name, streams)
                last = last_started(sess, name, streams, mode=fs.mode)
            for stream in streams:
                if stream not in first or first[stream] >= prev or (stream in last and last[stream] >= prev):
                    continue
                reason = flow.defer_reason(stream, fs.mode, now)
                if reason:
                    log.info("%s run of %s/%s due since %s deferred: %s", fs.mode, name, stream, window, reason)
                    continue
                due.append((name, stream, window, fs.mode))
    return due


# --------------------------------------------------------------------------- steps


def _ctx(flow: str, stream: str, run_id: str, mode: str) -> tuple[RunContext, Stream]:
    rt = runtime()
    f = rt.flow(flow)
    s = f.stream(stream)
    return RunContext(rt, flow, stream, run_id, mode, dict(getattr(f.cfg, "options", {}) or {})), s


@DBOS.step(name="mlc.begin")
def _begin_step(flow: str, stream: str, mode: str, run_id: str) -> None:
    with calls.counting(runtime().db, run_id, flow, stream, "begin"):  # its calls are the run's (core/calls.py)
        _begin(flow, stream, mode, run_id)


def _begin(flow: str, stream: str, mode: str, run_id: str) -> None:
    ctx, s = _ctx(flow, stream, run_id, mode)
    rt = ctx.runtime
    with rt.db.session() as sess:
        cur = ledger.load_cursor(sess, flow, stream)
        if cur.get("run") == run_id:
            return  # re-executed after a crash: the run's state is already set up
        # The run is recorded before its source reads where to start: a hint (`hint_sync`) that does
        # not see this row yet was for data stored before that read, so this run covers it.
        if sess.get(RunRow, run_id) is None:
            sess.add(RunRow(run_id=run_id, flow=flow, stream=stream, mode=mode, status="running",
                            counts={"read": 0, "unchanged": 0, "parked": 0, "staged": 0}))
    state = s.begin(ctx, cur.get("kept", {}) if mode != "full" else {})
    with rt.db.session() as sess:
        cur = ledger.load_cursor(sess, flow, stream)
        ledger.save_cursor(sess, flow, stream, {"run": run_id, "mode": mode, "state": state, "batch": 0,
                                                "done": False, "kept": cur.get("kept", {})})
        # Which process ran it: on SQLite one worker per database, so this names that worker.
        audit.record(sess, "run.started", flow=flow, stream=stream, run_id=run_id,
                     detail={"mode": mode, "host": socket.gethostname(), "pid": os.getpid()})
        parked_ids = list(sess.scalars(select(OutboxRow.id).where(
            OutboxRow.flow == flow, OutboxRow.stream == stream, OutboxRow.state == "parked")))
        _adopt_waiting(sess, flow, stream, run_id)
    if parked_ids:
        # Mappings may have appeared since (config or `mappings set`): records that
        # can be mapped now join this run (batch 0, delivered by the final sweep).
        _remap_parked(ctx, s, parked_ids, {})
        with rt.db.session() as sess:
            _adopt_resumed(sess, parked_ids, run_id)


def _run_waits(sess: Any, ctx: RunContext, waits: list[Outcome]) -> None:
    """Waiting outcomes make their run end `waiting` (the first reason is kept), as a source's `Page.waiting`."""
    if not waits:
        return
    run = sess.get(RunRow, ctx.run_id)
    reason = f"{len(waits)} record(s) written, a follow-up waits: {waits[0].error or ''}"[:500]
    if run is not None and not run.counts.get("waiting"):
        run.counts = {**run.counts, "waiting": reason}
        audit.record(sess, "run.waiting", flow=ctx.flow, stream=ctx.stream, run_id=ctx.run_id, outcome="waiting",
                     detail={"reason": reason})


def _adopt_waiting(sess: Any, flow: str, stream: str, run_id: str) -> None:
    """Entries whose follow-up waited (outcome `waiting`) join this run (batch 0, delivered by the final sweep)."""
    sess.execute(update(OutboxRow).where(OutboxRow.flow == flow, OutboxRow.stream == stream,
                                         OutboxRow.state == "waiting")
                 .values(state="pending", run_id=run_id, batch=0, updated_at=utcnow()))


def _adopt_resumed(sess: Any, ids: list[int], run_id: str) -> None:
    """Entries of `ids` that a remap made pending join run `run_id` (batch 0)."""
    for chunk in in_chunks(sorted(ids)):
        sess.execute(update(OutboxRow).where(OutboxRow.id.in_(chunk), OutboxRow.state == "pending")
                     .values(run_id=run_id, batch=0))


def _outbox_rows(sess: Any, ids: list[int], *where: Any) -> list[OutboxRow]:
    """Outbox rows by id, in bounded `IN` lists (SQLite's variable limit; few statement shapes)."""
    rows: list[OutboxRow] = []
    for chunk in in_chunks(sorted(set(ids))):
        rows.extend(sess.scalars(select(OutboxRow).where(OutboxRow.id.in_(chunk), *where)))
    return rows


@DBOS.step(name="mlc.page", retries_allowed=True, max_attempts=8, interval_seconds=_retry_interval(1.0),
           backoff_rate=2.0, should_retry=should_retry)
def _page_step(flow: str, stream: str, mode: str, run_id: str) -> dict[str, Any]:
    with calls.counting(runtime().db, run_id, flow, stream, "page"), jsonlog.correlate(flow=flow, stream=stream):
        # the calls this page makes (its read-ahead threads' too) are kept per run (core/calls.py); its log
        # lines name the flow and stream
        return _read_and_stage(flow, stream, mode, run_id)


def _read_and_stage(flow: str, stream: str, mode: str, run_id: str) -> dict[str, Any]:
    ctx, s = _ctx(flow, stream, run_id, mode)
    rt = ctx.runtime
    with rt.db.read() as sess:  # committed state, no write lock (the page is staged below, in one)
        cur = ledger.load_cursor(sess, flow, stream)
    if cur.get("run") != run_id:
        raise RuntimeError(f"cursor of {flow}/{stream} belongs to run {cur.get('run')}, not {run_id}")
    if cur.get("done"):
        return {"batch": None, "done": True}
    page = s.read_page(ctx, cur["state"])
    ctx.page_keys = frozenset(key for key, _ in page.records)
    desired: list[ledger.Desired] = []
    parked: list[ledger.Parked] = []
    for key, rec in page.records:
        named = jsonlog.RECORD.set(f"{flow}:{key}")  # a log line about this record names it
        try:
            m = s.map(ctx, key, rec)
        finally:
            jsonlog.RECORD.reset(named)
        if isinstance(m, ledger.Parked):
            parked.append(m)
        else:
            desired.append(m)
    batch = int(cur.get("batch", 0)) + 1
    # A full run converges the target from its real state: what it holds for this page's records
    # (None: the target cannot tell, and the ledger is trusted).
    held = s.target.current(ctx, [d.payload for d in desired]) if mode == "full" and desired else None
    with rt.db.session() as sess:
        again = ledger.load_cursor(sess, flow, stream)
        if again.get("state") != cur["state"] or again.get("run") != run_id:
            # another execution of this step committed first: do not stage twice
            return {"batch": None, "done": bool(again.get("done"))}
        changes, unchanged = ledger.plan_changes(sess, flow, stream, desired)
        rows = [{"idempotency_key": outbox.idempotency_key(flow, stream, c.source_key, c.content_hash, c.op),
                 "source_key": c.source_key, "op": c.op, "payload": c.payload, "content_hash": c.content_hash,
                 "target_id": c.target_id} for c in changes]
        if held is not None:
            repairs = _repairs(s, desired, {c.source_key for c in changes}, held)
            unchanged -= len(repairs)
            rows += [{"idempotency_key": outbox.idempotency_key(flow, stream, c.source_key, c.content_hash,
                                                                f"{c.op}:repair:{_short(run_id)}"),
                      "source_key": c.source_key, "op": c.op, "payload": c.payload,
                      "content_hash": c.content_hash, "target_id": c.target_id} for c in repairs]
        approval.hold(approval.flow_config(rt, flow), s, rows)  # a flow's `approval`: these wait for a person
        parked_rows = [{"idempotency_key": outbox.idempotency_key(flow, stream, p.source_key,
                                                                  ledger.content_hash(p.payload),
                                                                  "park:" + p.waits_for),
                        "source_key": p.source_key, "op": "create", "payload": p.payload,
                        "content_hash": ledger.content_hash(p.payload), "target_id": None, "state": "parked",
                        "parked_on": p.waits_for, "last_error": p.reason or None} for p in parked]
        # Staged = entries this run will deliver: new ones and open ones it adopts, not the planned
        # changes whose entry already exists (e.g. failed, waiting for replay).
        staged = outbox.add(sess, flow=flow, stream=stream, run_id=run_id, batch=batch, rows=rows)
        known_parked = set(sess.scalars(select(OutboxRow.source_key).where(
            OutboxRow.idempotency_key.in_([r["idempotency_key"] for r in parked_rows])))) if parked_rows else set()
        new_parked = {r["source_key"] for r in parked_rows} - known_parked
        added = staged + (outbox.add(sess, flow=flow, stream=stream, run_id=run_id, batch=batch, rows=parked_rows)
                          if parked_rows else 0)
        run = sess.get(RunRow, run_id)
        if run is not None:
            c = dict(run.counts)
            c["read"] = c.get("read", 0) + len(page.records)
            c["unchanged"] = c.get("unchanged", 0) + unchanged
            c["parked"] = c.get("parked", 0) + len(parked)
            c["staged"] = c.get("staged", 0) + staged
            if page.estimate_total is not None:
                c["estimate_total"] = page.estimate_total
            if page.waiting:
                c["waiting"] = page.waiting[:500]
            run.counts = c
        ledger.save_cursor(sess, flow, stream, dict(again, state=page.position, batch=batch, done=page.done))
        if page.waiting:
            audit.record(sess, "run.waiting", flow=flow, stream=stream, run_id=run_id, outcome="waiting",
                         detail={"reason": page.waiting[:500]})
        audit.record(sess, "page.staged", flow=flow, stream=stream, run_id=run_id,
                     detail={"batch": batch, "read": len(page.records), "changes": len(changes),
                             "unchanged": unchanged, "parked": len(parked)})
        # Each record parked here says why (its journey shows it); a record parked again on the same
        # key by a later run is not re-recorded (outbox.add kept its entry).
        audit.record_many(sess, [{"event": "record.parked", "outcome": "parked", "flow": flow, "stream": stream,
                                  "run_id": run_id, "source": f"{flow}:{p.source_key}", "target": None,
                                  "at": utcnow(),
                                  "detail": {"waits_for": p.waits_for, **({"reason": p.reason} if p.reason else {})}}
                                 for p in parked if p.source_key in new_parked])
        alerts = _parked_alerts(sess, flow, stream, run_id, parked)
    alerter: Alerter | None = getattr(rt, "alerts", None)
    if alerter is not None:
        for alert in alerts:
            alerter.dispatch(alert)  # stored with the page; sent in the background
    if added:
        killpoints.hit("page.staged", stream)  # tests only (core/killpoints.py)
    return {"batch": batch if added else None, "done": page.done}


def _parked_alerts(sess: Any, flow: str, stream: str, run_id: str, parked: list[ledger.Parked]) -> list[Alert]:
    """`record.parked`: operators hear of each cause records wait for (a mapping, a master record), at
    most once per cause per alert interval (the throttle), in the transaction that parks them."""
    alerts: Alerter | None = getattr(runtime(), "alerts", None)
    if not parked or alerts is None or not alerts.wants("record.parked"):
        return []
    causes: dict[str, list[str]] = {}
    for p in parked:
        causes.setdefault(p.waits_for, []).append(p.source_key)
    out = []
    for cause, keys in causes.items():
        alert = Alert(event="record.parked", subject=f"{flow}/{stream} {cause}"[:300], flow=flow, stream=stream,
                      run_id=run_id, details={"waits_for": cause, "records": keys[:20], "count": len(keys)},
                      message=f"{len(keys)} record(s) of {flow}/{stream} parked, waiting for {cause} "
                              f"(e.g. {keys[0]}); they resume by themselves once it exists or is mapped "
                              f"(`ml-connector review --flow {flow}` lists them)")
        if alerts.admit(sess, alert):
            out.append(alert)
    return out


def _short(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _repairs(s: Stream, desired: list[ledger.Desired], planned: set[str],
             held: dict[int, tuple[str, dict[str, Any]]]) -> list[ledger.Change]:
    """Records the ledger calls unchanged but the target holds otherwise (or not at all): the
    writes that make the target hold them (their key names the run: a repair is not an old write)."""
    out: list[ledger.Change] = []
    for i, d in enumerate(desired):
        if d.source_key in planned:
            continue
        h = ledger.content_hash({**d.payload, "__active": d.active})
        if i not in held:
            if d.active:
                out.append(ledger.Change(d.source_key, "create", d.payload, h, None))
            continue
        target_id, record = held[i]
        op = s.target.compare(record, d.payload, d.active)
        if op is not None:
            out.append(ledger.Change(d.source_key, op, d.payload, h, target_id))
    return out


@DBOS.step(name="mlc.open_batches")
def _open_batches_step(run_id: str) -> list[int]:
    rt = runtime()
    with rt.db.session() as sess:
        rows = sess.execute(select(OutboxRow.batch).where(
            OutboxRow.run_id == run_id, OutboxRow.state.in_(outbox.OPEN_STATES)).distinct())
        return sorted(int(b) for (b,) in rows)


@DBOS.step(name="mlc.deliver", retries_allowed=True, max_attempts=6, interval_seconds=_retry_interval(2.0),
           backoff_rate=2.0, should_retry=should_retry)
def _deliver_step(flow: str, stream: str, run_id: str, batch: int) -> dict[str, int]:
    rt = runtime()
    with rt.db.session() as sess:
        run = sess.get(RunRow, run_id)
        mode = run.mode if run else "incremental"
        entries = outbox.batch_entries(sess, run_id, batch)
        held = getattr(approval.flow_config(rt, flow), "approval", None) is not None
        waiting = approval.waiting_ids(sess, run_id, batch) if held else []
    ctx, s = _ctx(flow, stream, run_id, mode)
    with calls.counting(rt.db, run_id, flow, stream, "deliver"), jsonlog.correlate(flow=flow, stream=stream):
        # the calls this delivery makes are kept per run (core/calls.py); its log lines name the flow and stream
        if waiting:  # records held for approval: the target's verdict for the approval queue (writes nothing)
            approval.check_entries(ctx, s, waiting)
        return deliver_entries(ctx, s, entries)


def deliver_entries(ctx: RunContext, s: Stream, entries: list[outbox.Entry]) -> dict[str, int]:
    """Hand entries to the stream's target; store each reported outcome with its ledger and audit rows.

    The exactly-once protocol lives here, not in targets: entries left in doubt (in flight at
    a crash, or uncertain after a timeout) are looked up in the target first and only those it
    does not find are written again; every entry is marked in flight (one attempt counted)
    in a committed transaction before the call that writes it.

    A record found rather than written (an outcome with `found`) is compared with what the
    entry wants (`Target.compare`); a difference becomes a correction (update, reactivate or
    deactivate of the found record) written in the same delivery, and the ledger learns the
    entry's content only once the target holds it.

    An older in-doubt entry of a record that also has a newer entry here is resolved by lookup
    first and superseded: what it found is handed to the newer entry, which alone is written.

    Results are fenced (`outbox.claim`, `outbox.fence`): an entry is written and its result recorded
    only while it is still open at the attempt this delivery began (or read). A delivery whose
    worker was taken over (stalled past the takeover deadline while another worker re-ran its step)
    records nothing over the new owner's results, and a result reported twice is recorded once.
    """
    rt = ctx.runtime
    target = s.target
    by_id = {e.id: e for e in entries}
    tally: dict[str, int] = {}
    connection = s.target_connection
    reported: set[int] = set()
    compared: set[int] = set()  # a record is compared once per delivery: corrections cannot loop
    corrections: list[outbox.Entry] = []
    looked_up: set[int] = set()
    newest: dict[str, outbox.Entry] = {}
    for e in entries:
        if e.source_key not in newest or e.id > newest[e.source_key].id:
            newest[e.source_key] = e
    stale = {e.id for e in entries if newest[e.source_key].id != e.id}

    def refused(sess: Any, ids: list[int]) -> None:
        """Results this delivery may not record (another execution settled or re-attempted them)."""
        if not ids:
            return
        for i in ids:
            reported.add(i)
        tally["fenced"] = tally.get("fenced", 0) + len(ids)
        log.warning("%s/%s run %s: %d result(s) not recorded: their entries were settled already (reported twice) "
                    "or attempted again by another execution (this one was taken over)", ctx.flow, ctx.stream,
                    ctx.run_id, len(ids))
        audit.record(sess, "delivery.fenced", flow=ctx.flow, stream=ctx.stream, run_id=ctx.run_id,
                     outcome="refused", detail={"entries": len(ids), "keys": [by_id[i].idempotency_key
                                                                             for i in ids[:20]]})

    def report(outcomes: list[Outcome]) -> None:
        # One transaction per target request, a few statements for all its records
        # (per-record ORM round trips dominated the sync's CPU time).
        if not outcomes:
            return
        killpoints.hit("deliver.written", ctx.stream)  # tests only: the target answered, nothing recorded
        first: dict[int, Outcome] = {}
        for o in outcomes:
            first.setdefault(o.entry_id, o)  # one outcome per entry: a target's repeat is not a second result
        outcomes = list(first.values())
        with rt.db.session() as sess:
            # Writes the target confirmed with nothing to compare (the common case): fenced and marked
            # posted in one statement per entry; otherwise fenced first, then recorded by kind.
            done = all(o.state == "posted" and o.found is None for o in outcomes) and outbox.post_fenced(
                sess, [(o.entry_id, by_id[o.entry_id].attempts, o.target_id) for o in outcomes])
            mine = {o.entry_id for o in outcomes} if done else outbox.fence(
                sess, [(o.entry_id, by_id[o.entry_id].attempts) for o in outcomes])
            refused(sess, [o.entry_id for o in outcomes if o.entry_id not in mine])
            outcomes = [o for o in outcomes if o.entry_id in mine]
            fixes: dict[int, str] = {}
            for o in outcomes:
                e = by_id[o.entry_id]
                if o.state == "posted" and o.found is not None and e.id not in compared:
                    compared.add(e.id)
                    fix = target.compare(o.found, e.payload, e.op != "deactivate")
                    if fix is not None:
                        fixes[e.id] = fix
            posted = [(o, by_id[o.entry_id]) for o in outcomes if o.state == "posted" and o.entry_id not in fixes]
            if not done:
                outbox.mark_posted_many(sess, [(e.id, o.target_id) for o, e in posted])
            # A waiting outcome's write is in the target too: the ledger records it (never written again).
            waits = [(o, by_id[o.entry_id]) for o in outcomes if o.state == "waiting"]
            ledger.confirm_many(sess, ctx.flow, ctx.stream,
                                [(e.source_key, o.target_id, e.content_hash, e.op != "deactivate")
                                 for o, e in posted + waits])
            for o, e in waits:
                outbox.set_op(sess, [e.id], e.op, target_id=o.target_id)
            _run_waits(sess, ctx, [o for o, _ in waits])
            # An adopted record that already holds the content was not created by this run.
            outbox.set_op(sess, [e.id for o, e in posted if o.adopted and e.op == "create"], "adopt")
            events = []
            now = utcnow()
            for o in outcomes:
                e = by_id[o.entry_id]
                reported.add(e.id)
                base: dict[str, Any] = {"flow": ctx.flow, "stream": ctx.stream, "run_id": ctx.run_id,
                                        "source": f"{ctx.flow}:{e.source_key}",
                                        "target": f"{connection}:{o.target_id}" if o.target_id else None,
                                        "at": now}
                if o.adopted:
                    events.append({**base, "event": "record.adopted", "outcome": "ok", "response": o.found,
                                   "detail": {"key": e.idempotency_key, "op": e.op}})
                if e.id in fixes:
                    # The target holds something else: correct the found record (still in flight).
                    fix = fixes[e.id]
                    events.append({**base, "event": "record.differs", "outcome": "correcting",
                                   "response": o.found, "request": e.payload,
                                   "detail": {"key": e.idempotency_key, "op": e.op, "correction": fix}})
                    e.op, e.target_id = fix, o.target_id
                    outbox.set_op(sess, [e.id], fix, target_id=o.target_id)
                    corrections.append(e)
                    continue
                tally[o.state] = tally.get(o.state, 0) + 1
                if o.state != "posted":
                    # The attempt was counted when it began (begin_attempt): not again here.
                    outbox.set_state(sess, [e.id], o.state, error=o.error)
                detail: dict[str, Any] = {"key": e.idempotency_key}
                if e.id in looked_up:
                    detail["resolved_by"] = "lookup"
                elif o.resolved:
                    detail["resolved_by"] = o.resolved
                if o.error:
                    detail["error"] = o.error
                base.update(event=f"record.{e.op}", outcome="ok" if o.state == "posted" else o.state,
                            request=o.request, response=o.response, detail=detail)
                events.append(base)  # the last event of this outcome: its base dict itself
            audit.record_many(sess, events)
        killpoints.hit("deliver.recorded", ctx.stream)  # tests only: recorded, the step not completed

    def resolve(outcomes: list[Outcome]) -> None:
        """Lookup outcomes: those of stale entries supersede them and inform their newer entry."""
        handed: list[Outcome] = []
        own = {o.entry_id for o in outcomes}  # a newer entry in doubt itself has its own outcome here
        with rt.db.session() as sess:
            ids = [o.entry_id for o in outcomes if o.entry_id in stale]
            mine = outbox.fence(sess, [(i, by_id[i].attempts) for i in ids])
            refused(sess, [i for i in ids if i not in mine])
            for o in outcomes:
                if o.entry_id not in stale or o.entry_id not in mine:
                    continue
                e = by_id[o.entry_id]
                live = newest[e.source_key]
                found = o.state == "posted" and o.found is not None
                outbox.set_state(sess, [e.id], "superseded",
                                 error=f"resolved by lookup ({'found' if o.state == 'posted' else 'not found'}) before "
                                       f"the newer entry {live.id} of this record was written")
                reported.add(e.id)
                tally["superseded"] = tally.get("superseded", 0) + 1
                if (found and live.op == "create" and not live.target_id and live.id not in reported
                        and live.id not in own and live.id not in {h.entry_id for h in handed}):
                    handed.append(Outcome(live.id, "posted", target_id=o.target_id, found=o.found,
                                          response=o.found))
        report([o for o in outcomes if o.entry_id not in stale] + handed)

    size = max(1, int(target.batch_size))
    doubtful = [e for e in entries if e.state in ("in_flight", "uncertain")]
    for i in range(0, len(doubtful), size):
        # Recorded as they come (a lookup may yield them as found): a recovery interrupted itself
        # keeps what it found, and the next one looks up only the rest.
        found: list[Outcome] = []
        flushed = time.monotonic()
        for o in target.lookup(ctx, doubtful[i:i + size]):
            if o.entry_id not in reported:
                found.append(o)
                looked_up.add(o.entry_id)  # the audit trail says these were settled by lookup
            # Many at once (a listing's page), or what a slow lookup (one GET per record) found so far.
            if len(found) >= LOOKUP_FLUSH or (found and time.monotonic() - flushed >= LOOKUP_FLUSH_SECONDS):
                resolve(found)
                found, flushed = [], time.monotonic()
        if found:
            resolve(found)
    # Stale entries the lookup did not find (or could not look up) are superseded all the same:
    # only the newest content of a record is written.
    with rt.db.session() as sess:
        rest = [i for i in stale if i not in reported]
        mine = outbox.fence(sess, [(i, by_id[i].attempts) for i in rest])
        refused(sess, [i for i in rest if i not in mine])
        rest = [i for i in rest if i in mine]
        outbox.set_state(sess, rest, "superseded", error="a newer entry of this record was written instead")
        for i in rest:
            reported.add(i)
            tally["superseded"] = tally.get("superseded", 0) + 1

    def write(todo: list[outbox.Entry]) -> None:
        for i in range(0, len(todo), size):
            chunk = todo[i:i + size]
            mine = outbox.claim(rt.db, chunk)
            if len(mine) < len(chunk):
                with rt.db.session() as sess:
                    refused(sess, [e.id for e in chunk if e.id not in mine])
            chunk = [e for e in chunk if e.id in mine]
            for e in chunk:
                e.state, e.attempts = "in_flight", e.attempts + 1
                reported.discard(e.id)
            if not chunk:
                continue
            killpoints.hit("deliver.claimed", ctx.stream)  # tests only: in flight, the target not called
            # One record per call (a posting target): the target's log lines about it name the record.
            with jsonlog.correlate(record=f"{ctx.flow}:{chunk[0].source_key}" if len(chunk) == 1 else None):
                target.write(ctx, chunk, report)
            # A target that returned without an answer for an entry leaves it in doubt, visibly.
            report([Outcome(e.id, "uncertain", error="the target reported no outcome for this record")
                    for e in chunk if e.id not in reported])

    write([e for e in entries if e.id not in reported])
    while corrections:
        todo = list(corrections)
        corrections.clear()
        write(todo)
    return tally


@DBOS.step(name="mlc.finish")
def _finish_step(flow: str, stream: str, mode: str, run_id: str) -> dict[str, Any]:
    with calls.counting(runtime().db, run_id, flow, stream, "finish"):  # its calls are the run's (core/calls.py)
        return _finish(flow, stream, mode, run_id)


def _finish(flow: str, stream: str, mode: str, run_id: str) -> dict[str, Any]:
    ctx, s = _ctx(flow, stream, run_id, mode)
    rt = ctx.runtime
    with rt.db.session() as sess:
        cur = ledger.load_cursor(sess, flow, stream)
    kept = s.finish(ctx, cur.get("state") or {}) if cur.get("run") == run_id else cur.get("kept", {})
    with rt.db.session() as sess:
        cur = ledger.load_cursor(sess, flow, stream)
        if cur.get("run") == run_id:
            ledger.save_cursor(sess, flow, stream, dict(cur, done=True, kept=kept))
        counts = _run_counts(sess, run_id)
        run = sess.get(RunRow, run_id)
        if run is not None:
            counts = {**run.counts, **counts}
            # Planned as deactivations (no ledger row), found absent in the target: nothing changed.
            counts["unchanged"] = int(run.counts.get("unchanged", 0)) + counts.pop("absent", 0)
            run.counts = counts
            run.status = "failed" if counts.get("failed") or counts.get("uncertain") else (
                "waiting" if counts.get("waiting") else "succeeded")
            run.finished_at = utcnow()
        audit.record(sess, "run.finished", flow=flow, stream=stream, run_id=run_id,
                     outcome="ok" if not counts.get("failed") else "failed", detail=counts)
    _after_run(flow, run_id)
    return counts


def _after_run(flow: str, run_id: str) -> None:
    """Pause a flow that failed `pause_after` runs in a row (warn one run before)."""
    try:
        flow_pause.after_run(runtime(), flow, run_id)
    except Exception:  # the run's own outcome is recorded already: this must not change it
        log.exception("could not evaluate the pause of flow %s", flow)


@DBOS.step(name="mlc.fail")
def _fail_step(flow: str, stream: str, mode: str, run_id: str, error: str) -> None:
    message = redact(error)[:2000]
    rt = runtime()
    alerts: Alerter | None = getattr(rt, "alerts", None)  # test runtimes may have none
    alert: Alert | None = None
    with rt.db.session() as sess:
        run = sess.get(RunRow, run_id)
        if run is None:
            run = RunRow(run_id=run_id, flow=flow, stream=stream, mode=mode, counts={})
            sess.add(run)
        first = run.status != "failed"  # a step re-run after a crash must not alert twice
        run.status, run.error, run.finished_at = "failed", message, utcnow()
        # Writes left in flight are in doubt: `failures` lists them; say why there.
        sess.execute(update(OutboxRow).where(OutboxRow.run_id == run_id, OutboxRow.state == "in_flight").values(
            last_error=f"in doubt: in flight when the run failed ({message[:300]}); replay looks it up "
                       f"before writing it again"))
        audit.record(sess, "run.failed", flow=flow, stream=stream, run_id=run_id, outcome="failed",
                     detail={"error": message})
        if first and alerts is not None and alerts.wants("run.failed"):
            candidate = Alert(event="run.failed", subject=f"{flow}/{stream}", flow=flow, stream=stream,
                              run_id=run_id, details={"mode": mode, "error": message[:500]},
                              message=f"Sync run {run_id} of flow {flow} (stream {stream}) failed: {message[:500]}")
            alert = candidate if alerts.admit(sess, candidate) else None
    log.error("run %s failed: %s", run_id, message)
    if alerts is not None and alert is not None:
        alerts.dispatch(alert)  # stored with the failure; sent in the background: never holds the run
    _after_run(flow, run_id)


def _run_counts(sess: Any, run_id: str) -> dict[str, int]:
    from ml_connector.core.models import AuditRow

    q = select(OutboxRow.op, OutboxRow.state, OutboxRow.target_id.is_(None), func.count()).where(
        OutboxRow.run_id == run_id).group_by(OutboxRow.op, OutboxRow.state, OutboxRow.target_id.is_(None))
    out = {"created": 0, "adopted": 0, "updated": 0, "deactivated": 0, "absent": 0, "failed": 0, "uncertain": 0,
           "pending": 0}
    names = {"create": "created", "update": "updated", "reactivate": "updated", "deactivate": "deactivated"}
    for op, state, no_target, n in sess.execute(q):
        if state == "posted":
            if op == "adopt":
                continue  # counted below, with the adopted records that needed a correction
            # A deactivation of a record the target never had wrote nothing.
            name = "absent" if op == "deactivate" and no_target else names.get(op, op)
            out[name] = out.get(name, 0) + int(n)
        elif state in ("failed", "uncertain"):
            out[state] += int(n)
        elif state in ("pending", "in_flight", "waiting"):
            out["pending"] += int(n)
        elif state == approval.WAITING:
            out["awaiting_approval"] = out.get("awaiting_approval", 0) + int(n)
    # Records found in the target instead of created (content compared, corrected when it differed).
    out["adopted"] = int(sess.scalar(select(func.count(func.distinct(AuditRow.source))).where(
        AuditRow.run_id == run_id, AuditRow.event == "record.adopted")) or 0)
    return out


@DBOS.step(name="mlc.replay", retries_allowed=True, max_attempts=4, interval_seconds=_retry_interval(2.0),
           should_retry=should_retry)
def _replay_step(ids: list[int]) -> dict[str, int]:
    rt = runtime()
    with rt.db.session() as sess:
        rows = _outbox_rows(sess, ids)
        # An entry in doubt whose record was written since in a newer version is only history:
        # resolving it now would compare the target with content that is no longer wanted.
        old = [r.id for r in rows if r.state in ("uncertain", "in_flight") and sess.scalar(
            select(func.count()).select_from(OutboxRow).where(
                OutboxRow.flow == r.flow, OutboxRow.stream == r.stream, OutboxRow.source_key == r.source_key,
                OutboxRow.id > r.id, OutboxRow.state == "posted"))]
        outbox.set_state(sess, old, "superseded", error="a newer version of this record was written since")
        rows = [r for r in rows if r.id not in set(old)]
        groups: dict[tuple[str, str, str], list[int]] = {}
        for r in rows:
            if r.state in ("failed", "uncertain", "parked", "in_flight", approval.APPROVED):
                groups.setdefault((r.flow, r.stream, r.run_id), []).append(r.id)
        # Failed entries go back to pending (and approved ones go out); uncertain/in_flight stay as they
        # are so that delivery resolves them by lookup first; parked ones are mapped again.
        outbox.set_state(sess, [r.id for r in rows if r.state in ("failed", approval.APPROVED)], "pending")
        audit.record(sess, "replay.requested", detail={"ids": ids})
    tally: dict[str, int] = {}
    for (flow, stream, run_id), grp in groups.items():
        ctx, s = _ctx(flow, stream, run_id, "replay")
        # A replay's calls are kept on the run that staged the records, apart from its own (core/calls.py).
        with calls.counting(rt.db, run_id, flow, stream, "replay"):
            _remap_parked(ctx, s, grp, tally)
            with rt.db.session() as sess:
                entries = [e for e in outbox.entries_by_id(sess, grp) if e.state != "parked"]
            for k, v in deliver_entries(ctx, s, entries).items():
                tally[k] = tally.get(k, 0) + v
    return tally


def _remap_parked(ctx: RunContext, s: Stream, ids: list[int], tally: dict[str, int]) -> None:
    """A parked entry holds its source record: map it again now that mappings may exist.

    `map()` runs outside any write transaction (it may read mappings itself, and on
    SQLite a second writer would wait for ours); the results are stored in one.
    """
    with ctx.runtime.db.session() as sess:
        parked = [(r.id, r.source_key, dict(r.payload))
                  for r in _outbox_rows(sess, ids, OutboxRow.state == "parked")]
    mapped = [(eid, key, s.map(ctx, key, payload)) for eid, key, payload in parked]
    waiting: list[int] = []
    cfg = approval.flow_config(ctx.runtime, ctx.flow)
    rule = cfg if getattr(cfg, "approval", None) is not None else None  # a flow's `approval`: resumed ones wait
    with ctx.runtime.db.session() as sess:
        for eid, key, m in mapped:
            row = sess.get(OutboxRow, eid)
            if row is None or row.state != "parked":
                continue
            if isinstance(m, ledger.Parked):
                row.parked_on, row.last_error = m.waits_for, m.reason or row.last_error
                tally["parked"] = tally.get("parked", 0) + 1
                continue
            changes, _ = ledger.plan_changes(sess, ctx.flow, ctx.stream, [m])
            if not changes:
                row.state = "superseded"  # the target already holds this content
                continue
            c = changes[0]
            row.op, row.payload, row.content_hash = c.op, c.payload, c.content_hash
            held = rule is not None and approval.applies(rule, ctx.stream, s.target, c.payload)
            row.target_id, row.state, row.parked_on = c.target_id, approval.WAITING if held else "pending", None
            if held:
                waiting.append(eid)
            audit.record(sess, "record.resumed", flow=ctx.flow, stream=ctx.stream, run_id=ctx.run_id,
                         source=f"{ctx.flow}:{key}", detail={"op": c.op})
    if waiting:  # resumed into the approval queue: with the target's verdict
        approval.check_entries(ctx, s, waiting)


# --------------------------------------------------------------------------- API used by CLI and server


def run_id_for(rt: Runtime, flow: str, stream: str, mode: str) -> str:
    """Deterministic manual-run ID: the generation after the last ended run.

    A duplicated or retried trigger before the run ends gets the same ID (and so
    the same run, resumed if it was interrupted); once it ends, the next one is new.
    """
    with rt.db.session() as sess:
        ended = sess.scalar(select(func.count()).select_from(RunRow).where(
            RunRow.flow == flow, RunRow.stream == stream, RunRow.status.in_(ENDED))) or 0
    return f"sync:{flow}:{stream}:{mode}:g{int(ended) + 1}"


def start_sync(flow: str, stream: str, *, full: bool = False, run_id: str | None = None,
               force: bool = False) -> str:
    """Start a run; `RunDeferred` when the flow defers it now (`Flow.defer_reason`) and not `force`."""
    rt = runtime()
    f = rt.flow(flow)
    f.stream(stream)  # validate names before anything is queued
    flow_pause.check(rt, flow)  # a paused flow starts nothing until it is resumed
    mode = "full" if full else "incremental"
    reason = None if force else f.defer_reason(stream, mode, datetime.now(UTC))
    if reason:
        raise RunDeferred(reason)
    wid = run_id or run_id_for(rt, flow, stream, mode)
    _enqueue(SYNC_QUEUE, SYNC_WORKFLOW, wid, flow, stream, mode, partition_key=f"{flow}:{stream}")
    return wid


def hint_sync(flow: str, stream: str) -> str:
    """New data for the stream has been stored (e.g. an IDoc pushed by SAP): start an incremental run
    now rather than at the next scheduled window. The ID is the generation after the stream's last
    started run, so hints that arrive before the next run starts are that one run, and a hint that
    arrives once it has started (its source may have read past the new data) queues one more after it
    (runs of a stream are serialized by the queue's partition)."""
    rt = runtime()
    rt.flow(flow).stream(stream)
    with rt.db.session() as sess:
        started = sess.scalar(select(func.count()).select_from(RunRow).where(
            RunRow.flow == flow, RunRow.stream == stream)) or 0
    wid = f"sync:{flow}:{stream}:incremental:h{int(started) + 1}"
    _enqueue(SYNC_QUEUE, SYNC_WORKFLOW, wid, flow, stream, "incremental", partition_key=f"{flow}:{stream}")
    return wid


def _enqueue(queue: str, workflow: str, wid: str, *args: Any, partition_key: str | None = None) -> None:
    """Enqueue a workflow under a deterministic ID: here, or for the worker (client mode).

    An ID already in use attaches to that workflow (DBOS's default), so a duplicated
    trigger is the same run whichever process sent it.
    """
    if _CLIENT is not None:
        opts: EnqueueOptions = {"queue_name": queue, "workflow_name": workflow, "workflow_id": wid,
                                "app_version": __version__, "application_name": APP_NAME}
        if partition_key:
            opts["queue_partition_key"] = partition_key
        _CLIENT.enqueue(opts, *args)
        return
    with SetWorkflowID(wid), SetEnqueueOptions(queue_partition_key=partition_key):
        if workflow == SYNC_WORKFLOW:
            _QUEUES[queue].enqueue(sync_workflow, *args)
        else:
            _QUEUES[queue].enqueue(replay_workflow, *args)


def _handle(wid: str) -> Any:
    return _CLIENT.retrieve_workflow(wid) if _CLIENT is not None else DBOS.retrieve_workflow(wid)


def wait(run_id: str, *, poll: float = 0.2, on_progress: Callable[[dict[str, Any]], None] | None = None,
         timeout: float | None = None) -> dict[str, Any]:
    """Wait for a run, reporting progress from the run's counts (domain tables, so it
    works the same whether this process or the worker runs it)."""
    return dict(_await(run_id, poll=poll, timeout=timeout,
                       on_poll=(lambda: on_progress(progress(run_id))) if on_progress else None))


def _await(wid: str, *, poll: float = 0.2, timeout: float | None = None,
           on_poll: Callable[[], None] | None = None) -> Any:
    """The workflow's result once it has ended; RuntimeError if it did not succeed."""
    deadline = time.monotonic() + timeout if timeout else None
    handle: Any = _handle(wid)
    while True:
        st = handle.get_status()
        if on_poll:
            on_poll()
        if st.status in ("SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"):
            break
        if deadline and time.monotonic() > deadline:
            raise TimeoutError(f"run {wid} still {st.status} after {timeout}s")
        if _CLIENT is not None and _take_over():
            handle = _handle(wid)
            continue
        time.sleep(poll)
    if st.status != "SUCCESS":
        try:
            handle.get_result()
        except Exception as exc:
            raise RuntimeError(f"run {wid} ended {st.status}: {exc}") from exc
        raise RuntimeError(f"run {wid} ended {st.status}")
    return handle.get_result()


def progress(run_id: str) -> dict[str, Any]:
    rt = runtime()
    with rt.db.session() as sess:
        run = sess.get(RunRow, run_id)
        counts = dict(run.counts) if run else {}
        # Writes done: not the adoptions, nor a deactivation of a record the target never had
        # (found absent by its lookup), which wrote nothing (as `_run_counts` counts them).
        wrote_nothing = or_(OutboxRow.op == "adopt", and_(OutboxRow.op == "deactivate", OutboxRow.state == "posted",
                                                          OutboxRow.target_id.is_(None)))
        done = sess.scalar(select(func.count()).select_from(OutboxRow).where(
            OutboxRow.run_id == run_id, OutboxRow.state.in_(("posted", "failed")), ~wrote_nothing)) or 0
    counts["written"] = int(done)
    counts["status"] = run.status if run else "queued"
    return counts


def replay(ids: list[int]) -> dict[str, int]:
    """Replay outbox entries (in this process, or by the worker when one runs) and wait for it."""
    # Milliseconds: two replays of the same entries within one second (an approval that failed, then the
    # operator's edit and retry) are two workflows, not the first one's result handed back again.
    wid = f"replay:{min(ids)}-{max(ids)}:{len(ids)}:{int(time.time() * 1000)}"
    _enqueue(REPLAY_QUEUE, REPLAY_WORKFLOW, wid, ids)
    return dict(_await(wid))


def apply_schedules(rt: Runtime) -> None:
    entries = schedule_entries(rt)
    if entries:
        DBOS.apply_schedules(entries)


def schedule_entries(rt: Runtime) -> list[Any]:
    """The DBOS schedules of the configured flows (one ticker per flow)."""
    entries: list[Any] = []
    for name, f in rt.config.flows.items():
        sched = getattr(f, "schedule", None)
        if sched is None:
            continue
        cron = sched.cron
        interval = None
        if not cron:
            interval = float(sched.seconds)
            # Tick often enough to notice each window; the window ID dedupes ticks.
            cron = "*/5 * * * * *" if interval < 300 else "0 * * * * *"
        elif len(cron.split()) == 5:
            cron = "0 " + cron
        entry: dict[str, Any] = {"schedule_name": f"mlc:{name}", "workflow_fn": schedule_tick, "schedule": cron,
                                 "context": {"flow": name, "streams": list(f.streams), "interval": interval}}
        if sched.cron and getattr(sched, "timezone", None):
            entry["cron_timezone"] = sched.timezone  # "0 6 * * 1" means 06:00 in the customer's zone
        entries.append(entry)
    for name, f in rt.config.flows.items():
        # Schedules a flow adds from its options (e.g. sap_ecc_sfmc's nightly full comparison).
        for fs in load_pair(f.pair)(rt, name, f).schedules():
            streams = [st for st in fs.streams if st in f.streams]
            if not streams:
                continue
            extra: dict[str, Any] = {
                "schedule_name": f"mlc:{name}:{fs.name}", "workflow_fn": schedule_tick,
                "schedule": "0 " + fs.cron if len(fs.cron.split()) == 5 else fs.cron,
                "context": {"flow": name, "streams": streams, "interval": None, "mode": fs.mode}}
            if fs.timezone:
                extra["cron_timezone"] = fs.timezone
            entries.append(extra)
            if fs.catch_up:  # a missed or deferred time is re-checked every hour until it has run
                entries.append({"schedule_name": f"mlc:{name}:{fs.name}:catch-up", "workflow_fn": catch_up_tick,
                                "schedule": "0 0 * * * *", "context": {"flow": name, "schedule": fs.name}})
    return entries


def dry_run(rt: Runtime, flow: str, stream: str, *, full: bool = False) -> Iterator[tuple[str, str, str]]:
    """What a sync would write, record by record: (op, source key, description). Writes nothing."""
    f = rt.flow(flow)
    s = f.stream(stream)
    mode = "full" if full else "incremental"
    ctx = RunContext(rt, flow, stream, "dry-run", "dry_run", dict(getattr(f.cfg, "options", {}) or {}))
    with rt.db.session() as sess:
        cur = ledger.load_cursor(sess, flow, stream)
    state = s.begin(ctx, cur.get("kept", {}) if mode != "full" else {})
    while True:
        page = s.read_page(ctx, state)
        desired = []
        for key, rec in page.records:
            m = s.map(ctx, key, rec)
            if isinstance(m, ledger.Parked):
                yield "park", key, f"waits for mapping {m.waits_for}"
            else:
                desired.append(m)
        with rt.db.session() as sess:
            changes, _ = ledger.plan_changes(sess, flow, stream, desired)
        for c in changes:
            desc = s.describe_change(c.op, c.payload)
            check = s.preview(ctx, c)
            yield c.op, c.source_key, f"{desc}; {check}" if check else desc
        state = page.position
        if page.done:
            return
