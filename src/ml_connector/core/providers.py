"""Provider facts as data: each `systems/<name>/provider.yaml`, schema-checked when it loads.

The common frame (`ProviderFacts`) is what every system may declare: base URLs, the auth mode with
its token endpoint, lifetimes and refresh margin, the rate limit, the retry rule (statuses, backoff,
the headers that say how long to wait) and the ping call. A system adds its own sections by
subclassing `ProviderFacts` in `systems/<name>/facts.py` (class `Facts`); that model validates the
file. Code reads the typed model (`facts(name)`), and no fact is repeated as a default in code:
a key the code needs and the file lacks is a load error naming the file and the key.
"""

from __future__ import annotations

import importlib
import math
from functools import cache
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ProviderFactsError(ValueError):
    """A provider.yaml that is missing, malformed or does not match its schema."""


class Section(BaseModel):
    """A block of facts: unknown keys are refused (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Backoff(Section):
    base: float = Field(gt=0)
    cap: float = Field(gt=0)


OAUTH_MODES = ("oauth2_client_credentials", "oauth2_password", "oauth2_refresh_token")


class AuthFacts(Section):
    """How a client proves who it is. OAuth2 modes need the token endpoint and its timings."""

    mode: Literal["oauth2_client_credentials", "oauth2_password", "oauth2_refresh_token", "basic", "session",
                  "api_key"]
    token_path: str | None = None           # relative to the API host
    client_auth: Literal["basic", "body"] | None = None  # client id/secret in Basic auth or in the form
    scopes: list[str] = []
    token_lifetime: float | None = Field(default=None, gt=0)  # seconds, when the answer has no expires_in
    refresh_margin: float | None = Field(default=None, ge=0)  # refresh when less than this is left
    refresh_backoff: Backoff | None = None  # wait after a failed refresh before trying again

    @model_validator(mode="after")
    def _oauth_complete(self) -> AuthFacts:
        if self.mode in OAUTH_MODES:
            missing = [k for k in ("token_path", "client_auth", "token_lifetime", "refresh_margin",
                                   "refresh_backoff") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"mode {self.mode} needs {', '.join(missing)}")
        return self


class RateLimitFacts(Section):
    """The provider's request budget, and how the client spends it."""

    limit: int = Field(gt=0)                # requests ...
    period: float = Field(gt=0)             # ... per this many seconds
    scope: Literal["egress_ip", "credential", "system"]  # what the provider counts against
    client_headroom: float = Field(default=0.0, ge=0, lt=1)  # the client keeps limit * (1 - headroom)
    max_concurrent: int | None = Field(default=None, gt=0)   # calls in flight at once
    limit_range: tuple[int, int] | None = None               # what a configuration may set the limit to

    def client_budget(self, limits: Any = None) -> tuple[int, float]:
        """(requests, period) a client allows itself: the provider's limit, or a configured one
        (`limits.requests` per `limits.period`), less the headroom kept for send/arrival skew."""
        limit = int(limits.requests) if limits else self.limit
        period = float(limits.period) if limits else self.period
        return max(1, limit - max(1, math.ceil(limit * self.client_headroom))), period

    @model_validator(mode="after")
    def _in_range(self) -> RateLimitFacts:
        if self.limit_range is not None and not self.limit_range[0] <= self.limit <= self.limit_range[1]:
            raise ValueError(f"limit {self.limit} is outside limit_range {list(self.limit_range)}")
        return self


class RetryFacts(Section):
    """Which answers are worth another attempt, and how long to wait before it."""

    statuses: list[int]                     # retried for idempotent requests (429 always waits)
    idempotent_methods: list[str]           # other methods are never re-sent once they may have arrived
    max_retries: int = Field(ge=0)          # after the first attempt, for 5xx / connection errors
    base: float = Field(ge=0)
    factor: float = Field(ge=1)
    cap: float = Field(gt=0)
    jitter: Literal["none", "full", "equal"]
    retry_after_headers: list[str]          # seconds or an HTTP date
    reset_headers: list[str] = []           # unix time (or seconds) at which the window resets
    max_wait_429: float | None = Field(default=None, gt=0)  # None: a 429 is waited out however long


class PingFacts(Section):
    """The cheapest call that proves network, credentials and authorizations."""

    method: str | None = None
    path: str | None = None
    params: dict[str, Any] = {}
    calls: list[str] = []                   # RFC systems: function modules instead of a path

    @model_validator(mode="after")
    def _one_kind(self) -> PingFacts:
        if not self.calls and not (self.method and self.path):
            raise ValueError("needs method and path, or calls")
        return self


