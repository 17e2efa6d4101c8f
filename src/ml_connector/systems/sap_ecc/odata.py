"""SAP Gateway OData v2 client, for ECC systems where the customer activated a service (§1.3).

    svc = ODataClient("https://sap:44300", "/sap/opu/odata/sap/ZMLC_VENDOR_SRV", "100", user, password)
    for vendor in svc.query("VendorSet", filter="Land1 eq 'DE'"):   # follows "__next" pages
        ...
    svc.get_entity("VendorSet('0000100001')")
    svc.update("VendorSet('0000100001')", {"Name1": "New"})         # MERGE, CSRF handled
    svc.create("VendorSet", {...})

CSRF (SAP KBA 3048103): the first modifying request fetches a token with `GET <service root>` and
`X-CSRF-Token: Fetch`; the token and the session cookies (kept in the client's cookie jar) go with
every POST/PUT/PATCH/MERGE/DELETE. A 403 with `X-CSRF-Token: Required` refetches the token and
retries once; a second 403 raises `CsrfError` (no loop).

Errors: 401 -> `LogonError`; Gateway error JSON -> `GatewayError` (subclasses `GatewayNotFound` for
404, `CsrfError`), with code, message, transactionid, service_id and `errordetails`
(code/message/propertyref/target/severity); transport failures -> `CommunicationError`
(`uncertain=True` for a modifying request whose answer was lost).

Budget: the calls-per-second budget and concurrency cap of the SAP system (call_policy), shared
with SOAP-RFC clients of the same base URL and client; a read whose connection failed is retried
with backoff, a modification only when it never reached the server.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from ml_connector.core import calls
from ml_connector.core.http import PicklableError
from ml_connector.core.ratelimit import Budgets

from .call_policy import CallPolicy, system_key
from .errors import CommunicationError, LogonError

MODIFYING = frozenset({"POST", "PUT", "PATCH", "MERGE", "DELETE"})
RAW_LIMIT = 4000


@dataclass(frozen=True)
class ErrorDetail:
    code: str = ""
    message: str = ""
    propertyref: str = ""
    target: str = ""
    severity: str = ""


class GatewayError(PicklableError):
    """An error answer of SAP Gateway (parsed from its error JSON when there is one)."""

    def __init__(self, status: int, message: str, *, code: str = "", lang: str = "", transactionid: str = "",
                 service_id: str = "", timestamp: str = "", details: list[ErrorDetail] | None = None,
                 raw: str = "") -> None:
        self.status = status
        self.code = code
        self.message = message
        self.lang = lang
        self.transactionid = transactionid
        self.service_id = service_id
        self.timestamp = timestamp
        self.details: list[ErrorDetail] = details or []
        self.raw = raw[:RAW_LIMIT]
        text = f"HTTP {status}"
        if code:
            text += f" {code}"
        text += f": {message}"
        fields = [d.propertyref or d.target for d in self.details if d.propertyref or d.target]
        if fields:
            text += f" (fields: {', '.join(fields)})"
        if transactionid:
            text += f" [transaction {transactionid}]"
        super().__init__(text)


class GatewayNotFound(GatewayError):
    """404: unknown service (/IWFND/MED/170), entity set or key."""


class CsrfError(GatewayError):
    """403 CSRF token validation failed, also after a fresh token."""


def parse_gateway_error(status: int, body: bytes | str, content_type: str = "") -> GatewayError:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    cls: type[GatewayError] = GatewayNotFound if status == 404 else GatewayError
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    err = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(err, dict):
        m = re.search(r"<message[^>]*>([^<]*)</message>", text)  # the XML flavour of the same error
        c = re.search(r"<code>([^<]*)</code>", text)
        message = m.group(1) if m else (text.strip()[:300] or f"HTTP {status}")
        return cls(status, message, code=c.group(1) if c else "", raw=text)
    msg = err.get("message")
    if isinstance(msg, dict):
        message, lang = str(msg.get("value", "")), str(msg.get("lang", ""))
    else:
        message, lang = str(msg or ""), ""
    inner_raw = err.get("innererror")
    inner: dict[str, Any] = inner_raw if isinstance(inner_raw, dict) else {}
    app_raw = inner.get("application")
    app: dict[str, Any] = app_raw if isinstance(app_raw, dict) else {}
    details = []
    for d in inner.get("errordetails") or []:
        if isinstance(d, dict):
            details.append(ErrorDetail(code=str(d.get("code", "")), message=str(d.get("message", "")),
                                       propertyref=str(d.get("propertyref", "")), target=str(d.get("target", "")),
                                       severity=str(d.get("severity", ""))))
    return cls(status, message, code=str(err.get("code", "")), lang=lang,
               transactionid=str(inner.get("transactionid", "")), service_id=str(app.get("service_id", "")),
               timestamp=str(inner.get("timestamp", "")), details=details, raw=text)


@dataclass
class _Csrf:
    token: str | None = None
    fetches: int = 0
    retries: int = 0
    history: list[str] = field(default_factory=list)


class ODataClient:
    """One Gateway OData v2 service of one SAP system/client."""

    def __init__(self, base_url: str, service_path: str, client: str | int, user: str, password: str, *,
                 language: str | None = None, timeout: float = 60.0, transport: httpx.BaseTransport | None = None,
                 verify: bool | str = True, merge_method: str = "MERGE", max_pages: int = 10_000,
                 calls_per_second: int | None = None, max_concurrency: int | None = None,
                 max_attempts: int | None = None, sleep: Callable[[float], None] = time.sleep,
                 budgets: Budgets | None = None) -> None:
        self.client = str(client).zfill(3)
        if not re.fullmatch(r"\d{3}", self.client):
            raise ValueError(f"SAP client must be three digits, got {client!r}")
        if merge_method not in ("MERGE", "PATCH", "X-HTTP-Method"):
            raise ValueError("merge_method must be MERGE, PATCH or X-HTTP-Method (POST tunnelling)")
        self.base_url = base_url.rstrip("/")
        self.service_path = "/" + service_path.strip("/") + "/"
        self.root = self.base_url + self.service_path
        self.user = user
        self.merge_method = merge_method
        self.max_pages = max_pages
        params = {"sap-client": self.client}
        if language:
            params["sap-language"] = language
        self._params = params
        self._csrf = _Csrf()
        # Gateway runs in the same ICM and work processes as SOAP-RFC: one budget for both.
        self.policy = CallPolicy(system_key(self.base_url, self.client), calls_per_second=calls_per_second,
                                 max_concurrency=max_concurrency, max_attempts=max_attempts, sleep=sleep,
                                 budgets=budgets)
        self._http = httpx.Client(auth=httpx.BasicAuth(user, password), timeout=timeout, transport=transport,
                                  verify=verify, follow_redirects=False,
                                  headers={"Accept": "application/json"},
                                  event_hooks=calls.http_hooks())  # each request is one of the run's calls

    def __repr__(self) -> str:
        return f"ODataClient(root={self.root!r}, client={self.client!r}, user={self.user!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ODataClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def csrf_fetches(self) -> int:
        return self._csrf.fetches

    # -- plumbing -------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return self.root + path.lstrip("/")

    def _send(self, method: str, url: str, *, params: dict[str, str] | None = None,
              headers: dict[str, str] | None = None, body: Any = None) -> httpx.Response:
        query = {} if "sap-client=" in url else dict(self._params)
        query.update(params or {})
        content = json.dumps(body).encode() if body is not None else None
        hdrs = dict(headers or {})
        if content is not None:
            hdrs["Content-Type"] = "application/json"
        # httpx replaces a URL's query when `params` is given: merge explicitly (__next links)
        target = httpx.URL(url).copy_merge_params(query) if query else httpx.URL(url)

        def once() -> httpx.Response:
            with self.policy.slot():
                try:
                    return self._http.request(method, target, headers=hdrs, content=content)
                except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                    raise CommunicationError(f"cannot connect to SAP Gateway: {type(exc).__name__}") from None
                except httpx.HTTPError as exc:
                    raise CommunicationError(f"SAP Gateway request failed: {type(exc).__name__}",
                                             uncertain=method in MODIFYING) from None

        # Reads are retried with backoff; a modification is retried only if it never left.
        return self.policy.run(f"{method} {url}", once, idempotent=method not in MODIFYING)

    def _check(self, resp: httpx.Response) -> httpx.Response:
        if resp.status_code == 401:
            raise LogonError("Logon to SAP Gateway failed (user, password or client)", key="RFC_LOGON_FAILURE",
                             raw=resp.text)
        if resp.status_code >= 400:
            err = parse_gateway_error(resp.status_code, resp.content, resp.headers.get("content-type", ""))
            if resp.status_code == 403 and resp.headers.get("x-csrf-token", "").lower() == "required":
                raise CsrfError(403, err.message or "CSRF token validation failed", raw=resp.text)
            raise err
        return resp

    def fetch_token(self) -> str:
        """GET the service root with `X-CSRF-Token: Fetch`; cookies stay in the jar."""
        resp = self._check(self._send("GET", self.root, headers={"X-CSRF-Token": "Fetch"}))
        token = resp.headers.get("x-csrf-token")
        if not token or token.lower() in ("required", "fetch"):
            raise CsrfError(resp.status_code, "SAP Gateway returned no CSRF token", raw=resp.text)
        self._csrf.token = token
        self._csrf.fetches += 1
        return token

    def _modify(self, method: str, path: str, body: Any = None) -> httpx.Response:
        verb, headers = method, {}
        if method == "MERGE" and self.merge_method != "MERGE":
            if self.merge_method == "PATCH":
                verb = "PATCH"
            else:
                verb, headers = "POST", {"X-HTTP-Method": "MERGE"}
        for attempt in (1, 2):
            token = self._csrf.token or self.fetch_token()
            resp = self._send(verb, self._url(path), headers={**headers, "X-CSRF-Token": token}, body=body)
            if (resp.status_code == 403 and resp.headers.get("x-csrf-token", "").lower() == "required"
                    and attempt == 1):
                self._csrf.token = None  # expired or session lost: refetch and retry once
                self._csrf.retries += 1
                continue
            return self._check(resp)
        raise AssertionError("unreachable")

    @staticmethod
    def _d(resp: httpx.Response) -> Any:
        try:
            doc = resp.json()
        except ValueError:
            raise GatewayError(resp.status_code, "answer is not JSON", raw=resp.text) from None
        if not isinstance(doc, dict) or "d" not in doc:
            raise GatewayError(resp.status_code, "answer has no 'd' member", raw=resp.text)
        return doc["d"]

    # -- API -------------------------------------------------------------------------------------

    def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        """GET `path` (relative to the service root) and return the `d` member."""
        return self._d(self._check(self._send("GET", self._url(path), params={"$format": "json", **(params or {})})))

    def get_entity(self, path: str) -> dict[str, Any]:
        d = self.get(path)
        if not isinstance(d, dict):
            raise GatewayError(200, "entity answer is not an object")
        return d

    def query(self, entity_set: str, *, filter: str | None = None, top: int | None = None,
              skip: int | None = None, select: str | None = None,
              params: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
        """Every entity of a collection, following server paging (`__next`)."""
        q: dict[str, str] = {"$format": "json", **(params or {})}
        if filter:
            q["$filter"] = filter
        if top is not None:
            q["$top"] = str(top)
        if skip is not None:
            q["$skip"] = str(skip)
        if select:
            q["$select"] = select
        url: str | None = self._url(entity_set)
        pages = 0
        while url:
            pages += 1
            if pages > self.max_pages:
                raise GatewayError(200, f"more than {self.max_pages} pages; stopping (paging loop?)")
            d = self._d(self._check(self._send("GET", url, params=q)))
            if isinstance(d, dict) and "results" in d:
                results, nxt = d.get("results") or [], d.get("__next")
            elif isinstance(d, list):  # OData v1 style
                results, nxt = d, None
            else:
                raise GatewayError(200, "collection answer has no 'results'")
            yield from results
            url, q = (str(nxt), {}) if nxt else (None, q)

    def create(self, entity_set: str, data: dict[str, Any]) -> dict[str, Any]:
        resp = self._modify("POST", entity_set, data)
        d = self._d(resp) if resp.content else {}
        return d if isinstance(d, dict) else {}

    def update(self, path: str, data: dict[str, Any], *, method: str = "MERGE") -> None:
        if method not in ("MERGE", "PUT", "PATCH"):
            raise ValueError("method must be MERGE, PUT or PATCH")
        self._modify(method, path, data)

    def delete(self, path: str) -> None:
        self._modify("DELETE", path)
