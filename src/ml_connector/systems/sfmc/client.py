"""The Marketing Cloud client: SOAP (Data Extensions, rows with filters, UpdateAdd, Delete) and REST
(rowset upserts, the asynchronous rows API with status polling, journey entry events).

Every call goes through one `httpx.Client` on `core.http.RetryTransport` (shared rate budget, REST
429 Retry-After waited out) with `SfmcAuth`; REST and SOAP bases come from the token answer.
SOAP throttling is an HTTP 500 fault "Rate Limited" (apifault Code 17) without a Retry-After: it
is paced (provider.yaml `soap.throttle_backoff`, the shared budget penalised) and the call sent
again, never failed; a request refused as throttled was not processed. Every attempt is counted
against the account's yearly API allowance (`ApiMeter`).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
from lxml import etree

from ml_connector.core.http import IDEMPOTENT, PermanentError, PicklableError, UncertainWrite, one_line
from ml_connector.core.providers import Backoff
from ml_connector.core.ratelimit import WindowLimiter
from ml_connector.systems.sfmc import soap as S  # noqa: N812
from ml_connector.systems.sfmc.auth import SfmcAuth
from ml_connector.systems.sfmc.facts import sfmc_facts
from ml_connector.systems.sfmc.meter import ApiMeter
from ml_connector.systems.sfmc.schema import DeField, DeHeld, DeSpec, SchemaMismatch, compare


class SfmcError(PicklableError):
    """Marketing Cloud refused a call (its message, never a token)."""

    def __init__(self, message: str, *, status: int | None = None, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class SfmcRefused(SfmcError, PermanentError):
    """A request Marketing Cloud will refuse again (400, a per-object Error, an unknown DE)."""


class SfmcUncertainWrite(UncertainWrite):
    """A write may have been applied (connection lost after sending, 5xx on a non-idempotent call)."""


Row = dict[str, Any]
#: SOAP carries its token in the envelope (fueloauth), not in an Authorization header.
NO_AUTH = httpx.Auth()


class SfmcClient:
    def __init__(self, auth: SfmcAuth, *, limiter: WindowLimiter | None = None, timeout: float = 60.0,
                 meter: ApiMeter | None = None, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep, throttle_backoff: Backoff | None = None) -> None:
        from ml_connector.core.http import RetryPolicy, RetryTransport

        self.facts = sfmc_facts()
        self.auth = auth
        self.limiter = limiter
        self.meter = meter
        self._sleep = sleep
        self.transport = RetryTransport(transport or httpx.HTTPTransport(),
                                        RetryPolicy.from_facts(self.facts.need_retry()), limiter=limiter)
        self.http = httpx.Client(auth=auth, timeout=timeout, transport=self.transport,
                                 event_hooks={"request": [self._count]})
        self.soap_throttled = 0  # SOAP "Rate Limited" faults waited out
        self._names: dict[str, str] = {}  # DE external key -> name
        # provider.yaml soap.throttle_backoff; a caller (a test, a benchmark) may tune it
        self.throttle_backoff = throttle_backoff or self.facts.soap.throttle_backoff

    def close(self) -> None:
        if self.meter is not None:
            self.meter.flush()  # the calls of this process count toward the year
        self.http.close()
        self.auth.close()

    def _count(self, request: httpx.Request) -> None:
        if self.meter is not None:
            self.meter.add(1)

    # -- bases ------------------------------------------------------------------------------------

    def rest_url(self, path: str) -> str:
        base = self.auth.current_token().extra.get("rest_instance_url", "")
        return base.rstrip("/") + "/" + path.lstrip("/")

    def soap_url(self) -> str:
        base = self.auth.current_token().extra.get("soap_instance_url", "")
        return base.rstrip("/") + "/" + self.facts.soap.path

    # -- REST -------------------------------------------------------------------------------------

    def _rest(self, method: str, path: str, *, body: Any = None, idempotent: bool = False,
              write: bool = False) -> httpx.Response:
        ext = {IDEMPOTENT: True} if idempotent else {}
        try:
            resp = self.http.request(method, self.rest_url(path), json=body, extensions=ext)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout):
            raise
        except httpx.TransportError as exc:
            if write and not idempotent:
                raise SfmcUncertainWrite(f"Marketing Cloud {method} {path}: {type(exc).__name__} after sending; "
                                         "the outcome is unknown") from None
            raise
        if resp.status_code >= 500 and write and not idempotent:
            raise SfmcUncertainWrite(f"Marketing Cloud {method} {path}: HTTP {resp.status_code}; the outcome "
                                     "is unknown")
        if resp.status_code >= 400:
            try:
                data = resp.json()
            except ValueError:
                data = {}
            msg = data.get("message") if isinstance(data, dict) else None
            code = str(data.get("errorcode", "")) if isinstance(data, dict) else ""
            err_cls = SfmcRefused if 400 <= resp.status_code < 500 and resp.status_code != 429 else SfmcError
            raise err_cls(f"Marketing Cloud {method} {path}: HTTP {resp.status_code}"
                          + (f" errorcode {code}" if code else "") + (f": {one_line(str(msg))}" if msg else ""),
                          status=resp.status_code, code=code)
        return resp

    def ping(self) -> float:
        t0 = time.perf_counter()
        p = self.facts.ping
        assert p.method and p.path
        self._rest(p.method, p.path, idempotent=True)
        return time.perf_counter() - t0

    def upsert_rows(self, key: str, rows: list[tuple[Row, Row]]) -> int:
        """Upsert (keys, values) pairs through the rowset API, in batches of at most
        `batch.rowset_max_rows` rows and `rowset_max_bytes`; safe to repeat (upsert on the primary key).
        Returns the number of calls made."""
        calls = 0
        batch: list[dict[str, Any]] = []
        size = 2
        b = self.facts.batch
        for keys, values in rows:
            item = {"keys": keys, "values": values}
            n = len(json.dumps(item, default=str)) + 1
            if batch and (len(batch) >= b.rowset_max_rows or size + n > b.rowset_max_bytes):
                self._rest("POST", f"/hub/v1/dataevents/key:{key}/rowset", body=batch, idempotent=True, write=True)
                calls += 1
                batch, size = [], 2
            batch.append(item)
            size += n
        if batch:
            self._rest("POST", f"/hub/v1/dataevents/key:{key}/rowset", body=batch, idempotent=True, write=True)
            calls += 1
        return calls

    def async_upsert(self, key: str, items: list[Row]) -> list[str]:
        """A large load through the asynchronous rows API (PUT upserts), ≤ `async_max_rows` per request,
        each polled until Complete; the request ids are returned. An Error status or errors in the
        results raise `SfmcRefused` with the first messages."""
        ids: list[str] = []
        b = self.facts.batch
        for i in range(0, len(items), b.async_max_rows):
            chunk = items[i:i + b.async_max_rows]
            resp = self._rest("PUT", f"/data/v1/async/dataextensions/key:{key}/rows", body={"items": chunk},
                              idempotent=True, write=True)
            rid = str(resp.json()["requestId"])
            self.wait_async(rid)
            ids.append(rid)
        return ids

    def wait_async(self, request_id: str) -> dict[str, Any]:
        b = self.facts.batch
        deadline = time.monotonic() + b.async_timeout
        n = 0
        while True:
            st = self._rest("GET", f"/data/v1/async/{request_id}/status", idempotent=True).json()["status"]
            state = st.get("requestStatus")
            if state == "Complete" and not st.get("hasErrors"):
                return dict(st)
            if state in ("Complete", "Error"):
                res = self._rest("GET", f"/data/v1/async/{request_id}/results", idempotent=True).json()
                msgs = [f"{it.get('errorCode', '')} {it.get('message', '')}".strip()
                        for it in res.get("items", []) if it.get("status") != "OK"][:3]
                raise SfmcRefused(f"Marketing Cloud async request {request_id}: {state} with errors: "
                                  + "; ".join(msgs))
            if time.monotonic() > deadline:
                raise SfmcUncertainWrite(f"Marketing Cloud async request {request_id} still {state} after "
                                         f"{b.async_timeout:.0f} s")
            self._sleep(min(b.async_poll.cap, b.async_poll.base * 2 ** n))
            n += 1

    def fire_event(self, contact_key: str, event_key: str, data: Row) -> str:
        """A journey entry event; returns its eventInstanceId. Not idempotent (re-sent events are not
        deduplicated): an answer lost after sending raises `SfmcUncertainWrite`."""
        resp = self._rest("POST", "/interaction/v1/events",
                          body={"ContactKey": contact_key, "EventDefinitionKey": event_key, "Data": data},
                          write=True)
        return str(resp.json().get("eventInstanceId", ""))

    # -- SOAP -------------------------------------------------------------------------------------

    def soap_call(self, action: str, request: etree._Element) -> etree._Element:
        """One SOAP 1.1 call; returns the response body element. Throttling faults are paced and the
        call sent again; an expired token is replaced once; another fault raises `SfmcError`."""
        f = self.facts.soap
        waits = 0
        forced = False
        while True:
            tok = self.auth.current_token()
            body = S.envelope(request, token=tok.access_token)
            try:
                resp = self.http.post(self.soap_url(), content=body, auth=NO_AUTH,
                                      headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": action})
            except httpx.TransportError as exc:
                if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout) \
                        or action == "Retrieve":
                    raise
                raise SfmcUncertainWrite(f"Marketing Cloud SOAP {action}: {type(exc).__name__} after sending") \
                    from None
            try:
                doc = S.parse(resp.content)
            except S.SoapParseError as exc:
                raise SfmcError(f"Marketing Cloud SOAP {action}: HTTP {resp.status_code}, unreadable answer "
                                f"({exc})", status=resp.status_code) from None
            fault = S.fault_of(doc)
            if fault is None:
                if resp.status_code >= 400:
                    raise SfmcError(f"Marketing Cloud SOAP {action}: HTTP {resp.status_code}", status=resp.status_code)
                return S.body_of(doc)
            code, reason, api = fault
            if reason == "Rate Limited" or api == "17":
                if waits >= f.max_throttle_waits:
                    raise SfmcError(f"Marketing Cloud SOAP {action}: still rate limited after {waits} waits",
                                    status=resp.status_code, code="17")
                b = self.throttle_backoff
                delay = random.uniform(0, min(b.cap, b.base * 2 ** waits)) + b.base / 2
                waits += 1
                self.soap_throttled += 1
                if self.limiter is not None:
                    self.limiter.penalize(delay)
                    self.limiter.acquire()
                else:
                    self._sleep(delay)
                continue
            if "Security" in code and not forced:
                self.auth.current_token(force_if=tok.access_token)
                forced = True
                continue
            if resp.status_code >= 500 and action != "Retrieve":
                raise SfmcUncertainWrite(f"Marketing Cloud SOAP {action}: fault {code} {one_line(reason)}")
            raise SfmcError(f"Marketing Cloud SOAP {action}: fault {code}: {one_line(reason)}",
                            status=resp.status_code, code=api or code)

    @staticmethod
    def _results(resp: etree._Element, action: str) -> list[etree._Element]:
        overall = S.text(resp, "OverallStatus")
        results = S.children(resp, "Results")
        bad = [r for r in results if S.text(r, "StatusCode") == "Error"]
        if bad:
            r = bad[0]
            raise SfmcRefused(f"Marketing Cloud {action}: {len(bad)} of {len(results)} object(s) refused: "
                              f"{S.text(r, 'ErrorCode')} {one_line(S.text(r, 'StatusMessage'))}".rstrip(),
                              code=S.text(r, "ErrorCode"))
        if overall not in ("OK", "MoreDataAvailable", ""):
            raise SfmcRefused(f"Marketing Cloud {action}: {one_line(overall)}")
        return results

    def retrieve(self, object_type: str, props: list[str],
                 flt: etree._Element | None = None) -> Iterator[etree._Element]:
        """Every result of a Retrieve, following MoreDataAvailable with ContinueRequest."""
        request_id: str | None = None
        while True:
            msg = S.root("RetrieveRequestMsg")
            rr = S.sub(msg, "RetrieveRequest")
            if request_id:
                S.sub(rr, "ContinueRequest", request_id)
            else:
                S.sub(rr, "ObjectType", object_type)
                for p in props:
                    S.sub(rr, "Properties", p)
                if flt is not None:
                    rr.append(flt)
            resp = self.soap_call("Retrieve", msg)
            overall = S.text(resp, "OverallStatus")
            if overall.startswith("Error"):
                raise SfmcRefused(f"Marketing Cloud Retrieve {object_type}: {one_line(overall)}")
            yield from S.children(resp, "Results")
            if overall != "MoreDataAvailable":
                return
            request_id = S.text(resp, "RequestID")

    @staticmethod
    def simple_filter(prop: str, op: str, *values: str) -> etree._Element:
        flt = etree.Element(S.q(S.PARTNER, "Filter"), nsmap={"xsi": S.XSI})
        flt.set(S.q(S.XSI, "type"), "SimpleFilterPart")
        S.sub(flt, "Property", prop)
        S.sub(flt, "SimpleOperator", op)
        for v in values:
            S.sub(flt, "Value", v)
        return flt

    def describe_de(self, key: str) -> DeHeld | None:
        found = list(self.retrieve("DataExtension", ["Name", "CustomerKey"],
                                   self.simple_filter("CustomerKey", "equals", key)))
        if not found:
            return None
        held = DeHeld(key=key, name=S.text(found[0], "Name"))
        for f in self.retrieve("DataExtensionField", ["Name", "FieldType", "MaxLength", "IsPrimaryKey",
                                                      "IsRequired", "Precision", "Scale"],
                               self.simple_filter("DataExtension.CustomerKey", "equals", key)):
            def num(name: str, el: etree._Element = f) -> int | None:
                t = S.text(el, name)
                return int(t) if t.isdigit() else None
            held.fields.append(DeField(name=S.text(f, "Name"), type=S.text(f, "FieldType") or "Text",  # type: ignore[arg-type]
                                       length=num("MaxLength"), primary=S.text(f, "IsPrimaryKey") == "true",
                                       required=S.text(f, "IsRequired") == "true", precision=num("Precision"),
                                       scale=num("Scale")))
        return held

    def create_de(self, spec: DeSpec) -> None:
        msg = S.root("CreateRequest")
        de = S.sub(msg, "Objects", xsi_type="DataExtension")
        S.sub(de, "CustomerKey", spec.key)
        S.sub(de, "Name", spec.name)
        if spec.description:
            S.sub(de, "Description", spec.description)
        if spec.sendable_field:
            S.sub(de, "IsSendable", True)
            sdf = S.sub(de, "SendableDataExtensionField")
            S.sub(sdf, "Name", spec.sendable_field)
            ssf = S.sub(de, "SendableSubscriberField")
            S.sub(ssf, "Name", "Subscriber Key")
        fields = S.sub(de, "Fields")
        for f in spec.fields:
            fe = S.sub(fields, "Field")
            S.sub(fe, "Name", f.name)
            S.sub(fe, "FieldType", f.type)
            if f.length:
                S.sub(fe, "MaxLength", f.length)
            if f.precision is not None:
                S.sub(fe, "Precision", f.precision)
            if f.scale is not None:
                S.sub(fe, "Scale", f.scale)
            S.sub(fe, "IsPrimaryKey", f.primary)
            S.sub(fe, "IsRequired", f.is_required)
        self._results(self.soap_call("Create", msg), f"Create DataExtension {spec.key}")

    def ensure_de(self, spec: DeSpec) -> str:
        """Create the Data Extension, or check the existing one (`SchemaMismatch` naming the field
        that differs). Returns "created" or "exists"."""
        held = self.describe_de(spec.key)
        if held is None:
            try:
                self.create_de(spec)
            except SfmcUncertainWrite:
                held = self.describe_de(spec.key)  # the create may have happened: look before anything else
                if held is None:
                    raise
            else:
                return "created"
        compare(spec, held)
        return "exists"

    def de_name(self, key: str) -> str:
        """The name of the Data Extension with external key `key` (row retrieves address it by name),
        asked once per client."""
        name = self._names.get(key)
        if name is None:
            found = list(self.retrieve("DataExtension", ["Name", "CustomerKey"],
                                       self.simple_filter("CustomerKey", "equals", key)))
            if not found:
                raise SfmcRefused(f"Marketing Cloud: no Data Extension with external key {key!r}")
            name = self._names[key] = S.text(found[0], "Name")
        return name

    def retrieve_rows(self, key: str, columns: list[str], flt: etree._Element | None = None) -> list[dict[str, str]]:
        return [S.properties(r) for r in self.retrieve(f"DataExtensionObject[{self.de_name(key)}]", columns, flt)]

    def _objects_request(self, kind: str, key: str, rows: list[tuple[Row, Row]], *,
                         upsert: bool = False) -> etree._Element:
        msg = S.root(kind)
        if upsert:
            opts = S.sub(msg, "Options")
            so = S.sub(S.sub(opts, "SaveOptions"), "SaveOption")
            S.sub(so, "PropertyName", "*")
            S.sub(so, "SaveAction", "UpdateAdd")
        for keys, values in rows:
            obj = S.sub(msg, "Objects", xsi_type="DataExtensionObject")
            S.sub(obj, "CustomerKey", key)
            if kind == "DeleteRequest":
                ks = S.sub(obj, "Keys")
                for k, v in keys.items():
                    ke = S.sub(ks, "Key")
                    S.sub(ke, "Name", k)
                    S.sub(ke, "Value", v)
                continue
            props = S.sub(obj, "Properties")
            for k, v in {**keys, **values}.items():
                pe = S.sub(props, "Property")
                S.sub(pe, "Name", k)
                S.sub(pe, "Value", "" if v is None else v)
        return msg

    def update_rows(self, key: str, rows: list[tuple[Row, Row]], *, upsert: bool = True) -> None:
        """SOAP Update of rows (UpdateAdd: upsert), in batches of `rowset_max_rows`."""
        n = self.facts.batch.rowset_max_rows
        for i in range(0, len(rows), n):
            self._results(self.soap_call("Update", self._objects_request("UpdateRequest", key, rows[i:i + n],
                                                                         upsert=upsert)), f"Update rows of {key}")

    def delete_rows(self, key: str, keys: list[Row]) -> None:
        n = self.facts.batch.rowset_max_rows
        for i in range(0, len(keys), n):
            self._results(self.soap_call("Delete", self._objects_request("DeleteRequest", key,
                                                                         [(k, {}) for k in keys[i:i + n]])),
                          f"Delete rows of {key}")


__all__ = ["SchemaMismatch", "SfmcClient", "SfmcError", "SfmcRefused", "SfmcUncertainWrite"]
