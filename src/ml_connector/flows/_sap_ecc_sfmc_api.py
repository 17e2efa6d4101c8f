"""The JSON API of the pair sap_ecc_sfmc, mounted at /api/flows/<flow>/ (server/flow_api.py):

- `POST audience/check` (operator): the pre-campaign audience check of a send list, as
  `ml-connector audience check` (flag, or remove with `remove: true`); the report as JSON.
- `GET gaps/history` (viewer): the recorded sync gaps of this flow, newest first.
- `GET gaps` (viewer): the result of the latest gap check (when, how many customers checked, the
  gaps found and corrected). It does not run one: a GET is safe, and a check writes corrections to
  Marketing Cloud, which a viewer may not cause.
- `POST gaps/check` (operator): run the gap check now (as `ml-connector audience gaps`); its result.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field


class AudienceCheckRequest(BaseModel):
    de_key: str = Field(min_length=1, description="External key of the send list Data Extension")
    remove: bool = Field(False, description="Delete ineligible members (default: flag them)")
    member_column: str | None = Field(None, description="The send list's customer number column")


class GapCheckRequest(BaseModel):
    max_lag: float = Field(60.0, ge=0, description="Seconds a change from SAP may take to reach Marketing Cloud")


def routers(rt: Any, flow: str) -> list[APIRouter]:
    from ml_connector.core import audit
    from ml_connector.flows._sap_ecc_sfmc_checks import audience_check, gap_history, latest_gap_check, sync_gaps
    from ml_connector.server.roles import api_actor, api_role

    router = APIRouter(tags=[f"flow {flow}"])

    @router.post("/audience/check", dependencies=[Depends(api_role("operator"))])
    def check(req: AudienceCheckRequest, request: Request) -> dict[str, Any]:
        with rt.db.session() as s:
            audit.record(s, "api.audience.check", flow=flow, detail={"user": api_actor(request), "de_key": req.de_key,
                                                                     "remove": req.remove})
        try:
            report = audience_check(rt, req.de_key, flow=flow, remove=req.remove, member_column=req.member_column)
        except ValueError as exc:
            raise HTTPException(422, detail={"error": "audience_check", "message": str(exc)}) from None
        return report.to_dict()

    @router.get("/gaps/history", dependencies=[Depends(api_role("viewer"))])
    def history(limit: int = 50) -> list[dict[str, Any]]:
        return gap_history(rt, limit=max(1, min(limit, 1000)), flow=flow)

    @router.get("/gaps", dependencies=[Depends(api_role("viewer"))])
    def latest() -> dict[str, Any]:
        return latest_gap_check(rt, flow)

    @router.post("/gaps/check", dependencies=[Depends(api_role("operator"))])
    def run_check(req: GapCheckRequest, request: Request) -> dict[str, Any]:
        with rt.db.session() as s:
            audit.record(s, "api.gaps.check", flow=flow, detail={"user": api_actor(request), "max_lag": req.max_lag})
        try:
            sync_gaps(rt, flow=flow, max_lag=req.max_lag)
        except ValueError as exc:
            raise HTTPException(422, detail={"error": "gap_check", "message": str(exc)}) from None
        return latest_gap_check(rt, flow)

    return [router]