class DeliveryFacts(Section):
    concurrency: int = Field(gt=0)          # delivery workflows in flight per worker (DBOS queue)
    workflows_per_period: dict[str, float] | None = None


class ProviderFacts(BaseModel):
    """The common frame of every provider.yaml; a system's `Facts` subclass adds its sections."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    base_urls: dict[str, str] = {}
    api_prefix: str = ""
    auth: AuthFacts
    rate_limit: RateLimitFacts | None = None
    retry: RetryFacts | None = None
    ping: PingFacts
    delivery: DeliveryFacts | None = None

    def need_retry(self) -> RetryFacts:
        if self.retry is None:
            raise ProviderFactsError(f"systems/{self.name}/provider.yaml: retry: missing")
        return self.retry

    def need_rate_limit(self) -> RateLimitFacts:
        if self.rate_limit is None:
            raise ProviderFactsError(f"systems/{self.name}/provider.yaml: rate_limit: missing")
        return self.rate_limit


#: The in-tree systems' package: system <name>'s facts are in its subpackage <name> unless located elsewhere.
BUILTIN_PACKAGE = "ml_connector.systems"
_packages: dict[str, str] = {}


def locate(name: str, package: str) -> None:
    """System `name`'s provider.yaml (and facts.py) are in `package`: a system shipped as a package of
    its own (its registry entry's `facts_package`; core/registry.py calls this when it adds the entry)."""
    if _packages.get(name) != package:
        _packages[name] = package
        facts.cache_clear()
        provider.cache_clear()


def package_of(name: str) -> str:
    """The package holding system `name`'s provider.yaml and facts.py."""
    return _packages.get(name, f"{BUILTIN_PACKAGE}.{name}")


def _where(name: str, file: str) -> str:
    package = package_of(name)
    if package == f"{BUILTIN_PACKAGE}.{name}":
        return f"systems/{name}/{file}"
    return f"{package.replace('.', '/')}/{file}"


def model_for(name: str) -> type[ProviderFacts]:
    """The system's own model (`<its package>.facts.Facts`), else the common frame."""
    module = f"{package_of(name)}.facts"
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        return ProviderFacts
    model = getattr(mod, "Facts", ProviderFacts)
    if not (isinstance(model, type) and issubclass(model, ProviderFacts)):
        raise ProviderFactsError(f"{_where(name, 'facts.py')}: Facts must subclass core.providers.ProviderFacts")
    return model


def validate(where: str, data: Any, model: type[ProviderFacts] = ProviderFacts) -> ProviderFacts:
    """`data` (a parsed provider.yaml) checked against `model`; errors name `where` and each key."""
    if not isinstance(data, dict):
        raise ProviderFactsError(f"{where}: expected a mapping at the top level")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            if err["type"] != "extra_forbidden" and isinstance(err.get("input"), str | int | float):
                msg += f" (got {err['input']!r})"
            lines.append(f"{where}: {loc}: {msg}")
        raise ProviderFactsError("\n".join(lines)) from None


@cache
def facts(name: str) -> ProviderFacts:
    """The validated facts of system `name` (the name of its package under systems/, or one `locate`d),
    loaded once."""
    where = _where(name, "provider.yaml")
    try:
        ref = resources.files(package_of(name)).joinpath("provider.yaml")
        text = ref.read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise ProviderFactsError(f"{where}: not found ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProviderFactsError(f"{where}: not valid YAML: {exc}") from None
    found = validate(where, data, model_for(name))
    if found.name != name:
        raise ProviderFactsError(f"{where}: name: {found.name!r} but the system is {name!r}")
    return found


@cache
def provider(name: str) -> dict[str, Any]:
    """The validated facts of system `name` as plain data (for generic readers)."""
    return facts(name).model_dump()


_MISSING: Any = object()


def fact(name: str, *path: str, default: Any = _MISSING) -> Any:
    """A nested value from the validated facts, e.g. fact(name, 'rate_limit', 'limit').

    A missing key raises `ProviderFactsError` naming the file and the key, unless the caller says
    the fact is optional by passing `default`."""
    node: Any = provider(name)
    for i, key in enumerate(path):
        if not isinstance(node, dict) or node.get(key) is None:
            if default is not _MISSING:
                return default
            raise ProviderFactsError(f"systems/{name}/provider.yaml: {'.'.join(path[:i + 1])}: missing")
        node = node[key]
    return node
