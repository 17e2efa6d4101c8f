"""The approval queue on the JSON API (core/approval.py): list (viewer), approve, reject, check again
(operator). Each action is audited with the token that made it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field

from ml_connector.core import approval
from ml_connector.core.redact import redact
from ml_connector.server.roles import api_actor, api_role


class ApprovalInfo(BaseModel):
    id: int
    flow: str
    stream: str
    record: str
    op: str
    state: str = Field(description="approval (waiting) or approved (not sent yet)")
    since: datetime
    document: dict[str, Any] = Field(description="The exact document the target will receive")
    accepted: bool | None = Field(description="The target's latest verdict; null: not asked (or no check)")
    messages: list[str]
    checked_by: str
    checked_at: datetime | None


class Ids(BaseModel):
    ids: list[int] = Field(min_length=1, max_length=5000)


class Rejection(Ids):
    note: str = Field(min_length=1, max_length=500, description="Why the records must not be sent")


def approvals_api(rt: Any, admin_dep: list[Any]) -> APIRouter:
    router = APIRouter(dependencies=admin_dep)

    @router.get("/api/approvals", response_model=list[ApprovalInfo])
    def approvals(flow: str | None = None) -> list[ApprovalInfo]:
        import json

        return [ApprovalInfo(id=i.id, flow=i.flow, stream=i.stream, record=i.record, op=i.op, state=i.state,
                             since=i.since, document=json.loads(redact(json.dumps(i.document, default=str))),
                             accepted=i.accepted, messages=[redact(m) for m in i.messages],
                             checked_by=i.checked_by, checked_at=i.checked_at)
                for i in approval.queue(rt, flow=flow)]

    @router.post("/api/approvals/approve", dependencies=[Depends(api_role("operator"))])
    def approve(req: Ids, request: Request) -> dict[str, Any]:
        try:
            moved, tally = approval.approve(rt, req.ids, api_actor(request))
        except Exception as exc:  # no worker to send them: they stay approved, and approving again sends them
            raise HTTPException(503, f"approved; sending could not start: {redact(str(exc))[:300]}") from None
        return {"approved": moved, "outcome": tally}

    @router.post("/api/approvals/reject", dependencies=[Depends(api_role("operator"))])
    def reject(req: Rejection, request: Request) -> dict[str, Any]:
        return {"rejected": approval.reject(rt, req.ids, api_actor(request), req.note.strip())}

    @router.post("/api/approvals/check", dependencies=[Depends(api_role("operator"))])
    def check(req: Ids, request: Request) -> dict[str, Any]:
        return {"checked": approval.recheck(rt, req.ids, api_actor(request))}

    return router
