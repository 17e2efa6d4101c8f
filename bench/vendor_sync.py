"""The ml-connector side of the vendor-sync benchmarks: one process, no emulator in it.

`run_all` starts the emulators in their own processes (bench/sandbox_proc.py),
then runs this module as a child process per measurement:

    python -m bench.vendor_sync SPEC.json

SPEC names the work directory (configuration, SQLite database), the emulators'
info, the rate limit to configure, the queue polling interval and a list of
sync steps. Each step is one `engine.start_sync` + `engine.wait`; the result
(one JSON object on the last stdout line) gives per step: wall time, counts,
Ramp requests and 429s (from the sandbox's /_sandbox/stats), the delivery
phase (first to last record written, from the audit trail) and the peak RSS of
this process (VmHWM, reset before each step where the kernel allows it).

With `"profile": PATH` the steps run under cProfile and the stats are written
to PATH (top entries also printed to stderr).

With the environment variable MLC_BENCH_TRACEMALLOC=N (frames per traceback,
e.g. 12) every step runs under tracemalloc: the step result gets the traced
peak and the traced memory left at the end, and the allocations that grew the
most (at the traced peak and at the end, against the step's start, grouped by
traceback) are printed to stderr. Slow; for finding what memory scales with.

With MLC_BENCH_MEMPROBE=1 each step result gets a timeline of where the
process's memory is (RSS, threads, glibc malloc in use / free, SQLite's own
allocations, Python's allocated blocks), sampled every 0.25 s, and at the end
every open SQLite connection's page cache and prepared statements (by SQL
shape): live data vs allocator fragmentation vs native memory.
"""

from __future__ import annotations

import cProfile
import ctypes
import io
import json
import linecache
import os
import pstats
import re
import resource
import sys
import threading
import time
import tracemalloc
from datetime import UTC
from pathlib import Path
from typing import Any

import httpx
import yaml

FLOW = "vendors_to_ramp"
STREAM = "vendors"


# --------------------------------------------------------------------------- memory


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0: write 5 to clear_refs). False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    hwm = _status_kb("VmHWM")
    if hwm is None:  # no /proc: the process-lifetime peak
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return hwm / 1024


def rss_mb() -> float:
    cur = _status_kb("VmRSS")
    return (cur or 0) / 1024


# --------------------------------------------------------------------------- profiling


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]


