"""The command line: init, secrets, sandbox, run, sync, ping, failures, replay, parked, review, mappings, runs, demo."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ml_connector.agent.cli import register_commands as register_agent_commands
from ml_connector.cli_common import (
    ConfigOpt,
    cell_wrap,
    console,
    engine_failures_at_debug,
    err,
    fail,
    load,
    runtime,
)
from ml_connector.cli_reconcile import register_commands as register_reconcile_commands
from ml_connector.server.cli import register_commands as register_server_commands

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="ml-connector: SAP ↔ cloud applications, durable and idempotent.")
secrets_app = typer.Typer(no_args_is_help=True, help="Encrypted secrets (AES-GCM) stored in the database.")
mappings_app = typer.Typer(no_args_is_help=True, help="Mapping tables; setting a mapping resumes parked records.")
app.add_typer(secrets_app, name="secrets")
app.add_typer(mappings_app, name="mappings")

DEFAULT_CONFIG = Path("ml-connector.yaml")
# The helpers every command group shares live in cli_common (no import cycle through this module).
_load = load
_runtime = runtime
_fail = fail


def _setup_logging() -> None:
    from ml_connector.core.redact import install_log_redaction

    level = os.environ.get("MLC_LOG_LEVEL", "WARNING")
    if os.environ.get("MLC_LOG_FORMAT", "text").lower() == "json":  # one JSON object per line (core/jsonlog.py)
        from ml_connector.core.jsonlog import use_json_logs

        use_json_logs(level)
    else:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_redaction()


@app.callback()
def _main() -> None:
    _setup_logging()


# ------------------------------------------------------------------------------ init / secrets


@app.command()
def init(config: ConfigOpt = DEFAULT_CONFIG,
         sap_url: str = typer.Option("http://127.0.0.1:8010", help="SAP ECC base URL (the sandbox by default)."),
         ramp_url: str = typer.Option("http://127.0.0.1:8020", help="Ramp API base URL (the sandbox by default)."),
         force: bool = typer.Option(False, help="Overwrite an existing file.")) -> None:
    """Write a commented example configuration wired to the sandbox."""
    from ml_connector.config import example_config

    if config.exists() and not force:
        raise _fail(f"{config} exists; use --force to overwrite it")
    config.write_text(example_config(sap_url, ramp_url), encoding="utf-8")
    console.print(f"wrote {config}. Next: [bold]ml-connector sandbox[/bold] in another terminal, then "
                  "set the secrets it names with [bold]ml-connector secrets set NAME[/bold].")


@secrets_app.command("set")
def secrets_set(name: str, config: ConfigOpt = DEFAULT_CONFIG,
                value_stdin: bool = typer.Option(False, "--stdin", help="Read the value from standard input.")
                ) -> None:
    """Store a secret; the value is read from a prompt (or stdin), never from the command line."""
    rt = _runtime(config)
    if value_stdin or not sys.stdin.isatty():
        value = sys.stdin.read().rstrip("\r\n")
    else:
        value = typer.prompt(f"value for {name}", hide_input=True, confirmation_prompt=True)
    if not value:
        raise _fail("empty value: nothing stored")
    rt.vault.set(name, value)
    console.print(f"stored secret [bold]{name}[/bold]")


@secrets_app.command("list")
def secrets_list(config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Secret names (never values)."""
    rt = _runtime(config)
    t = Table("name", "key id", "updated")
    for s in rt.vault.list():
        t.add_row(s.name, s.key_id, str(s.updated_at))
    console.print(t)


