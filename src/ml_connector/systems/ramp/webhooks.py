"""Ramp's webhooks, received: hints that start the bill streams at once (cloud-apis.md §1.7).

`POST <path>` (the connection's `webhooks.path`, default `/webhooks/<connection>`), mounted on the
control plane's server through the Ramp registry entry's `routers`:

1. the body is read bounded (`max_bytes`, else 413);
2. `webhooks.verification`: the challenge is echoed to Ramp (`POST /webhooks/{id}/verify`, in the
   background) and answered 200 - echoing is harmless even unsigned, since Ramp only activates the
   subscription it created for us, and the secret may not be stored yet when the challenge arrives;
3. any other event: `X-Ramp-Webhook-Signature` must be the hex HMAC-SHA256 of the raw body keyed
   with the subscription's secret (vault secret `webhooks.secret_secret`), compared in constant time;
   else 401 and nothing is stored;
4. the event is stored durably (audit event `webhook.received`, source `ramp:<connection>:event:<id>`)
   BEFORE the answer; an id already stored is a retry (Ramp re-sends up to 10 times under the same
   id): 200 `duplicate`, nothing started again;
5. the bill streams are hinted (`engine.hint_sync`): events that arrive before a stream's next run
   starts are that one run, and one arriving once it has started queues one more after it. One run
   per event would queue a burst of approvals as that many runs of the stream, one after another,
   and a `bills.paid` behind them would wait for all of them. Events are thin (`object.id` only):
   the run reads the bills' current state, so out-of-order events cannot apply a stale state. A
   paid or rejected event's status run is hinted once the bills run covering the event has ended
   (the bill may not be posted yet when `bills.paid` arrives first). A failed start is recorded;
   the scheduled poll reconciles whatever a lost hint or a dropped webhook missed.

`subscribe(...)` creates the subscription and stores its secret in the vault.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ml_connector.core import audit

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Ramp-Webhook-Signature"
#: The bill events the bill streams act on.
BILL_EVENTS = ("bills.approved", "bills.paid", "bills.rejected", "bills.created", "bills.ready_to_sync")
#: event type -> the streams it starts (a paid or rejected bill may also not be posted yet).
STREAMS_OF = {"bills.approved": ("bills",), "bills.created": ("bills",), "bills.ready_to_sync": ("bills",),
              "bills.paid": ("bills", "bill_status"), "bills.rejected": ("bills", "bill_status")}


def signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    return bool(header) and hmac.compare_digest(signature(secret, body), str(header).strip().lower())


def webhook_path(connection: str, cfg: Any) -> str:
    return str(cfg.path or f"/webhooks/{connection}")


def target_flows(rt: Any, connection: str, cfg: Any) -> list[tuple[str, list[str]]]:
    """(flow, its bill streams) that events of `connection` start."""
    out = []
    for name, f in rt.config.flows.items():
        if cfg.flows and name not in cfg.flows:
            continue
        if connection not in (f.source, f.target):
            continue
        streams = [s for s in f.streams if s in ("bills", "bill_status")]
        if streams:
            out.append((str(name), streams))
    return out


def subscribe(rt: Any, connection: str, endpoint_url: str,
              event_types: tuple[str, ...] | list[str] = ("bills.approved", "bills.paid", "bills.rejected")
              ) -> dict[str, Any]:
    """Subscribe `endpoint_url` to `event_types`; the signing secret goes into the vault (never printed).
    Ramp then sends the verification challenge, which the receiving server echoes."""
    cfg = rt.config.connections[connection].webhooks
    if cfg is None:
        raise ValueError(f"connection {connection!r} has no `webhooks:` section")
    ramp = rt.connection(connection)
    sub: dict[str, Any] = ramp.create_webhook(endpoint_url, list(event_types))
    secret = str(sub.pop("secret", "") or "")
    if not secret:
        raise ValueError("Ramp answered the subscription without a secret")
    rt.vault.set(str(cfg.secret_secret), secret)
    with rt.db.session() as s:
        audit.record(s, "webhook.subscribed", source=f"ramp:{connection}:webhook:{sub.get('id')}",
                     detail={"endpoint_url": endpoint_url, "event_types": list(event_types),
                             "status": sub.get("status")})
    return sub


def router(rt: Any, connection: str, cfg: Any) -> APIRouter:
    from sqlalchemy import select

    from ml_connector.core.models import AuditRow

    api = APIRouter()
    path = webhook_path(connection, cfg)

    def verify_later(webhook_id: str, challenge: str) -> None:
        def run() -> None:
            try:
                rt.connection(connection).verify_webhook(webhook_id, challenge)
                with rt.db.session() as s:
                    audit.record(s, "webhook.verified", source=f"ramp:{connection}:webhook:{webhook_id}")
            except Exception as exc:  # the subscription stays pending; subscribe again
                log.warning("verifying Ramp webhook %s failed: %s", webhook_id, exc)
        threading.Thread(target=run, name="ramp-webhook-verify", daemon=True).start()

    def store(event: dict[str, Any]) -> bool:
        """Store the event; False when it was stored before (a retry)."""
        src = f"ramp:{connection}:event:{event['id']}"[:300]
        with rt.db.session() as s:
            seen = s.scalar(select(AuditRow.id).where(AuditRow.source == src,
                                                      AuditRow.event == "webhook.received").limit(1))
            if seen is not None:
                return False
            audit.record(s, "webhook.received", source=src,
                         detail={"type": event.get("type"), "object_id": (event.get("object") or {}).get("id"),
                                 "created_at": event.get("created_at")})
        return True

    def after(first: str, flow: str, stream: str) -> None:
        """Hint `stream` once run `first` has ended (in the background: the answer to Ramp cannot wait).
        Lost if this process dies meanwhile: the scheduled poll catches up, as for a lost hint."""
        from ml_connector.core import engine

        def run() -> None:
            try:
                engine.wait(first, poll=0.2)
            except Exception as exc:  # failed: the status run goes all the same (it parks what is not posted)
                log.info("run %s ended badly (%s); hinting %s/%s all the same", first, exc, flow, stream)
            try:
                engine.hint_sync(flow, stream)
            except Exception as exc:
                log.warning("hinting %s/%s after %s failed: %s; the scheduled poll catches up", flow, stream,
                            first, exc)
        threading.Thread(target=run, name="ramp-webhook-then", daemon=True).start()

    def start(event: dict[str, Any]) -> list[str]:
        from ml_connector.core import engine

        started, problems = [], []
        for flow, streams in target_flows(rt, connection, cfg):
            wanted = sorted((s for s in streams if s in STREAMS_OF.get(str(event.get("type")), ())),
                            key=lambda s: s != "bills")  # the bills run first: the status run follows it
            bills_run: str | None = None
            for stream in wanted:
                if stream == "bill_status" and bills_run is not None:
                    # A paid or rejected bill may not be posted yet (its `bills.approved` late, or its
                    # posting under way): the status run follows the bills run covering this event,
                    # which posts it first. Run concurrently, it would find nothing posted and leave
                    # the status to the next poll.
                    after(bills_run, flow, stream)
                    started.append(f"{flow}/{stream} after {bills_run}")
                    continue
                try:
                    wid = engine.hint_sync(flow, stream)
                    started.append(wid)
                    if stream == "bills":
                        bills_run = wid
                except Exception as exc:  # stored already: the scheduled poll catches up
                    problems.append(f"{flow}/{stream}: {type(exc).__name__}: {exc}")
        with rt.db.session() as s:
            audit.record(s, "webhook.dispatched", source=f"ramp:{connection}:event:{event['id']}"[:300],
                         outcome="failed" if problems else "ok", detail={"runs": started, "problems": problems})
        return started

    @api.post(path, include_in_schema=False)
    async def receive(request: Request) -> JSONResponse:
        import anyio

        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > cfg.max_bytes:
            return JSONResponse({"error": f"body larger than {cfg.max_bytes} bytes"}, status_code=413)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > cfg.max_bytes:
                return JSONResponse({"error": f"body larger than {cfg.max_bytes} bytes"}, status_code=413)
        try:
            event = json.loads(body)
        except ValueError:
            return JSONResponse({"error": "body is not JSON"}, status_code=400)
        if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not event.get("type"):
            return JSONResponse({"error": "not a Ramp event (id, type)"}, status_code=400)
        if event["type"] == "webhooks.verification":
            webhook_id, challenge = (event.get("object") or {}).get("id"), event.get("challenge")
            if not isinstance(webhook_id, str) or not isinstance(challenge, str):
                return JSONResponse({"error": "verification without object.id or challenge"}, status_code=400)
            verify_later(webhook_id, challenge)
            return JSONResponse({"ok": True})
        try:
            secret = str(await anyio.to_thread.run_sync(rt.vault.get, cfg.secret_secret))
        except Exception:
            return JSONResponse({"error": "no webhook secret stored yet"}, status_code=503)
        if not signature_ok(secret, body, request.headers.get(SIGNATURE_HEADER)):
            return JSONResponse({"error": "bad signature"}, status_code=401)
        fresh = await anyio.to_thread.run_sync(store, event)
        if not fresh:
            return JSONResponse({"ok": True, "duplicate": True})
        runs = await anyio.to_thread.run_sync(start, event)
        return JSONResponse({"ok": True, "runs": runs})

    return api


def routers(rt: Any) -> list[Any]:
    """The registry entry's `routers`: one per Ramp connection with a `webhooks:` section."""
    out = []
    for name, conn in rt.config.connections.items():
        cfg = getattr(conn, "webhooks", None)
        if getattr(conn, "type", None) == "ramp" and cfg is not None:
            out.append(router(rt, str(name), cfg))
    return out
