"""The operators' console: server-rendered pages (Jinja2, htmx vendored as a static file) at `/`.

Every page reads the platform's generic model (flows, runs, ledger, outbox, audit, connections,
agents) through server/console/queries.py, so an integration appears here without console code
of its own. Who may do what: server/roles.py (viewer reads, operator replays and maps, admin
manages credentials). Every form post carries the session's CSRF token; every action is audited
with its user. Reading works without JavaScript; htmx only refreshes parts of a page.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from importlib import resources
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from ml_connector import __version__
from ml_connector.core import audit
from ml_connector.core.redact import redact
from ml_connector.server.console import queries
from ml_connector.server.console.users import (
    ClientThrottle,
    Session,
    authenticate,
    csrf_ok,
    end_session,
    session_of,
    start_session,
)
from ml_connector.server.roles import allows

log = logging.getLogger(__name__)

COOKIE = "mlc_session"
LOGIN_CSRF_COOKIE = "mlc_login_csrf"
HTMX_FILE = "htmx-2.0.4.min.js"
#: Pages may load scripts, styles and images of this server only; no page may be framed.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'; "
                               "form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class LoginNeeded(Exception):
    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


class Forbidden(Exception):
    def __init__(self, needed: str, session: Session) -> None:
        super().__init__(needed)
        self.needed, self.session = needed, session


def _ago(ts: float | None) -> str:
    if ts is None:
        return "never"
    secs = max(0, int(time.time() - ts))
    if secs < 120:
        return f"{secs} s ago"
    if secs < 7200:
        return f"{secs // 60} min ago"
    return f"{secs // 3600} h ago"


def _when(dt: Any) -> str:
    if dt is None:
        return ""
    return str(dt)[:19].replace("T", " ")


def _env() -> Environment:
    env = Environment(loader=PackageLoader("ml_connector.server.console", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True))
    env.filters["ago"] = _ago
    env.filters["when"] = _when
    env.filters["redact"] = lambda text: redact(str(text)) if text else ""
    env.filters["digest"] = lambda body: audit.digest(body) or ""
    env.filters["body"] = lambda body: redact(json.dumps(body, indent=2, sort_keys=True, default=str))
    env.filters["duration"] = queries.duration
    env.filters["epoch"] = lambda ts: time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(ts))) if ts else ""
    env.globals["allows"] = allows
    env.globals["version"] = __version__
    from ml_connector.core.reconcile import KINDS

    env.globals["kinds"] = KINDS
    return env


def install_console(api: FastAPI, rt: Any, admin_dep: list[Any]) -> None:
    """Add the console's pages, its static files and `/metrics` to the control plane's app."""
    from ml_connector.server.console.metrics import metrics_router

    api.include_router(console_router(rt))
    api.include_router(metrics_router(rt, admin_dep))
    from ml_connector.server.approvals import approvals_api

    api.include_router(approvals_api(rt, admin_dep))

    async def login_needed(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LoginNeeded)
        return RedirectResponse(f"/login?next={quote(exc.path, safe='/')}", status_code=303)

    api.add_exception_handler(LoginNeeded, login_needed)
    from ml_connector.core.conditions import watcher_for

    watcher = watcher_for(rt)  # records parked too long, stale streams (core/conditions.py)
    if watcher is not None:
        watcher.start()
    api.add_exception_handler(Forbidden, _forbidden_handler(_env()))


def _forbidden_handler(env: Environment) -> Callable[..., Any]:
    async def forbidden(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Forbidden)
        html = env.get_template("forbidden.html").render(session=exc.session, needed=exc.needed, page="",
                                                          request=request)
        return HTMLResponse(html, status_code=403, headers=SECURITY_HEADERS)

    return forbidden


def console_router(rt: Any) -> APIRouter:
    env = _env()
    throttle = ClientThrottle()
    router = APIRouter(include_in_schema=False)
    db = rt.db

    def render(name: str, request: Request, session: Session | None, status: int = 200, **ctx: Any) -> HTMLResponse:
        html = env.get_template(name).render(request=request, session=session, msg=request.query_params.get("msg"),
                                             **ctx)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    def needs(role: str) -> Callable[[Request], Session]:
        def dep(request: Request) -> Session:
            session = session_of(db, request.cookies.get(COOKIE))
            if session is None:
                raise LoginNeeded(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
            if not allows(session.user.role, role):
                raise Forbidden(role, session)
            return session

        return dep

    def posted(role: str) -> Callable[..., Session]:
        """A form post: a session of `role` and the session's CSRF token in the form (403 otherwise)."""
        page_dep = needs(role)

        def dep(request: Request, csrf: str = Form("")) -> Session:
            session = page_dep(request)
            if not csrf_ok(session.csrf, csrf):
                with db.session() as s:
                    audit.record(s, "console.csrf_refused", outcome="failed",
                                 detail={"user": session.user.username, "path": request.url.path})
                raise Forbidden("csrf", session)
            return session

        return dep

    viewer = needs("viewer")

    def back(path: str, msg: str) -> RedirectResponse:
        sep = "&" if "?" in path else "?"
        return RedirectResponse(f"{path}{sep}msg={quote(msg)}", status_code=303)

    # ---------------------------------------------------------------- login

    @router.get("/login")
    def login_page(request: Request, next: str = "/") -> HTMLResponse:
        import secrets

        token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
        resp = render("login.html", request, None, next=_safe_next(next), login_csrf=token, error=None)
        resp.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/login")
        return resp

    @router.post("/login")
    def login(request: Request, username: str = Form(""), password: str = Form(""), csrf: str = Form(""),
              next: str = Form("/")) -> Response:
        cookie = request.cookies.get(LOGIN_CSRF_COOKIE)
        nxt = _safe_next(next)
        if not cookie or not csrf_ok(cookie, csrf):
            return render("login.html", request, None, status=403, next=nxt, login_csrf=cookie or "",
                          error="The form expired; please try again.")
        client = request.client.host if request.client else ""
        result = authenticate(db, username, password, client, throttle)
        if result.user is None:
            error = ("Too many failed attempts; wait a few minutes and try again."
                     if result.reason in ("locked", "throttled") else "Wrong user name or password.")
            return render("login.html", request, None, status=429 if result.reason in ("locked", "throttled")
                          else 401, next=nxt, login_csrf=cookie, error=error)
        resp = RedirectResponse(nxt, status_code=303)
        resp.set_cookie(COOKIE, start_session(db, result.user), httponly=True, samesite="lax",
                        secure=request.url.scheme == "https", path="/")
        resp.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
        return resp

    @router.post("/logout")
    def logout(request: Request, session: Session = Depends(posted("viewer"))) -> Response:
        end_session(db, request.cookies.get(COOKIE))
        with db.session() as s:
            audit.record(s, "console.logout", detail={"user": session.user.username})
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(COOKIE, path="/")
        return resp

    @router.get("/static/htmx.js")
    def htmx() -> Response:
        body = (resources.files("ml_connector.server.console") / "static" / HTMX_FILE).read_bytes()
        return Response(body, media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"})

    @router.get("/static/console.css")
    def css() -> Response:
        body = (resources.files("ml_connector.server.console") / "static" / "console.css").read_bytes()
        return Response(body, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"})

    # ---------------------------------------------------------------- pages

    @router.get("/")
    def overview_page(request: Request, session: Session = Depends(viewer)) -> HTMLResponse:
        flows, attention = queries.overview(rt)
        budgets = queries.budgets(rt)
        attention += [queries.Attention(f"API budget of {b.provider} ({b.key}) is {b.used}/{b.limit} used: calls "
                                        "will wait for the window to free up", "#budgets-h") for b in budgets if b.low]
        return render("overview.html", request, session, page="overview", flows=flows, attention=attention,
                      budgets=budgets)

    @router.get("/runs")
    def runs_page(request: Request, flow: str | None = None, session: Session = Depends(viewer)) -> HTMLResponse:
        rows = queries.runs(rt, flow=flow or None)
        name = "runs_table.html" if request.headers.get("HX-Request") else "runs.html"
        return render(name, request, session, page="runs", runs=rows, flow=flow or "",
                      live=any(r.status == "running" for r in rows), flows=list(rt.config.flows))

    @router.get("/runs/{run_id:path}")
    def run_page(run_id: str, request: Request, session: Session = Depends(viewer)) -> HTMLResponse:
        row, events, counts = queries.run_detail(rt, run_id)
        if row is None:
            return render("notfound.html", request, session, status=404, page="runs", what=f"run {run_id}")
        return render("run.html", request, session, page="runs", run=row, events=events, states=counts,
                      calls=queries.run_calls(rt, run_id), replay_calls=queries.run_replay_calls(rt, run_id))

    @router.get("/journey")
    def journey_page(request: Request, q: str = "", session: Session = Depends(viewer)) -> HTMLResponse:
        return render("journey.html", request, session, page="journey", j=queries.journey(rt, q[:300]))

    @router.get("/inbox")
    def inbox_page(request: Request, flow: str = "", session: Session = Depends(viewer)) -> HTMLResponse:
        return render("inbox.html", request, session, page="inbox", groups=queries.inbox(rt, flow or None),
                      flow=flow, flows=list(rt.config.flows))

    @router.post("/inbox/replay")
    def replay(request: Request, ids: list[int] = Form(default_factory=list),
               session: Session = Depends(posted("operator"))) -> Response:
        from ml_connector.core import engine

        if not ids:
            return back("/inbox", "Select at least one record to replay.")
        with db.session() as s:
            audit.record(s, "console.replay", detail={"user": session.user.username, "ids": ids[:1000]})
        try:
            tally = engine.replay(ids)
        except RuntimeError as exc:
            return back("/inbox", f"Replay could not start: {redact(str(exc))[:300]}")
        return back("/inbox", f"Replayed {len(ids)} record(s): "
                    + ", ".join(f"{k} {v}" for k, v in sorted(tally.items())))

    @router.post("/inbox/resolve")
    def resolve(request: Request, ids: list[int] = Form(default_factory=list), note: str = Form(""),
                session: Session = Depends(posted("operator"))) -> Response:
        """Close records without a retry (fixed by hand in the target, or not to be sent): audited with a note."""
        from sqlalchemy import select

        from ml_connector.core import outbox
        from ml_connector.core.models import OutboxRow

        note = note.strip()
        if not ids or not note or len(note) > 500:
            return back("/inbox", "Select records and say why they need no retry (at most 500 characters).")
        with db.session() as s:
            rows = [r for r in outbox.entries_by_id(s, ids)]
            open_ids = [r.id for r in rows if r.state in ("failed", "uncertain", "in_flight", "parked")]
            outbox.set_state(s, open_ids, "resolved", error=f"resolved without retry by {session.user.username}: "
                                                            f"{note}")
            for r in s.scalars(select(OutboxRow).where(OutboxRow.id.in_(open_ids))):
                audit.record(s, "record.resolved", flow=r.flow, stream=r.stream, source=f"{r.flow}:{r.source_key}",
                             detail={"user": session.user.username, "note": note, "outbox_id": r.id})
        return back("/inbox", f"Resolved {len(open_ids)} record(s) without a retry.")

    # ---------------------------------------------------------------- approval before posting

    @router.get("/approvals")
    def approvals_page(request: Request, flow: str = "", session: Session = Depends(viewer)) -> HTMLResponse:
        from ml_connector.core import approval

        return render("approvals.html", request, session, page="approvals", flow=flow, flows=list(rt.config.flows),
                      items=approval.queue(rt, flow=flow or None))

    @router.post("/approvals/approve")
    def approvals_approve(request: Request, ids: list[int] = Form(default_factory=list),
                          session: Session = Depends(posted("operator"))) -> Response:
        from ml_connector.core import approval

        if not ids:
            return back("/approvals", "Choose a record to approve.")
        try:
            moved, tally = approval.approve(rt, ids, session.user.username)
        except Exception as exc:  # no worker to send them: they stay approved, and approving again sends them
            return back("/approvals", f"Approved; sending could not start: {redact(str(exc))[:300]}")
        return back("/approvals", f"Approved {len(moved)} record(s); sent: "
                    + (", ".join(f"{k} {v}" for k, v in sorted(tally.items())) or "nothing"))

    @router.post("/approvals/reject")
    def approvals_reject(request: Request, ids: list[int] = Form(default_factory=list), note: str = Form(""),
                         session: Session = Depends(posted("operator"))) -> Response:
        from ml_connector.core import approval

        note = note.strip()
        if not ids or not note or len(note) > 500:
            return back("/approvals", "Say why the record must not be sent (at most 500 characters).")
        moved = approval.reject(rt, ids, session.user.username, note)
        return back("/approvals", f"Rejected {len(moved)} record(s); they will not be sent.")

    @router.post("/approvals/check")
    def approvals_check(request: Request, ids: list[int] = Form(default_factory=list),
                        session: Session = Depends(posted("operator"))) -> Response:
        from ml_connector.core import approval

        try:
            n = approval.recheck(rt, ids, session.user.username)
        except Exception as exc:  # a flow that cannot be built (configuration): said on the page
            return back("/approvals", f"The check could not be made: {redact(str(exc))[:300]}")
        return back("/approvals", f"Asked the target again about {n} record(s).")

    # ---------------------------------------------------------------- one record: edit and retry, assign, notes

    @router.get("/inbox/record/{entry_id}")
    def record_page(entry_id: int, request: Request, session: Session = Depends(viewer)) -> HTMLResponse:
        from ml_connector.core import record_work
        from ml_connector.core.models import OutboxRow
        from ml_connector.server.console.catalogue import classify
        from ml_connector.server.console.users import list_users

        with db.read() as s:
            row = s.get(OutboxRow, entry_id)
            if row is None:
                return render("notfound.html", request, session, status=404, page="inbox",
                              what=f"record #{entry_id}")
            work = record_work.work_of(s, [row])[row.id]
            s.expunge(row)
        return render("record.html", request, session, page="inbox", r=row, work=work,
                      cause=classify(row.state, row.parked_on, row.last_error),
                      fields=list(record_work.fields(row.payload)),
                      editable=row.state in record_work.EDITABLE_STATES,
                      people=[u["username"] for u in list_users(db) if u["state"] == "active"])

    @router.post("/inbox/record/{entry_id}/edit")
    def record_edit(entry_id: int, request: Request, field: str = Form(""), value: str = Form(""),
                    retry: str = Form(""), session: Session = Depends(posted("operator"))) -> Response:
        from ml_connector.core import engine, record_work

        here = f"/inbox/record/{entry_id}"
        try:
            with db.session() as s:
                record_work.edit(s, entry_id, field, value, user=session.user.username)
        except record_work.EditError as exc:
            return back(here, f"Not changed: {exc}")
        if not retry:
            return back(here, f"{field} changed; the record waits for a retry.")
        try:
            tally = engine.replay([entry_id])
        except Exception as exc:  # no worker to run it: the edit is kept; retry from the inbox
            return back(here, f"{field} changed; the retry could not start: {redact(str(exc))[:300]}")
        return back(here, f"{field} changed and retried: " + ", ".join(f"{k} {v}" for k, v in sorted(tally.items())))

    @router.post("/inbox/record/{entry_id}/assign")
    def record_assign(entry_id: int, request: Request, assignee: str = Form(""),
                      session: Session = Depends(posted("operator"))) -> Response:
        from ml_connector.core import record_work
        from ml_connector.server.console.users import list_users

        here = f"/inbox/record/{entry_id}"
        if assignee and assignee not in {str(u["username"]) for u in list_users(db) if u["state"] == "active"}:
            return back(here, "Choose a person who can log in to the console.")
        with db.session() as s:
            n = record_work.assign(s, [entry_id], assignee, user=session.user.username)
        if not n:
            return back("/inbox", f"No record #{entry_id}.")
        return back(here, f"Assigned to {assignee}." if assignee else "Assigned to nobody.")

    @router.post("/inbox/record/{entry_id}/note")
    def record_note(entry_id: int, request: Request, note: str = Form(""),
                    session: Session = Depends(posted("operator"))) -> Response:
        from ml_connector.core import record_work

        here = f"/inbox/record/{entry_id}"
        note = note.strip()
        if not note or len(note) > 2000:
            return back(here, "Write a note (at most 2000 characters).")
        with db.session() as s:
            if not record_work.note(s, entry_id, note, user=session.user.username):
                return back("/inbox", f"No record #{entry_id}.")
        return back(here, "Note added.")

    def save_mapping(flow: str, table: str, source_value: str, target_value: str, user: str,
                     to: str) -> Response:
        """Save a mapping and resume the parked records it unblocks (the inbox and the mapping editor)."""
        from ml_connector.core import engine, mapping

        target_value, source_value, table = target_value.strip(), source_value.strip(), table.strip()
        if flow not in rt.config.flows:
            return back(to, f"No flow named {flow}.")
        if not table or not source_value or len(table) > 100 or len(source_value) > 200:
            return back(to, "Name the table and the source value (at most 100 and 200 characters).")
        if not target_value or len(target_value) > 200:
            return back(to, "Enter the value the target system uses (at most 200 characters).")
        with db.session() as s:
            waiting = mapping.put(s, flow, table, source_value, target_value, actor=user)
        if not waiting:
            return back(to, f"Mapping {table}: {source_value} → {target_value} saved.")
        try:
            tally = engine.replay(waiting)
        except Exception as exc:  # no worker to run it: the mapping is kept; the next run resumes them
            return back(to, f"Mapping saved; resuming the records failed: {redact(str(exc))[:300]}")
        return back(to, f"Mapping {table}: {source_value} → {target_value} saved; resumed {len(waiting)} "
                    "record(s): " + ", ".join(f"{k} {v}" for k, v in sorted(tally.items())))

    @router.post("/inbox/mapping")
    def set_mapping(request: Request, flow: str = Form(...), table: str = Form(...), source_value: str = Form(...),
                    target_value: str = Form(...), session: Session = Depends(posted("operator"))) -> Response:
        return save_mapping(flow, table, source_value, target_value, session.user.username, "/inbox")

    @router.get("/mappings")
    def mappings_page(request: Request, flow: str = "", session: Session = Depends(viewer)) -> HTMLResponse:
        chosen = flow if flow in rt.config.flows else next(iter(rt.config.flows), "")
        return render("mappings.html", request, session, page="mappings", flow=chosen, flows=list(rt.config.flows),
                      tables=queries.mapping_tables(rt, chosen) if chosen else [])

    @router.post("/mappings/set")
    def mappings_set(request: Request, flow: str = Form(""), table: str = Form(""), source_value: str = Form(""),
                     target_value: str = Form(""), session: Session = Depends(posted("operator"))) -> Response:
        return save_mapping(flow, table, source_value, target_value, session.user.username,
                            f"/mappings?flow={quote(flow)}")

    @router.post("/mappings/remove")
    def mappings_remove(request: Request, flow: str = Form(""), table: str = Form(""), source_value: str = Form(""),
                        session: Session = Depends(posted("operator"))) -> Response:
        from ml_connector.core import mapping

        to = f"/mappings?flow={quote(flow)}"
        with db.session() as s:
            if mapping.get(s, flow, table, source_value) is None:
                return back(to, f"No mapping {table}: {source_value} in {flow}.")
            mapping.remove(s, flow, table, source_value, actor=session.user.username)
        return back(to, f"Mapping {table}: {source_value} removed; records that need it wait again.")

    @router.post("/connections/add")
    def add_connection(request: Request, name: str = Form(""), type: str = Form(""), settings: str = Form(""),
                       session: Session = Depends(posted("admin"))) -> Response:
        """A new connection in the configuration file (validated first); its credentials come next."""
        from ml_connector.server.console.connections_add import add_connection

        name = name.strip()
        try:
            add_connection(rt, name, type.strip(), settings)
        except ValueError as exc:
            return back(f"/connections?add_type={quote(type.strip())}", str(exc))
        with db.session() as s:
            audit.record(s, "console.connection.added", target=name,
                         detail={"user": session.user.username, "connection": name, "type": type.strip()})
        return back("/connections", f"Connection {name} added. Enter its credentials below, then test it.")

    @router.get("/connections")
    def connections_page(request: Request, session: Session = Depends(viewer)) -> HTMLResponse:
        conns = []
        for name, cfg in rt.config.connections.items():
            secrets_ = [(setting, secret, rt.vault.exists(secret)) for setting, secret in
                        queries.connection_secrets(cfg)]
            conns.append({"name": name, "type": cfg.type, "secrets": secrets_})
        from ml_connector.core import registry
        from ml_connector.server.console.connections_add import example_settings

        add_type = request.query_params.get("add_type", "")
        types = sorted(e.name for e in registry.entries())
        return render("connections.html", request, session, page="connections", connections=conns,
                      health=queries.token_health(rt), types=types, add_type=add_type if add_type in types else "",
                      add_example=example_settings(add_type) if add_type in types else "")

    @router.post("/connections/{name}/ping")
    def ping(name: str, request: Request, session: Session = Depends(posted("operator"))) -> Response:
        ok, detail = rt.ping_connection(name) if name in rt.config.connections else (False, "no such connection")
        with db.session() as s:
            audit.record(s, "console.ping", outcome="ok" if ok else "failed",
                         detail={"user": session.user.username, "connection": name})
        text = f"{'OK' if ok else 'Failed'}: {redact(detail)[:300]}"
        if request.headers.get("HX-Request"):
            return render("ping_result.html", request, session, ok=ok, text=text)
        return back("/connections", f"{name}: {text}")

    @router.post("/connections/secret")
    def set_secret(request: Request, name: str = Form(...), value: str = Form(...),
                   session: Session = Depends(posted("admin"))) -> Response:
        known = {secret for cfg in rt.config.connections.values() for _, secret in queries.connection_secrets(cfg)}
        if name not in known:
            return back("/connections", "Choose a credential that a connection names.")
        if not value:
            return back("/connections", "Enter the credential's value.")
        rt.vault.set(name, value)
        with db.session() as s:
            audit.record(s, "console.credential.set", detail={"user": session.user.username, "name": name})
        # Connections built with the old value are rebuilt on their next use.
        rt.forget_connections()
        return back("/connections", f"Credential {name} stored; it will not be shown again. Test the connection.")

    def reconcilable() -> list[str]:
        out = []
        for name in rt.config.flows:
            try:
                f = rt.flow(name)
                if callable(getattr(f, "reconcile", None)) and getattr(f, "reconciles", True):
                    out.append(name)
            except Exception:  # a flow that cannot be built offers nothing here
                log.debug("flow %s could not be built", name, exc_info=True)
        return out

    def compare(flow: str, period: str) -> tuple[Any, str | None]:
        if flow not in rt.config.flows:
            return None, f"No flow named {flow}."
        try:
            return rt.flow(flow).reconcile(period), None
        except ValueError as exc:
            return None, redact(str(exc))
        except Exception as exc:  # a system unreachable: said on the page, not a 500
            return None, f"The comparison failed: {redact(f'{type(exc).__name__}: {exc}')[:300]}"

    @router.get("/reconcile")
    def reconcile_page(request: Request, flow: str = "", period: str = "",
                       session: Session = Depends(viewer)) -> HTMLResponse:
        rec, error = compare(flow, period) if flow and period else (None, None)
        return render("reconcile.html", request, session, page="reconcile", flows=reconcilable(), flow=flow,
                      period=period, rec=rec, error=error)

    @router.get("/reconcile/export")
    def reconcile_export(flow: str, period: str, format: str = "csv",
                         session: Session = Depends(viewer)) -> Response:
        rec, error = compare(flow, period)
        if rec is None:
            return Response(error or "", status_code=400, media_type="text/plain")
        name = f"reconciliation-{flow}-{period}"
        if format == "html":
            return HTMLResponse(rec.to_html(), headers={**SECURITY_HEADERS, "Content-Security-Policy":
                                                        "default-src 'none'; style-src 'unsafe-inline'"})
        return Response(rec.to_csv(), media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})

    def agent_service() -> Any:
        from ml_connector.server.agents.service import AgentService

        return AgentService(db, rt.vault)

    @router.get("/agents")
    def agents_page(request: Request, session: Session = Depends(viewer)) -> HTMLResponse:
        with db.read() as s:
            rows = queries.agents(s)
        return render("agents.html", request, session, page="agents", agents=rows, new_token=None)

    @router.post("/agents/token")
    def agents_token(request: Request, site: str = Form(...), ttl: int = Form(900),
                     session: Session = Depends(posted("admin"))) -> Response:
        """A one-time pairing token, shown on this answer only (never in a URL, a log or the audit)."""
        from ml_connector.agent.protocol import key_fingerprint

        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", site) or ttl not in (900, 3600, 86400):
            return back("/agents", "Name the site with letters, digits, '_', '.', '-' and pick a validity.")
        svc = agent_service()
        token = svc.issue_token(site, float(ttl))
        with db.session() as s:
            audit.record(s, "console.agent.token_issued", target=site,
                         detail={"user": session.user.username, "site": site, "ttl_seconds": ttl})
            rows = queries.agents(s)
        return render("agents.html", request, session, page="agents", agents=rows,
                      new_token={"site": site, "token": token, "ttl": ttl,
                                 "fingerprint": key_fingerprint(svc.control_public_key())})

    @router.post("/agents/{agent_id}/revoke")
    def agents_revoke(agent_id: str, request: Request, session: Session = Depends(posted("admin"))) -> Response:
        if not agent_service().revoke(agent_id):
            return back("/agents", f"No agent {agent_id}.")
        with db.session() as s:
            audit.record(s, "console.agent.revoked", source=agent_id,
                         detail={"user": session.user.username, "agent_id": agent_id})
        return back("/agents", f"Agent {agent_id} revoked; it stops at its next poll.")

    return router


def _safe_next(path: str) -> str:
    """Only a path of this server (no scheme, no host, no `//`) after the login."""
    if not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path