@secrets_app.command("rotate-key")
def secrets_rotate(config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Re-encrypt every secret and token under a new master key."""
    from ml_connector.core.vault import MasterKey

    rt = _runtime(config)
    new_key = MasterKey.generate()
    from_env = rt.vault.key.source == "env"
    n = rt.vault.rotate_key(new_key)
    console.print(f"re-encrypted {n} item(s) under the new master key {new_key.key_id}")
    if from_env:
        # The key came from MLC_MASTER_KEY: nothing was written; the operator must store it.
        console.print("the master key comes from MLC_MASTER_KEY: set it to this new value now:")
        print(new_key.encode())


# ------------------------------------------------------------------------------ sandbox


def _sandbox_ports(specs: list[str]) -> dict[str, int]:
    """`--port NAME=PORT` options over the registered emulators' default ports."""
    from ml_connector.core import registry

    ports = {e.name: e.emulator.default_port for e in registry.with_emulator() if e.emulator is not None}
    for spec in specs:
        name, sep, value = spec.partition("=")
        name = name.strip()
        if not sep or not value.strip().isdigit() or int(value) > 65535:
            raise _fail(f"--port {spec!r}: expected NAME=PORT, e.g. --port {next(iter(ports), 'name')}=0", 2)
        if name not in ports:
            raise _fail(f"--port {spec!r}: no sandbox named {name!r} (sandboxes: {', '.join(ports) or 'none'})", 2)
        ports[name] = int(value)
    return ports


@app.command()
def sandbox(host: str = typer.Option("127.0.0.1", help="Loopback address to bind."),
            port: list[str] = typer.Option([], "--port", metavar="NAME=PORT",
                                           help="A system's emulator port (0 = any free port); repeatable. "
                                                "Default: each system's own port."),
            vendors: int = typer.Option(3000, help="Number of seeded SAP vendors."),
            state_dir: Path | None = typer.Option(None, help="Keep the emulators' data here between runs."),
            as_json: bool = typer.Option(False, "--json", help="Print base URLs and credentials as JSON."),
            ) -> None:
    """Start the sandbox emulators of every registered system on loopback and serve until stopped."""
    from ml_connector.sandbox import start_sandboxes

    ports = _sandbox_ports(port)
    handles = start_sandboxes(host=host, ports=ports, vendors=vendors, state_dir=state_dir, systems=tuple(ports))
    info = {name: h.info for name, h in handles.items()}
    if as_json:
        print(json.dumps(info), flush=True)
    else:
        t = Table("system", "base URL", "credentials")
        for name, i in info.items():
            creds = ", ".join(f"{k}={v}" for k, v in i.items() if k not in ("base_url",))
            t.add_row(name, i["base_url"], creds)
        console.print(t)
        console.print("serving; Ctrl-C to stop")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        for h in handles.values():
            h.stop()


# ------------------------------------------------------------------------------ run / sync


@app.command()
def run(config: ConfigOpt = DEFAULT_CONFIG,
        worker_id: str | None = typer.Option(None, envvar="MLC_WORKER_ID",
                                             help="Stable worker id (Postgres scale-out)."),
        no_server: bool = typer.Option(False, help="Only the worker, no HTTP server.")) -> None:
    """Start the worker (schedules and queues) and the HTTP server.

    On SQLite only one process may be the worker of a database: a second `run` exits
    with an error naming the lock file and the pid holding it."""
    from ml_connector.config import ConfigError
    from ml_connector.core import engine
    from ml_connector.server import listen

    rt = _runtime(config)
    listener = None
    if not no_server:
        try:  # TLS files are checked before the worker starts
            listener = listen.plan(rt)
        except ConfigError as exc:
            err.print("[red]configuration error[/red]", highlight=False)
            err.print(str(exc), highlight=False, markup=False)
            raise typer.Exit(2) from None
    try:
        engine.start(rt, executor_id=worker_id, schedules=True, role="run")
    except engine.WorkerBusy as exc:
        rt.close()
        raise _fail(str(exc)) from None
    console.print(f"worker {worker_id or engine.default_executor_id(rt.database_url)} started; "
                  f"database {rt.db.engine.url.render_as_string(hide_password=True)}")
    try:
        if listener is None:
            while True:
                time.sleep(3600)
        else:
            listen.serve(rt, listener, announce=lambda line: console.print(line, highlight=False))
    except KeyboardInterrupt:
        pass
    finally:
        engine.shutdown()
        rt.close()


#: A run's counts, in the summary table and `runs`. `adopted`: records found in the target instead of
#: created (compared with the source and corrected when they differed; a correction also counts as
#: updated or deactivated).
RUN_COUNTS = ("read", "created", "adopted", "updated", "deactivated", "unchanged", "parked", "failed")


def summary_table(flow: str, stream: str, counts: dict[str, Any]) -> Table:
    # No outer border or edge padding: the eight headers and counts of hundreds of thousands then fit an 80-column
    # terminal whole.
    t = Table(title=f"{flow} / {stream}", show_edge=False, pad_edge=False)
    for col in RUN_COUNTS:
        t.add_column(col, justify="right")
    t.add_row(*(str(counts.get(c, 0)) for c in RUN_COUNTS))
    return t


@app.command()
def sync(flow: str, config: ConfigOpt = DEFAULT_CONFIG,
         stream: str | None = typer.Option(None, "--stream", "-s", help="Only this stream."),
         full: bool = typer.Option(False, "--full", help="Re-read everything, not only changes."),
         dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be written; write nothing."),
         force: bool = typer.Option(False, "--force", help="Start even a run the flow defers now (e.g. a "
                                    "large full comparison during business hours)."),
         ) -> None:
    """Run one sync now, with a progress bar and a summary.

    On SQLite, when a worker (`run`) is running on the database, it does the sync and
    this command follows it; otherwise the sync runs in this process."""
    from ml_connector.core import engine

    rt = _runtime(config)
    try:
        f = rt.flow(flow)
        streams = [stream] if stream else list(f.cfg.streams)
        for s in streams:
            f.stream(s)
    except KeyError as exc:
        raise _fail(str(exc.args[0])) from None
    from ml_connector.core import flow_pause

    try:
        flow_pause.check(rt, flow)
    except flow_pause.FlowPaused as exc:
        rt.close()
        raise _fail(str(exc)) from None
    if dry_run:
        n = 0
        t = Table("op", "source key", "what would be written", title=f"dry run: {flow}")
        for s in streams:
            for op, key, desc in engine.dry_run(rt, flow, s, full=full):
                t.add_row(op, key, desc)
                n += 1
        console.print(t)
        console.print(f"{n} write(s) would be made; nothing was written.")
        rt.close()
        return
    _connect(rt, "sync")
    # A failed run is reported by one error line (sync_with_progress); the engine's traceback goes
    # to the log at debug level. Until after shutdown: DBOS logs it from the workflow's thread.
    with engine_failures_at_debug():
        try:
            exit_code = sync_with_progress(rt, flow, streams, full=full, force=force)
        finally:
            engine.shutdown()
            rt.close()
    if exit_code:
        raise typer.Exit(exit_code)


def _connect(rt: Any, role: str) -> None:
    """Run here, or hand the work to the worker already running on this SQLite database."""
    from ml_connector.core import engine

    mode = engine.connect(rt, role=role)
    if mode.startswith("worker:"):
        err.print(f"a worker (pid {mode.split(':', 1)[1]}) is running on this database: "
                  "it does the work; following it from here", highlight=False)


def sync_with_progress(rt: Any, flow: str, streams: list[str], *, full: bool = False,
                       out: Console | None = None, force: bool = False) -> int:
    """Start one run per stream and follow it with a progress bar; print the summary. 0 = all written."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from ml_connector.core import engine
    from ml_connector.core.flow import RunDeferred

    con = out or console
    exit_code = 0
    for s in streams:
        try:
            run_id = engine.start_sync(flow, s, full=full, force=force)
        except RunDeferred as exc:
            raise _fail(f"deferred: {exc}", 4) from None
        with Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                      MofNCompleteColumn(), TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
                      console=con, transient=False) as progress:
            task = progress.add_task(f"{flow}/{s}", total=None, detail="starting")

            def show(p: dict[str, Any], task: Any = task, progress: Any = progress) -> None:
                progress.update(task, completed=p.get("read", 0), total=p.get("estimate_total"),
                                detail=f"read {p.get('read', 0)} · written {p.get('written', 0)}")

            try:
                counts = engine.wait(run_id, on_progress=show)
            except RuntimeError as exc:
                raise _fail(str(exc)) from None
        con.print(summary_table(flow, s, counts))
        con.print(f"run id: {run_id}")
        if counts.get("waiting"):
            con.print(f"[yellow]waiting[/yellow] (not failed): {counts['waiting']}; the next run (schedule, "
                      "webhook or sync) reads again and posts")
        if counts.get("parked"):
            con.print(f"[yellow]{counts['parked']} record(s) parked[/yellow], waiting for a mapping or SAP master "
                      "data: see [bold]ml-connector parked[/bold]; they resume by themselves once it exists")
        if counts.get("failed") or counts.get("uncertain"):
            exit_code = 3
            con.print("[yellow]some records failed:[/yellow] see [bold]ml-connector failures[/bold]; "
                          "fix the cause, then [bold]ml-connector replay[/bold]")
    return exit_code


@app.command()
def ping(config: ConfigOpt = DEFAULT_CONFIG,
         timeout: str = typer.Option("30s", help="With the remote agent: how long a call may wait for an agent "
                                                 "of the site (e.g. 30s, 2m)")) -> None:
    """Ping every configured system (SAP: RFC_PING and RFC_SYSTEM_INFO; clouds: an authenticated call)."""
    from ml_connector.config import parse_duration
    from ml_connector.server.agents.channel import RemoteAgentChannel

    try:
        wait = parse_duration(timeout)
    except ValueError as exc:
        err.print(f"[red]error:[/red] --timeout: {exc}")
        raise typer.Exit(2) from None
    rt = _runtime(config)
    if isinstance(rt.channel, RemoteAgentChannel):
        rt.channel.timeout = wait  # a ping must not wait forever for an agent that is not there
    t = Table("connection", "type", "result", "detail")
    bad = 0
    for name, c in rt.config.connections.items():
        ok, detail = rt.ping_connection(name)
        bad += not ok
        t.add_row(name, c.type, "[green]ok[/green]" if ok else "[red]failed[/red]", detail)
    console.print(t)
    rt.close()
    if bad:
        raise typer.Exit(1)


@app.command()
def failures(config: ConfigOpt = DEFAULT_CONFIG, flow: str | None = typer.Option(None),
             as_json: bool = typer.Option(False, "--json")) -> None:
    """Records whose write failed, is uncertain, or was in flight when its run ended: id, record, error,
    attempts."""
    from ml_connector.core import outbox

    rt = _runtime(config)
    with rt.db.session() as s:
        rows = outbox.failures(s, flow=flow)
        data = [{"id": r.id, "flow": r.flow, "stream": r.stream, "record": r.source_key, "op": r.op,
                 "state": r.state, "attempts": r.attempts, "error": r.last_error} for r in rows]
    if as_json:
        print(json.dumps(data, default=str))
    else:
        console.print(failures_table(data))
    rt.close()


def failures_table(data: list[dict[str, Any]]) -> Table:
    """Readable at 80 columns: short columns never wrap; flow/stream, record and error wrap or fold."""
    t = Table(cell_wrap("id", no_wrap=True), cell_wrap("flow / stream"), cell_wrap("record"),
              cell_wrap("op", no_wrap=True), cell_wrap("state", no_wrap=True), cell_wrap("tries", no_wrap=True,
                                                                                          justify="right"),
              cell_wrap("error", ratio=3))
    for d in data:
        t.add_row(str(d["id"]), f"{d['flow']} / {d['stream']}", str(d["record"] or ""), str(d["op"] or ""),
                  str(d["state"] or ""), str(d["attempts"] or 0), str(d["error"] or ""))
    return t


@app.command()
def journey(ref: str, config: ConfigOpt = DEFAULT_CONFIG, as_json: bool = typer.Option(False, "--json")) -> None:
    """Every event of one record: REF is a source id (a Ramp bill id), a target document (an SAP
    document number or BELNR/BUKRS/GJAHR) or a reference (an XBLNR)."""
    from ml_connector.core.journey import journey as record_journey
    from ml_connector.core.redact import redact

    rt = _runtime(config)
    try:
        with rt.db.read() as s:
            steps = record_journey(s, ref)
    finally:
        rt.close()
    if as_json:
        print(redact(json.dumps(steps, default=str)))
        return
    if not steps:
        raise _fail(f"nothing is known about {ref!r}")
    t = Table(cell_wrap("at", no_wrap=True), cell_wrap("event", no_wrap=True), cell_wrap("outcome", no_wrap=True),
              cell_wrap("flow / stream"), cell_wrap("target"), cell_wrap("detail", ratio=3), title=f"journey of {ref}")
    for st in steps:
        detail = {k: v for k, v in (st["detail"] or {}).items() if v not in (None, "", [], {})}
        t.add_row(st["at"][:19], st["event"], str(st["outcome"]), f"{st['flow'] or ''} / {st['stream'] or ''}",
                  str(st["target"] or ""), redact(json.dumps(detail, default=str))[:500])
    console.print(t)


@app.command()
def parked(config: ConfigOpt = DEFAULT_CONFIG, flow: str | None = typer.Option(None)) -> None:
    """Records waiting for a mapping, and the mapping each waits for."""
    from ml_connector.core import outbox

    rt = _runtime(config)
    with rt.db.session() as s:
        rows = [(str(r.id), r.flow, r.source_key, r.parked_on or "") for r in outbox.parked(s, flow=flow)]
    console.print(parked_table(rows))
    rt.close()


def parked_table(rows: list[tuple[str, str, str, str]]) -> Table:
    t = Table(cell_wrap("id", no_wrap=True), cell_wrap("flow"), cell_wrap("record"), cell_wrap("waits for"))
    for row in rows:
        t.add_row(*row)
    return t


@app.command()
def review(config: ConfigOpt = DEFAULT_CONFIG, flow: str | None = typer.Option(None),
           as_json: bool = typer.Option(False, "--json")) -> None:
    """Documents marked for review: what each is (document, vendor, amount), what it waits for and
    why, since when, and the mapping that releases it (setting it posts the document)."""
    from dataclasses import asdict

    from ml_connector.core import review as review_list

    rt = _runtime(config)
    with rt.db.session() as s:
        data = review_list.items(s, rt.config.flows, flow=flow)
    rt.close()
    if as_json:
        print(json.dumps([asdict(d) for d in data], default=str))
        return
    t = Table(cell_wrap("id", no_wrap=True), cell_wrap("flow / document", ratio=2), cell_wrap("vendor"),
              cell_wrap("amount", no_wrap=True, justify="right"), cell_wrap("waits for", ratio=3),
              cell_wrap("since", no_wrap=True))
    for d in data:
        waits = d.waits_for + (f"\n{d.reason}" if d.reason else "") + (f"\n→ {d.hint}" if d.hint else "")
        t.add_row(str(d.id), f"{d.flow}: {d.document}", d.party, d.amount, waits, d.since.strftime("%Y-%m-%d %H:%M"))
    console.print(t)
    console.print(f"{len(data)} document(s) marked for review")


@app.command()
def replay(ids: Annotated[list[int] | None, typer.Argument(help="Outbox ids (see `failures`).")] = None,
           config: ConfigOpt = DEFAULT_CONFIG,
           all_failed: bool = typer.Option(False, "--all", help="Every failed or uncertain record."),
           flow: str | None = typer.Option(None, help="With --all: only this flow.")) -> None:
    """Retry selected failed records safely (uncertain ones are looked up in the target first).

    Done by the running worker if there is one on this SQLite database, else here."""
    from ml_connector.core import engine, outbox

    rt = _runtime(config)
    if all_failed:
        with rt.db.session() as s:
            ids = [r.id for r in outbox.failures(s, flow=flow, limit=100000)]
    if not ids:
        console.print("nothing to replay")
        rt.close()
        return
    _connect(rt, "replay")
    try:
        tally = engine.replay(list(ids))
    except RuntimeError as exc:
        raise _fail(str(exc)) from None
    finally:
        engine.shutdown()
        rt.close()
    console.print(f"replayed {len(ids)} record(s): " + ", ".join(f"{k} {v}" for k, v in sorted(tally.items())))


@app.command()
def runs(config: ConfigOpt = DEFAULT_CONFIG, limit: int = 20,
         as_json: bool = typer.Option(False, "--json", help="One JSON object per run.")) -> None:
    """Recent sync runs and their counts."""
    from sqlalchemy import select

    from ml_connector.core.models import RunRow
    from ml_connector.core.redact import redact

    rt = _runtime(config)
    with rt.db.session() as s:
        rows = list(s.scalars(select(RunRow).order_by(RunRow.started_at.desc()).limit(limit)))
        if as_json:
            print(json.dumps([{"run_id": r.run_id, "status": r.status, "started_at": str(r.started_at),
                               "finished_at": str(r.finished_at) if r.finished_at else None,
                               "counts": dict(r.counts), "error": redact(r.error) if r.error else None}
                              for r in rows]))
            rt.close()
            return
        t = runs_table(rows)
    console.print(t)
    _print_paused(rt)
    rt.close()


def _print_paused(rt: Any) -> None:
    """A line per paused flow (below `runs`): paused until someone resumes it."""
    from ml_connector.core import flow_pause

    with rt.db.read() as s:
        for row in flow_pause.paused_flows(s):
            since = time.strftime("%Y-%m-%d %H:%M", time.gmtime(row.paused_at or 0))
            console.print(f"[bold red]PAUSED[/bold red] flow {row.flow} since {since} UTC: {row.reason}; "
                          f"resume with [bold]ml-connector resume {row.flow}[/bold]", highlight=False)


@app.command()
def resume(flow: str, config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Resume a flow paused after repeated failed runs (audited)."""
    from ml_connector.core import flow_pause

    rt = _runtime(config)
    try:
        if flow not in rt.config.flows:
            raise _fail(f"no flow named {flow!r} in the configuration")
        if flow_pause.resume(rt, flow):
            console.print(f"flow {flow} resumed: its schedule runs again", highlight=False)
        else:
            console.print(f"flow {flow} was not paused", highlight=False)
    finally:
        rt.close()




def runs_table(rows: list[Any]) -> Table:
    """One row per run, readable at 80 columns: the run id folds, the times wrap between date and time,
    and the counts are one line each (those that are not zero; `read` always)."""
    t = Table(cell_wrap("run id", overflow="fold", ratio=2), cell_wrap("status", no_wrap=True),
              cell_wrap("started", max_width=10), cell_wrap("finished", max_width=10),
              cell_wrap("records", no_wrap=True))
    for r in rows:
        counts = {c: int((r.counts or {}).get(c, 0) or 0) for c in RUN_COUNTS}
        lines = [f"{c} {n}" for c, n in counts.items() if n or c == "read"]
        t.add_row(r.run_id, r.status, str(r.started_at)[:19], str(r.finished_at or "")[:19], "\n".join(lines))
    return t


@mappings_app.command("set")
def mappings_set(flow: str, table: str, source_value: str, target_value: str,
                 config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Set a mapping; records parked on it are resumed (by the running worker if any)."""
    from ml_connector.core import engine, mapping

    rt = _runtime(config)
    with rt.db.session() as s:
        waiting = mapping.put(s, flow, table, source_value, target_value)
    console.print(f"mapping {table}: {source_value} → {target_value} set")
    if waiting:
        _connect(rt, "mappings set")
        try:
            tally = engine.replay(waiting)
        except RuntimeError as exc:
            rt.close()
            raise _fail(str(exc)) from None
        finally:
            engine.shutdown()
        console.print(f"resumed {len(waiting)} parked record(s): {tally}")
    rt.close()


@mappings_app.command("list")
def mappings_list(flow: str, table: str, config: ConfigOpt = DEFAULT_CONFIG) -> None:
    from ml_connector.core import mapping

    rt = _runtime(config)
    with rt.db.session() as s:
        t = Table("source", "target", title=f"{flow} / {table}")
        for k, v in sorted(mapping.table(s, flow, table).items()):
            t.add_row(k, v)
    console.print(t)
    rt.close()


@app.command()
def demo(workdir: Path = typer.Option(Path("demo"), help="Where the demo keeps its config and data."),
         vendors: int = typer.Option(3000, help="Seeded SAP vendors.")) -> None:
    """Start the sandbox, sync SAP ECC vendors to Ramp, print the summary and where to look next."""
    from ml_connector.demo import run_demo

    raise typer.Exit(run_demo(workdir, vendors=vendors, console=console))

register_agent_commands(app)  # `agent`: the on-prem agent
register_server_commands(app)  # `api-tokens`, `agents`: the control plane


def register_contributed_commands(app: typer.Typer) -> None:
    """Commands a flow or system contributes (entry point group `ml_connector.commands`: a function
    taking the typer app), so that the CLI names none of them."""
    from importlib.metadata import entry_points

    for ep in sorted(entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
        ep.load()(app)


COMMANDS_GROUP = "ml_connector.commands"
register_contributed_commands(app)  # e.g. `audience` (SAP ECC → Marketing Cloud send-list checks)
register_reconcile_commands(app)  # `reconcile FLOW --period YYYY-MM`


def main() -> None:
    # httpcore imports trio, when it is installed, only to recognise a trio event loop; this process's
    # HTTP clients are synchronous. A development install has trio (selenium brings it) and every
    # command would pay ~0.3 s of CPU importing it. An install without trio is unchanged.
    if "trio" not in sys.modules:
        sys.modules["trio"] = None  # type: ignore[assignment]
    app()


if __name__ == "__main__":
    main()
