"""What the flows write to Ramp, each with its exactly-once strategy (see core/flow.py `Target`).

- `AccountingVendorsTarget`, `GLAccountsTarget`, `FieldOptionsTarget`: Ramp's chart-of-accounts
  records, all sharing one strategy (`RampUploadTarget`): creates go in all-or-nothing,
  NOT idempotent batch uploads of at most 500; updates and deactivations are idempotent
  PATCH/DELETE calls on a known ramp_id.
- `AccountingSyncs`: the report of a bill's accounting sync (POST /accounting/syncs), idempotent
  through a key derived from the bill and its outcome.

The engine marks entries in flight before `write` and calls `lookup` for entries left in doubt.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any

from ml_connector.core.flow import Outcome, Report, RunContext, Target
from ml_connector.core.outbox import Entry
from ml_connector.systems.ramp.client import RampApiError, RampClient, RampError, RampUncertainWrite
from ml_connector.systems.ramp.facts import ramp_facts

log = logging.getLogger(__name__)

UNCERTAIN_ROUNDS = 3  # lookups-then-re-upload rounds after unknown outcomes, then left uncertain
UPDATES_PER_REPORT = 50  # idempotent updates reported (one transaction) per this many
#: Records to find at which one listing of the kind (pages of 100) replaces one GET per record:
#: recovering 500 in-doubt creates among 3,000 vendors costs 30 requests instead of 500.
LIST_FROM = 100


def refuses_field(info: Any, list_key: str, field: str) -> bool:
    """Whether a rejected upload's `additional_info` says an item has an unknown `field`
    (Ramp's validation detail: {list_key: {index: {field: [messages]}}})."""
    items = info.get(list_key) if isinstance(info, dict) else None
    if not isinstance(items, dict):
        return False
    for errs in items.values():
        msgs = errs.get(field) if isinstance(errs, dict) else None
        if isinstance(msgs, list) and any("unknown field" in str(m).lower() for m in msgs):
            return True
    return False


class RampUploadTarget(Target):
    """One kind of Ramp chart record written exactly once. Payloads carry the remote `id`.

    - A create batch whose upload answer is lost (timeout, dropped connection, 5xx after the
      request left) is resolved by looking each id up; only the ones not found are uploaded
      again, for `UNCERTAIN_ROUNDS` rounds, then left `uncertain` for replay (never a blind
      re-upload).
    - A refused upload (4xx; nothing was applied) is split in halves until the refused records
      are isolated; an isolated record that already exists in Ramp is adopted, the others fail
      with Ramp's message. 429 and 5xx are raised (the engine's step retries later).
    - `lookup` (in-doubt creates): found by remote id = posted. Updates are idempotent and
      simply sent again.
    - Every record found rather than written is handed to the engine with what Ramp holds
      (`Outcome.found`); the engine compares it (`compare`: the kind's `compared` fields and
      `is_active`) and sends the correction. A full run lists the kind's records once
      (`current`) so that records the ledger calls unchanged are compared too.
    Subclasses give the record kind's calls (`find`, `upload`, `update`, `deactivate`).
    """

    kind = "record"
    #: Payload fields Ramp holds as they are sent (compared with what is found).
    compared: tuple[str, ...] = ("name", "code")
    #: Compared fields that Ramp may legitimately hold empty (not sent on upload).
    optional: tuple[str, ...] = ()

    def __init__(self, connection: str) -> None:
        self.connection = connection
        self.batch_size = ramp_facts().batch.max_items  # Ramp's largest upload (provider facts)

    # -- the record kind's calls -----------------------------------------------------------
    def find(self, ramp: RampClient, item_id: str) -> dict[str, Any] | None:
        raise NotImplementedError

    def upload(self, ramp: RampClient, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def upload_item(self, payload: dict[str, Any]) -> dict[str, Any]:
        return dict(payload)

    def update(self, ramp: RampClient, target_id: str, payload: dict[str, Any], reactivate: bool) -> Any:
        raise NotImplementedError

    def deactivate(self, ramp: RampClient, target_id: str) -> None:
        raise NotImplementedError

    def list_all(self, ramp: RampClient) -> Iterable[dict[str, Any]]:
        """Every record of the kind, through the kind's list endpoint, page by page as iterated."""
        raise NotImplementedError

    def adapt_to_refusal(self, exc: RampApiError) -> bool:
        """A refused upload that a change of form can fix (nothing was applied): adapt and return
        True to upload the same batch again."""
        return False

    # -- the strategy ----------------------------------------------------------------------
    def client(self, ctx: RunContext) -> RampClient:
        ramp: RampClient = ctx.runtime.connection(self.connection)
        return ramp

    def compare(self, found: dict[str, Any], payload: dict[str, Any], active: bool) -> str | None:
        if not active:
            return "deactivate" if found.get("is_active", True) else None
        if found.get("is_active") is False:
            return "reactivate"  # the PATCH that reactivates also sends the fields
        for f in self.compared:
            have = found.get(f)
            if have is None and f in self.optional:
                continue
            if f in payload and have != payload[f]:
                return "update"
        return None

    def current(self, ctx: RunContext, payloads: list[dict[str, Any]]) -> dict[int, tuple[str, dict[str, Any]]]:
        # One listing of the kind per run (held for the run's later pages), not one GET per record.
        if getattr(self, "_listed_for", None) != ctx.run_id:
            self._listed: dict[str, dict[str, Any]] = {
                str(r["id"]): r for r in self.list_all(self.client(ctx)) if r.get("id") is not None}
            self._listed_for = ctx.run_id
        out: dict[int, tuple[str, dict[str, Any]]] = {}
        for i, p in enumerate(payloads):
            rec = self._listed.get(str(p["id"]))
            if rec is not None:
                out[i] = (str(rec["ramp_id"]), rec)
        return out

    def iter_found(self, ramp: RampClient, ids: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
        """The records of these remote ids that Ramp holds, as they are found: one GET each for a few,
        one listing of the kind for many (Ramp's lists filter by one remote id at most), stopped as
        soon as every id is found."""
        if len(ids) < LIST_FROM:
            for i in ids:
                if (f := self.find(ramp, i)) is not None:
                    yield i, f
            return
        want = set(ids)
        for r in self.list_all(ramp):
            rid = str(r.get("id"))
            if rid in want:
                want.discard(rid)
                yield rid, r
                if not want:
                    return

    def find_many(self, ramp: RampClient, ids: list[str]) -> dict[str, dict[str, Any]]:
        """The records of these remote ids that Ramp holds (see `iter_found`)."""
        return dict(self.iter_found(ramp, ids))

    def lookup(self, ctx: RunContext, entries: list[Entry]) -> Iterator[Outcome]:
        """Found in-doubt creates, yielded as they are found (a GET's answer, a listing's page), so
        that the engine keeps the progress of a recovery that is itself interrupted."""
        ramp = self.client(ctx)
        creates: dict[str, list[Entry]] = {}
        for e in entries:
            if e.op == "create":  # PATCH/DELETE of a known id: sent again
                creates.setdefault(str(e.payload["id"]), []).append(e)
        for rid, f in self.iter_found(ramp, list(creates)):
            for e in creates[rid]:
                yield Outcome(e.id, "posted", target_id=f["ramp_id"], response=f, found=f)

    def write(self, ctx: RunContext, entries: list[Entry], report: Report) -> None:
        ramp = self.client(ctx)
        creates = [e for e in entries if e.op == "create"]
        for i in range(0, len(creates), self.batch_size):
            self._create_batch(ramp, creates[i:i + self.batch_size], report)
        others = [e for e in entries if e.op != "create"]
        # Records the ledger does not know in Ramp (e.g. vendors deleted in SAP before the first sync):
        # many are found with one listing, not one GET each.
        unknown = [str(e.payload["id"]) for e in others if not e.target_id]
        held = self.find_many(ramp, unknown) if len(unknown) >= LIST_FROM else None
        done: list[Outcome] = []
        for e in others:
            if len(done) >= UPDATES_PER_REPORT:
                report(done)
                done = []
            done.append(self._update_one(ramp, e, held, listed=self._listing(ctx)))
        if done:
            report(done)

    def _listing(self, ctx: RunContext) -> dict[str, dict[str, Any]] | None:
        """This run's listing of the kind (taken by `current` in a full run, in this process), else None."""
        return self._listed if getattr(self, "_listed_for", None) == ctx.run_id else None

    def _update_one(self, ramp: RampClient, e: Entry, held: dict[str, dict[str, Any]] | None = None, *,
                    listed: dict[str, dict[str, Any]] | None = None) -> Outcome:
        try:
            target = e.target_id
            adopted = False
            if not target:
                # The ledger did not know the record in Ramp (e.g. it was lost): find it. A deactivation
                # of a record absent from this run's listing needs no GET: only this run could have
                # created it since, and a full run stages each record once (a record deleted before
                # the first sync costs no request). Many unknown ones were found with one listing (held).
                absent = e.op == "deactivate" and listed is not None and str(e.payload["id"]) not in listed
                if absent:
                    found = None
                elif held is not None:
                    found = held.get(str(e.payload["id"]))
                else:
                    found = self.find(ramp, e.payload["id"])
                target = found["ramp_id"] if found else None
                adopted = found is not None
                if e.op == "deactivate" and found is None:
                    # Deleted at the source, never in Ramp: nothing to deactivate.
                    return Outcome(e.id, "posted", request=e.payload)
                if e.op == "deactivate" and found is not None and found.get("is_active") is False:
                    return Outcome(e.id, "posted", target_id=target, response=found, adopted=True)
            if not target:
                return Outcome(e.id, "failed", error=f"{self.kind} {e.payload['id']} is not in Ramp to {e.op}")
            if e.op == "deactivate":
                self.deactivate(ramp, target)
                resp: Any = {"ramp_id": target, "is_active": False}
            else:
                resp = self.update(ramp, target, e.payload, e.op == "reactivate")
            return Outcome(e.id, "posted", target_id=target, request=e.payload, response=resp, adopted=adopted)
        except RampApiError as exc:
            return Outcome(e.id, "failed", error=str(exc), request=e.payload)

    def _create_batch(self, ramp: RampClient, batch: list[Entry], report: Report, depth: int = 0) -> None:
        if not batch:
            return
        upload_item = self.upload_item
        items = [upload_item(e.payload) for e in batch]
        try:
            created = self.upload(ramp, items)
        except RampUncertainWrite:
            # The upload may or may not have happened: ask Ramp, never re-POST blindly.
            self._resolve_by_lookup(ramp, batch, report, depth)
            return
        except RampApiError as exc:
            if exc.status == 429 or exc.status in ramp_facts().need_retry().statuses:
                raise  # transient (provider facts): the engine's step retries later
            if self.adapt_to_refusal(exc):
                self._create_batch(ramp, batch, report, depth)
                return
            if len(batch) == 1:  # isolated: adopt it if it exists, else it is the refused one
                found = self.find(ramp, batch[0].payload["id"])
                if found is not None:  # it exists already: adopted, compared by the engine
                    report([Outcome(batch[0].id, "posted", target_id=found["ramp_id"], response=found,
                                    found=found, adopted=True)])
                else:
                    report([Outcome(batch[0].id, "failed", error=str(exc), request=items[0])])
                return
            if len(batch) >= LIST_FROM:
                # Refused because some already exist (e.g. a lost database)? Adopt those found
                # (one listing), upload the rest again; bisect only what is refused then.
                held = self.find_many(ramp, [e.payload["id"] for e in batch])
                if held:
                    report([Outcome(e.id, "posted", target_id=f["ramp_id"], response=f, found=f, adopted=True)
                            for e in batch if (f := held.get(e.payload["id"])) is not None])
                    self._create_batch(ramp, [e for e in batch if e.payload["id"] not in held], report, depth)
                    return
            mid = len(batch) // 2
            self._create_batch(ramp, batch[:mid], report, depth)
            self._create_batch(ramp, batch[mid:], report, depth)
            return
        by_id = {r["id"]: r for r in created}
        get = by_id.get
        # Positional fields (entry_id, state, target_id, error, request, response): 500 per upload.
        outs = [Outcome(e.id, "posted", r["ramp_id"], None, item, r) if (r := get(e.payload["id"])) is not None
                else Outcome(e.id, "uncertain", error=f"Ramp's answer did not list this {self.kind}")
                for e, item in zip(batch, items, strict=True)]
        report(outs)

    def _resolve_by_lookup(self, ramp: RampClient, batch: list[Entry], report: Report, depth: int) -> None:
        missing, outs = [], []
        held = self.find_many(ramp, [e.payload["id"] for e in batch])
        for e in batch:
            found = held.get(e.payload["id"])
            if found is not None:
                outs.append(Outcome(e.id, "posted", target_id=found["ramp_id"], response=found, found=found))
            else:
                missing.append(e)
        if missing and depth >= UNCERTAIN_ROUNDS:
            # Still in doubt after repeated timeouts: leave them uncertain for replay
            # (which looks them up again) rather than risk a duplicate.
            outs += [Outcome(e.id, "uncertain", error="Ramp did not confirm the upload") for e in missing]
            missing = []
        report(outs)
        if missing:
            time.sleep(0.05 * (depth + 1))
            self._create_batch(ramp, missing, report, depth + 1)


class AccountingVendorsTarget(RampUploadTarget):
    """Ramp accounting vendors. Payload {id: SAP number (internal), name, code}.

    Ramp's published upload item is {id, name}; `code` is sent too until a Ramp answers that
    it does not know the field, then uploads go without it (updates still PATCH it)."""

    kind = "vendor"
    optional = ("code",)  # a Ramp that refuses `code` on upload holds vendors without one

    def __init__(self, connection: str, *, send_code_on_upload: bool = True) -> None:
        super().__init__(connection)
        self.send_code_on_upload = send_code_on_upload

    def find(self, ramp: RampClient, item_id: str) -> dict[str, Any] | None:
        return ramp.get_accounting_vendor_by_remote_id(item_id)

    def upload(self, ramp: RampClient, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return list(ramp.create_accounting_vendors(items).get("vendors", []))

    def list_all(self, ramp: RampClient) -> Iterable[dict[str, Any]]:
        return ramp.iter_accounting_vendors()

    def upload_item(self, payload: dict[str, Any]) -> dict[str, Any]:
        item = {"id": payload["id"], "name": payload["name"]}
        if self.send_code_on_upload:
            item["code"] = payload["code"]
        return item

    def update(self, ramp: RampClient, target_id: str, payload: dict[str, Any], reactivate: bool) -> Any:
        return ramp.update_accounting_vendor(target_id, name=payload["name"], code=payload["code"],
                                             reactivate=reactivate or None)

    def deactivate(self, ramp: RampClient, target_id: str) -> None:
        ramp.deactivate_accounting_vendor(target_id)

    def adapt_to_refusal(self, exc: RampApiError) -> bool:
        if self.send_code_on_upload and refuses_field(exc.additional_info, "vendors", "code"):
            self.send_code_on_upload = False
            log.warning("Ramp refused the field `code` in a vendor upload: uploading vendors as "
                        "{id, name} from now on")
            return True
        return False

    def describe(self, op: str, payload: dict[str, Any]) -> str:
        link = f", linking Bill Pay vendor {payload['billpay_vendor_id']}" if payload.get("billpay_vendor_id") else ""
        return f"{op} Ramp accounting vendor id={payload['id']} name={payload['name']!r} code={payload['code']}{link}"

    # A payload with `billpay_vendor_id` (the flow matched a Bill Pay vendor Ramp already had): once the
    # accounting vendor is in Ramp, the Bill Pay vendor is linked to it (PATCH, idempotent), so Ramp
    # does not add a second vendor for it; a failed link fails the entry, and replay links again.
    @staticmethod
    def _to_link(entries: list[Entry]) -> dict[int, Entry]:
        """The entries (by id) whose posted outcome links a Bill Pay vendor; taken once per write, not
        per report (most writes have none, and their outcomes then pass as they are)."""
        if not any(e.payload.get("billpay_vendor_id") for e in entries):
            return {}
        by_id = {e.id: e for e in entries}  # the last entry of an id counts, as it always did
        return {i: e for i, e in by_id.items() if e.op != "deactivate" and e.payload.get("billpay_vendor_id")}

    def _link(self, ctx: RunContext, to_link: dict[int, Entry], outcomes: Iterable[Outcome]) -> list[Outcome]:
        if not to_link:
            return list(outcomes)
        out = []
        for o in outcomes:
            e = to_link.get(o.entry_id)
            if e is None or o.state != "posted":
                out.append(o)
                continue
            link = e.payload["billpay_vendor_id"]
            try:
                self.client(ctx).link_billpay_vendor(str(link), str(e.payload["id"]))
            except RampError as exc:
                out.append(Outcome(o.entry_id, "failed", target_id=o.target_id, request=e.payload,
                                   error=f"accounting vendor {e.payload['id']} is in Ramp ({o.target_id}), but "
                                         f"linking Bill Pay vendor {link} to it failed: {exc}; replay links it"))
                continue
            out.append(replace(o, response={**(o.response or {}), "linked_billpay_vendor": link}))
        return out

    def lookup(self, ctx: RunContext, entries: list[Entry]) -> Iterator[Outcome]:
        to_link = self._to_link(entries)
        for found in super().lookup(ctx, entries):  # yielded as found (the engine records them as they come)
            yield from self._link(ctx, to_link, [found])

    def write(self, ctx: RunContext, entries: list[Entry], report: Report) -> None:
        to_link = self._to_link(entries)

        def linked(outcomes: list[Outcome]) -> None:
            report(self._link(ctx, to_link, outcomes))

        # A payload with `ramp_id` (the flow matched an accounting vendor Ramp already had under another
        # remote id): that record is adopted and updated (PATCH, idempotent) instead of creating a duplicate.
        matched = [e for e in entries if e.op == "create" and e.payload.get("ramp_id")]
        if matched:
            ramp = self.client(ctx)
            linked([replace(self._update_one(ramp, replace(e, op="update", target_id=str(e.payload["ramp_id"]))),
                            adopted=True) for e in matched])
        rest = [e for e in entries if e not in matched]
        if rest:
            super().write(ctx, rest, linked)


class GLAccountsTarget(RampUploadTarget):
    """Ramp GL accounts. Payload {id, name, code, classification}."""

    kind = "GL account"
    # Ramp's PATCH cannot change a classification: comparing it would ask for a correction that
    # cannot be made.
    compared = ("name", "code")

    def find(self, ramp: RampClient, item_id: str) -> dict[str, Any] | None:
        return ramp.get_gl_account_by_remote_id(item_id)

    def upload(self, ramp: RampClient, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return list(ramp.create_gl_accounts(items).get("gl_accounts", []))

    def list_all(self, ramp: RampClient) -> Iterable[dict[str, Any]]:
        return ramp.iter_gl_accounts()

    def update(self, ramp: RampClient, target_id: str, payload: dict[str, Any], reactivate: bool) -> Any:
        # Ramp's PATCH takes name and code only: a changed classification is not sent.
        return ramp.update_gl_account(target_id, name=payload["name"], code=payload["code"],
                                      reactivate=reactivate or None)

    def deactivate(self, ramp: RampClient, target_id: str) -> None:
        ramp.deactivate_gl_account(target_id)

    def describe(self, op: str, payload: dict[str, Any]) -> str:
        return (f"{op} Ramp GL account id={payload['id']} code={payload['code']} name={payload['name']!r} "
                f"classification={payload['classification']}")


class FieldOptionsTarget(RampUploadTarget):
    """Options of a Ramp accounting field (a SINGLE_CHOICE field created on first use; POST
    /accounting/fields is idempotent on id). Payload {id, value, code}."""

    kind = "field option"
    compared = ("value", "code")

    def __init__(self, connection: str, *, field_id: str, field_name: str, kind: str = "field option") -> None:
        super().__init__(connection)
        self.field_id = field_id
        self.field_name = field_name
        self.kind = kind
        self._field_ramp_id: str | None = None

    def field(self, ramp: RampClient) -> str:
        """The Ramp field's ramp_id (created or reactivated once per process)."""
        if self._field_ramp_id is None:
            rec = ramp.upsert_accounting_field(self.field_id, self.field_name, input_type="SINGLE_CHOICE")
            self._field_ramp_id = str(rec["ramp_id"])
        return self._field_ramp_id

    def find(self, ramp: RampClient, item_id: str) -> dict[str, Any] | None:
        return ramp.get_field_option_by_remote_id(self.field(ramp), item_id)

    def upload(self, ramp: RampClient, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return list(ramp.create_field_options(self.field(ramp), items).get("options", []))

    def list_all(self, ramp: RampClient) -> Iterable[dict[str, Any]]:
        return ramp.iter_field_options(self.field(ramp))

    def update(self, ramp: RampClient, target_id: str, payload: dict[str, Any], reactivate: bool) -> Any:
        return ramp.update_field_option(target_id, value=payload["value"], code=payload["code"],
                                        reactivate=reactivate or None)

    def deactivate(self, ramp: RampClient, target_id: str) -> None:
        ramp.deactivate_field_option(target_id)

    def describe(self, op: str, payload: dict[str, Any]) -> str:
        return (f"{op} Ramp field option ({self.field_name}) id={payload['id']} code={payload['code']} "
                f"value={payload['value']!r}")


#: Idempotency keys of sync reports derive from this namespace (stable across versions: a
#: report re-sent after an upgrade must carry the same key).
SYNC_NAMESPACE = uuid.UUID("5b0c1f8e-7d1a-4c6e-9a51-6d2b8f0e4a10")


class AccountingSyncs:
    """POST /accounting/syncs for bills: one report per bill and outcome, its idempotency key
    derived from both, so a report re-sent after a lost answer is applied once."""

    def __init__(self, ramp: RampClient, sync_type: str = "BILL_SYNC") -> None:
        self.ramp = ramp
        self.sync_type = sync_type

    def synced(self, record_id: str, reference_id: str) -> dict[str, Any]:
        key = str(uuid.uuid5(SYNC_NAMESPACE, f"{record_id}:{reference_id}"))
        return self.ramp.post_accounting_sync(key, self.sync_type,
                                              successful=[{"id": record_id, "reference_id": reference_id}])

    def failed(self, record_id: str, message: str) -> dict[str, Any]:
        key = str(uuid.uuid5(SYNC_NAMESPACE, f"{record_id}:failed:{message}"))
        return self.ramp.post_accounting_sync(key, self.sync_type, failed=[{"id": record_id,
                                                                            "error": {"message": message[:1000]}}])
