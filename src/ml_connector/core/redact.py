"""Keep secrets out of logs, error messages, audit details and API responses.

`redact(text)` replaces with `***`:
  * every known secret value (read from the vault, or registered with `register_secret`);
  * the credential of `Authorization: Basic …` / `Bearer …` headers (also in dict reprs)
    and of a bare `Bearer <token>`;
  * the values of access_token, refresh_token, id_token, client_secret, password,
    api_key … in JSON (`"password": "x"`), Python reprs (`'password': 'x'`), forms and
    query strings (`password=x`) and XML (`<Password>x</Password>`).

One regex is compiled and rebuilt only when the registry of known values changes.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading

from ml_connector.core.vault import known_secret_values, register_secret_value, registry_version

MASK = "***"

_SENSITIVE_KEYS = (
    r"access_token|refresh_token|id_token|client_secret|password|passwd|api_key|apikey|secret"
    r"|private_key|token"
)

# Order matters only among overlapping alternatives; each alternative has its own group.
_FIXED = [
    # Authorization header (plain header text, or a repr/JSON of a header mapping)
    r"(?P<auth_pre>\bauthorization['\"]?\s*[:=]\s*['\"]?(?:(?:basic|bearer|token|digest|negotiate)\s+)?)"
    r"(?P<auth_val>[^\s'\",;}\]]+)",
    # bare `Bearer <token>` / `Basic <credentials>` anywhere (capitalized as in headers; the
    # credential has a digit or punctuation, so that "Basic authentication" stays readable)
    r"(?P<bearer_pre>\b(?-i:Bearer|Basic)\s+)"
    r"(?P<bearer_val>(?=[A-Za-z0-9._~+/=-]*[0-9._~+/=-])[A-Za-z0-9._~+/=-]{12,})",
    # JSON / Python repr: "key": "value"
    rf"(?P<json_pre>(?P<q>['\"])(?:{_SENSITIVE_KEYS})(?P=q)\s*:\s*(?P<q2>['\"]))"
    r"(?P<json_val>(?:\\.|(?!(?P=q2)).)*)(?P=q2)",
    # form / query string: key=value
    rf"(?P<form_pre>(?<![A-Za-z0-9_])(?:{_SENSITIVE_KEYS})=)(?P<form_val>[^&\s'\"]+)",
    # XML element: <Password>value</Password>
    rf"(?P<xml_pre><(?P<tag>(?:[\w-]+:)?(?:{_SENSITIVE_KEYS}))>)(?P<xml_val>[^<]+)(?=</(?P=tag)>)",
]


#: Words one of which (any case) every fixed pattern's match contains: a text without any of
#: them (and without a known value) has nothing to redact, which plain substring tests tell
#: far faster than the alternation (a sync redacts every record's audit detail).
_TRIGGERS = ("authorization", "bearer", "basic", "token", "secret", "password", "passwd", "api_key", "apikey",
             "private_key")


class _Compiled:
    version = -1
    regex: re.Pattern[str] | None = None
    values: tuple[str, ...] = ()


_state = _Compiled()
_state_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Redact `value` from now on, wherever it appears (values < 4 characters are ignored)."""
    register_secret_value(value)


def _regex() -> re.Pattern[str]:
    version = registry_version()
    rx = _state.regex
    if rx is not None and _state.version == version:
        return rx
    with _state_lock:
        if _state.regex is not None and _state.version == version:
            return _state.regex
        values = sorted(known_secret_values(), key=len, reverse=True)
        parts = list(_FIXED)
        if values:
            # known values match case-sensitively, the patterns ignore case
            parts.insert(0, "(?-i:(?P<known>" + "|".join(re.escape(v) for v in values) + "))")
        rx = re.compile("|".join(parts), re.IGNORECASE | re.DOTALL)
        _state.regex, _state.values, _state.version = rx, tuple(values), version
        return rx


def _replace(m: re.Match[str]) -> str:
    if m.groupdict().get("known") is not None:
        return MASK
    for pre in ("auth_pre", "bearer_pre", "form_pre", "xml_pre"):
        if m.group(pre) is not None:
            return m.group(pre) + MASK
    if m.group("json_pre") is not None:
        return m.group("json_pre") + MASK + m.group("q2")
    return MASK


def redact(text: str) -> str:
    """`text` with every secret it contains replaced by ***."""
    if not text:
        return text
    rx = _regex()
    values = _state.values  # the registry only grows: those of this regex or of a newer one
    low = text.lower()
    if not any(w in low for w in _TRIGGERS) and not any(v in text for v in values):
        return text
    return rx.sub(_replace, text)


def digest(data: bytes | str) -> str:
    """SHA-256 hex of a request or response body (for the audit trail)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


_MARK = "_mlc_redacted"


class RedactingFilter(logging.Filter):
    """Rewrites each record's message (and traceback) with secrets masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, _MARK, False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it to the handler's error path
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        setattr(record, _MARK, True)
        return True


_filter = RedactingFilter()


def install_log_redaction() -> RedactingFilter:
    """Add the redacting filter to the root logger and to every handler that exists now
    (handler filters see records from every logger). Idempotent; call it again after
    adding handlers."""
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    for lg in loggers:
        if lg is logging.getLogger() and _filter not in lg.filters:
            lg.addFilter(_filter)
        for handler in lg.handlers:
            if _filter not in handler.filters:
                handler.addFilter(_filter)
    return _filter