class MemProbe:
    """Samples where this process's memory is: RSS, threads, glibc malloc (bytes in use, free
    but kept, mmapped), SQLite's allocator (sqlite3_memory_used) and Python's allocated blocks."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.samples: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-memprobe", daemon=True)
        self._libc: Any = None
        self._sqlite: Any = None
        try:
            self._libc = ctypes.CDLL("libc.so.6")
            self._libc.mallinfo2.restype = _MallInfo2
        except (OSError, AttributeError):
            self._libc = None
        try:
            self._sqlite = ctypes.CDLL("libsqlite3.so.0")
            self._sqlite.sqlite3_memory_used.restype = ctypes.c_int64
        except (OSError, AttributeError):
            self._sqlite = None
        self._t0 = time.perf_counter()

    def sample(self) -> dict[str, float]:
        mb = 2**20
        out: dict[str, float] = {"t": round(time.perf_counter() - self._t0, 2), "rss": round(rss_mb(), 1),
                                 "threads": threading.active_count()}
        if self._libc is not None:
            mi = self._libc.mallinfo2()
            out.update(malloc_used=round(mi.uordblks / mb, 1), malloc_free=round(mi.fordblks / mb, 1),
                       malloc_mmap=round(mi.hblkhd / mb, 1))
        if self._sqlite is not None:
            out["sqlite"] = round(self._sqlite.sqlite3_memory_used() / mb, 1)
        out["pymalloc_blocks"] = sys.getallocatedblocks()
        return out

    def sqlite_connections(self) -> list[dict[str, Any]]:
        """Every open sqlite3 connection of the process: its file and SQLite's per-connection
        memory (page cache, prepared statements, schema), from sqlite3_db_status."""
        import gc
        import sqlite3

        if self._sqlite is None or sys.implementation.name != "cpython":
            return []
        lib = self._sqlite
        lib.sqlite3_db_filename.restype = ctypes.c_char_p
        lib.sqlite3_db_filename.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.sqlite3_db_status.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int),
                                          ctypes.POINTER(ctypes.c_int), ctypes.c_int]
        out = []
        for obj in gc.get_objects():
            if not isinstance(obj, sqlite3.Connection):
                continue
            # CPython 3.11's pysqlite_Connection: PyObject_HEAD, then the sqlite3* handle.
            db = ctypes.c_void_p.from_address(id(obj) + 16).value
            if not db:
                continue  # closed
            cur, hi = ctypes.c_int(), ctypes.c_int()
            row: dict[str, Any] = {"file": (lib.sqlite3_db_filename(db, b"main") or b"").decode().rsplit("/", 1)[-1]}
            for name, op in (("cache", 1), ("schema", 2), ("stmt", 3)):
                lib.sqlite3_db_status(db, op, ctypes.byref(cur), ctypes.byref(hi), 0)
                row[name] = round(cur.value / 2**20, 2)
            # The prepared statements held open on it (sqlite3's statement cache), by SQL shape.
            lib.sqlite3_next_stmt.restype = ctypes.c_void_p
            lib.sqlite3_next_stmt.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
            lib.sqlite3_sql.restype = ctypes.c_char_p
            lib.sqlite3_sql.argtypes = [ctypes.c_void_p]
            lib.sqlite3_bind_parameter_count.argtypes = [ctypes.c_void_p]
            shapes: dict[str, list[int]] = {}
            stmt = lib.sqlite3_next_stmt(db, None)
            while stmt:
                sql = (lib.sqlite3_sql(stmt) or b"").decode(errors="replace")
                agg = shapes.setdefault(" ".join(sql.split())[:70], [0, 0])
                agg[0] += 1
                agg[1] += lib.sqlite3_bind_parameter_count(stmt)
                stmt = lib.sqlite3_next_stmt(db, stmt)
            row["statements"] = sum(v[0] for v in shapes.values())
            row["by_shape"] = sorted(([k, *v] for k, v in shapes.items()), key=lambda x: -x[2])[:6]
            out.append(row)
        return out

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append(self.sample())

    def stop(self) -> list[dict[str, float]]:
        self._stop.set()
        self._thread.join(5)
        self.samples.append(self.sample())
        return self.samples



class TraceMalloc:
    """tracemalloc over one step: a snapshot near the traced peak and one at the end, each
    compared with the step's start by traceback (what the peak and the residue consist of)."""

    def __init__(self, frames: int, interval: float = 0.25) -> None:
        self.frames = frames
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.base: tracemalloc.Snapshot | None = None
        self.at_peak: tracemalloc.Snapshot | None = None
        self.peak_seen = 0

    def start(self) -> None:
        tracemalloc.start(self.frames)
        self.base = self._snap()
        self.peak_seen = tracemalloc.get_traced_memory()[0]
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="bench-tracemalloc", daemon=True)
        self._thread.start()

    @staticmethod
    def _snap() -> tracemalloc.Snapshot:
        return tracemalloc.take_snapshot().filter_traces((
            tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen *>")))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            cur = tracemalloc.get_traced_memory()[0]
            if cur > self.peak_seen * 1.05:  # a new high: keep a snapshot of it
                self.peak_seen = cur
                self.at_peak = self._snap()

    def stop(self, label: str, top: int = 25) -> dict[str, Any]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        end = self._snap()
        cur, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert self.base is not None
        for name, snap in (("near the traced peak", self.at_peak), ("at the end", end)):
            if snap is None:
                continue
            diff = snap.compare_to(self.base, "traceback")
            total = sum(d.size_diff for d in diff)
            print(f"\n==== tracemalloc {label}: {name}, {total / 2**20:+.1f} MB against the start", file=sys.stderr)
            for d in diff[:top]:
                print(f"{d.size_diff / 2**20:+8.2f} MB {d.count_diff:+9d} blocks", file=sys.stderr)
                for line in d.traceback.format(limit=self.frames, most_recent_first=True):
                    print("      " + line, file=sys.stderr)
        return {"traced_peak_mb": peak / 2**20, "traced_end_mb": cur / 2**20,
                "traced_start_mb": sum(s.size for s in self.base.statistics("filename")) / 2**20}



class ThreadProfiles:
    """cProfile in every thread (DBOS runs workflows and steps in worker threads), merged."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    def _start(self, *_: Any) -> None:
        prof = cProfile.Profile()
        with self._lock:
            self.profiles.append(prof)
        prof.enable()  # replaces this hook as the thread's profile function

    def install(self) -> None:
        threading.setprofile(self._start)
        self._start()  # the main thread too

    def dump(self, path: str, *, top: int = 30) -> None:
        threading.setprofile(None)
        for p in self.profiles:
            p.disable()
        stats: pstats.Stats | None = None
        for p in self.profiles:
            try:
                p.create_stats()
            except Exception:  # a profiler that never ran
                continue
            if not getattr(p, "stats", None):
                continue
            if stats is None:
                stats = pstats.Stats(p)
            else:
                stats.add(p)
        if stats is None:
            return
        stats.dump_stats(path)
        for key in ("tottime", "cumulative"):
            buf = io.StringIO()
            stats.stream = buf  # type: ignore[attr-defined]
            stats.sort_stats(key).print_stats(top)
            print(buf.getvalue(), file=sys.stderr)


_WAIT_RE = re.compile(r"\b(sleep|wait|get_result|await_workflow_result|join|acquire)\(")


class StackSampler:
    """A wall-clock sampling profiler (py-spy is not installed): every `interval` seconds,
    the stack of every other thread is taken; per thread role, the innermost frames of
    ml-connector code and the leaf frame are counted. Idle samples (a worker waiting for
    work) are counted separately."""

    IDLE = ("threading.py", "queue.py", "selectors.py", "concurrent/futures/thread.py")

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.samples = 0
        self.own: dict[str, int] = {}
        self.leaf: dict[str, int] = {}
        self.stacks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    @staticmethod
    def _where(code: Any, lineno: int) -> str:
        fn = code.co_filename
        for marker in ("/site-packages/", "/src/", "/lib/python3"):
            if marker in fn:
                fn = fn.split(marker, 1)[1]
                break
        return f"{fn}:{lineno}({code.co_name})"

    @staticmethod
    def _waiting(frame: Any) -> bool:
        """Is the leaf line a blocking wait (sleep, Event/Condition wait, result, join)?"""
        line = linecache.getline(frame.f_code.co_filename, frame.f_lineno)
        return bool(_WAIT_RE.search(line)) or frame.f_code.co_name in ("wait", "_wait_for_tstate_lock")

    def _run(self) -> None:
        me = threading.get_ident()
        while not self._stop.wait(self.interval):
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                leaf = self._where(frame.f_code, frame.f_lineno)
                chain = []
                f: Any = frame
                while f is not None:
                    if "ml_connector" in f.f_code.co_filename:
                        chain.append(self._where(f.f_code, f.f_lineno))
                    f = f.f_back
                if not chain or self._waiting(frame):
                    continue  # DBOS pollers, threads waiting for work or results
                self.samples += 1
                self.leaf[leaf] = self.leaf.get(leaf, 0) + 1
                for w in set(chain):
                    self.own[w] = self.own.get(w, 0) + 1
                key = " <- ".join(chain[:3])
                self.stacks[key] = self.stacks.get(key, 0) + 1

    def report(self, n: int = 20) -> dict[str, Any]:
        def top(d: dict[str, int]) -> list[list[Any]]:
            return [[k, v, round(v / max(self.samples, 1), 3)] for k, v in
                    sorted(d.items(), key=lambda kv: -kv[1])[:n]]
        return {"interval_s": self.interval, "samples": self.samples,
                "inclusive": top(self.own), "leaf": top(self.leaf), "stacks": top(self.stacks)}


class SqlTimings:
    """Time spent in the DB-API per statement shape (all engines, DBOS's included)."""

    def __init__(self) -> None:
        self.by_stmt: dict[str, list[float]] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    def install(self) -> None:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        event.listen(Engine, "before_cursor_execute", self._before)
        event.listen(Engine, "after_cursor_execute", self._after)

    def _before(self, *_: Any) -> None:
        self._local.t0 = time.perf_counter()

    def _after(self, _conn: Any, _cur: Any, statement: str, *_: Any) -> None:
        dt = time.perf_counter() - getattr(self._local, "t0", time.perf_counter())
        key = " ".join(statement.split())[:90]
        with self._lock:
            agg = self.by_stmt.setdefault(key, [0, 0.0])
            agg[0] += 1
            agg[1] += dt

    def top(self, n: int = 15) -> list[dict[str, Any]]:
        rows = sorted(self.by_stmt.items(), key=lambda kv: -kv[1][1])[:n]
        return [{"statement": k, "calls": int(v[0]), "seconds": round(v[1], 3)} for k, v in rows]


# --------------------------------------------------------------------------- configuration


def write_config(workdir: Path, spec: dict[str, Any]) -> Path:
    from ml_connector.config import example_config

    cfg = yaml.safe_load(example_config(spec["sap"]["base_url"], spec["ramp"]["base_url"]))
    cfg["engine"]["queue_polling_interval"] = float(spec.get("polling_interval", 0.2))
    limits = spec.get("ramp_limits")
    if limits:
        cfg["connections"]["ramp"]["limits"] = {"requests": int(limits["requests"]),
                                                "period": f"{float(limits['period']):g}s"}
    cfg["flows"][FLOW]["options"]["company_codes"] = list(spec.get("company_codes", ["1000", "2000", "3000"]))
    if spec.get("page_size"):
        cfg["flows"][FLOW]["options"]["page_size"] = int(spec["page_size"])
    path = workdir / "ml-connector.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- one step


def _ramp_stats(http: httpx.Client, ramp_url: str) -> dict[str, Any]:
    out: dict[str, Any] = http.get(f"{ramp_url}/_sandbox/stats").json()
    return out


def _delivery_phase(rt: Any, run_id: str, period: float | None) -> dict[str, Any]:
    """From the audit trail: when pages were staged and records written (each record event is
    stored when the target's answer came back). With `period`, also the write rate over the
    largest whole number of rate-limit windows from the first write (a rolling-window limit
    lets a burst through at the start, so a partial last window would flatter or penalise)."""
    from sqlalchemy import func, select

    from ml_connector.core.models import AuditRow

    with rt.db.session() as s:
        times = [t for (t,) in s.execute(select(AuditRow.at).where(
            AuditRow.run_id == run_id, AuditRow.event.like("record.%")).order_by(AuditRow.at))]
        staged_first, staged_last = s.execute(
            select(func.min(AuditRow.at), func.max(AuditRow.at)).where(
                AuditRow.run_id == run_id, AuditRow.event == "page.staged")).one()
    out: dict[str, Any] = {"records_written": len(times)}
    if times:
        first, last = times[0].timestamp(), times[-1].timestamp()
        out["first_write_at"] = first
        out["last_write_at"] = last
        out["delivery_s"] = last - first
        if len(times) > 1 and last > first:
            out["writes_per_s"] = (len(times) - 1) / (last - first)
        if period:
            k = int((last - first) // period)
            if k >= 1:
                edge = first + k * period
                n = sum(1 for t in times if t.timestamp() < edge)
                out["windowed"] = {"windows": k, "period_s": period, "writes": n, "writes_per_s": n / (k * period)}
    if staged_first is not None:
        out["first_page_staged_at"] = staged_first.timestamp()
        out["last_page_staged_at"] = staged_last.timestamp()
    return out


def _finished_at(rt: Any, run_id: str) -> float | None:
    """When the run's last step committed (epoch seconds), from its row."""
    from ml_connector.core.models import RunRow

    with rt.db.read() as s:
        run = s.get(RunRow, run_id)
        at = run.finished_at if run is not None else None
    if at is None:
        return None
    if at.tzinfo is None:  # SQLite keeps no zone: the engine writes UTC
        at = at.replace(tzinfo=UTC)
    return float(at.timestamp())


def run_step(rt: Any, http: httpx.Client, spec: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
    from ml_connector.core import engine

    ramp_url = spec["ramp"]["base_url"]
    before = _ramp_stats(http, ramp_url)
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    reset_ok = reset_peak_rss()
    rss_before = rss_mb()
    frames = int(os.environ.get("MLC_BENCH_TRACEMALLOC", "0") or 0)
    tm = TraceMalloc(frames) if frames > 0 else None
    if tm is not None:
        tm.start()
    probe = MemProbe() if os.environ.get("MLC_BENCH_MEMPROBE") else None
    if probe is not None:
        probe.start()
    t_start = time.time()
    t0 = time.perf_counter()
    run_id = engine.start_sync(FLOW, STREAM, full=bool(step.get("full")))
    # Waiting polls the run's status in this process: every 20 ms took a tenth of the sync's busy
    # samples from it. Poll at the CLI's pace instead and take the end from the run itself (when
    # its last step committed), so neither the polling nor its interval counts in the wall time.
    counts = engine.wait(run_id, poll=0.2, timeout=float(step.get("timeout", 900)))
    wall = time.perf_counter() - t0
    finished = _finished_at(rt, run_id)
    if finished is not None and t_start < finished <= t_start + wall:
        wall = finished - t_start
    peak = peak_rss_mb()
    traced = tm.stop(str(step.get("name", run_id))) if tm is not None else {}
    if probe is not None:
        traced["memory_timeline"] = probe.stop()
        traced["sqlite_connections"] = probe.sqlite_connections()
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    after = _ramp_stats(http, ramp_url)
    phase = _delivery_phase(rt, run_id, step.get("rate_period"))
    for k in ("first_write_at", "last_write_at", "first_page_staged_at", "last_page_staged_at"):
        if k in phase:
            phase[k.replace("_at", "_s")] = phase.pop(k) - t_start
    writes = sum(int(counts.get(k, 0)) for k in ("created", "updated", "deactivated"))
    return {
        "name": step.get("name", run_id),
        "run_id": run_id,
        "mode": "full" if step.get("full") else "incremental",
        "wall_s": wall,
        "counts": counts,
        "read": int(counts.get("read", 0)),
        "writes": writes,
        "ramp_requests": int(after["requests_total"]) - int(before["requests_total"]),
        "ramp_429": int(after["sent_429"]) - int(before["sent_429"]),
        "ramp_peak_in_window": int(after.get("peak_in_window", 0)),
        "ramp_vendors": int(after.get("vendors", 0)),
        "cpu_s": (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime),
        "rss_before_mb": rss_before,
        "peak_rss_mb": peak,
        "peak_rss_is_per_step": reset_ok,
        **traced,
        **phase,
    }


# --------------------------------------------------------------------------- main


def run(spec: dict[str, Any]) -> dict[str, Any]:
    from ml_connector.config import load_config
    from ml_connector.core import engine
    from ml_connector.core.runtime import Runtime

    workdir = Path(spec["workdir"])
    workdir.mkdir(parents=True, exist_ok=True)
    cfg_path = write_config(workdir, spec)
    rt = Runtime(load_config(cfg_path), cfg_path)
    rt.vault.set("sap_ecc_password", spec["sap"]["password"])
    rt.vault.set("ramp_client_secret", spec["ramp"]["client_secret"])
    sql = SqlTimings() if spec.get("sql_timings") else None
    if sql is not None:
        sql.install()
    sampler = StackSampler() if spec.get("sample") else None
    if sampler is not None:
        sampler.start()
    profs = ThreadProfiles() if spec.get("profile") else None
    if profs is not None:
        profs.install()  # before DBOS starts its threads
    engine.start(rt, polling_interval=float(spec.get("polling_interval", 0.2)))
    steps_out = []
    try:
        with httpx.Client(timeout=30) as http:
            for step in spec["steps"]:
                steps_out.append(run_step(rt, http, spec, step))
    finally:
        engine.shutdown()
        rt.close()
    if profs is not None:
        profs.dump(spec["profile"], top=int(spec.get("profile_top", 30)))
    extra: dict[str, Any] = {"sql_timings": sql.top()} if sql is not None else {}
    if sampler is not None:
        sampler.stop()
        extra["samples"] = sampler.report()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {**extra, "steps": steps_out, "process_peak_rss_mb": peak}


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    out = run(spec)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
