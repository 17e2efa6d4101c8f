"""What flows write to the example system, with its exactly-once strategy (see core/flow.py `Target`).

`CatalogRecordsTarget`: catalog records, create-then-lookup. A create (POST /records) is NOT
idempotent, so a create whose answer is lost raises `ExampleUncertainWrite`: the engine's step is
retried, and the engine hands the entries it had marked in flight to `lookup` first, which finds
the record by its external id; only what the lookup does not find is created again. Updates and
(de)activations are PATCHes of a known record id: idempotent, simply sent again.
"""

from __future__ import annotations

from typing import Any

from ml_connector.core.flow import Outcome, Report, RunContext, Target
from ml_connector.core.outbox import Entry
from tests.example_system import ExampleClient, ExampleError


class CatalogRecordsTarget(Target):
    batch_size = 50  # entries per write call: at most this many in doubt after a crash

    def __init__(self, connection: str) -> None:
        self.connection = connection

    def client(self, ctx: RunContext) -> ExampleClient:
        return ctx.runtime.connection(self.connection, ExampleClient)

    def lookup(self, ctx: RunContext, entries: list[Entry]) -> list[Outcome]:
        client = self.client(ctx)
        outs = []
        for e in entries:
            if e.op != "create":
                continue  # a PATCH of a known id: sent again
            found = client.find_record(e.payload["external_id"])
            if found is not None:
                outs.append(Outcome(e.id, "posted", target_id=str(found["id"]), response=found))
        return outs

    def write(self, ctx: RunContext, entries: list[Entry], report: Report) -> None:
        client = self.client(ctx)
        for e in entries:
            try:
                if e.op == "create":
                    done = client.create_record({**e.payload, "active": True})
                else:
                    fields: dict[str, Any] = {"active": e.op != "deactivate"}
                    if e.op != "deactivate":
                        fields.update(e.payload)
                    done = client.update_record(str(e.target_id), fields)
            except ExampleError as exc:
                if exc.status >= 500:
                    raise  # the step is retried later
                report([Outcome(e.id, "failed", error=str(exc), request=e.payload)])
                continue
            # One report per request: each outcome is stored in its own transaction, as soon as known.
            report([Outcome(e.id, "posted", target_id=str(done["id"]), request=e.payload, response=done)])

    def describe(self, op: str, payload: dict[str, Any]) -> str:
        return f"{op} catalog record {payload['external_id']} title={payload['title']!r}"
