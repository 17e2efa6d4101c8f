"""The control plane's listener: HTTPS from `server.tls`, the startup line, and uvicorn.

Used by `ml-connector run` and `python -m ml_connector.server.agents.serve`, so both serve the
same way. Problems with the TLS files are found before anything starts and named by
`file:line: server.tls.<field>` like every other configuration error.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ml_connector.config import ConfigError
from ml_connector.core.net import host_for_url, is_loopback_host

log = logging.getLogger("ml_connector.server")


@dataclass
class Listener:
    host: str
    port: int
    scheme: str
    uvicorn_options: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{host_for_url(self.host)}:{self.port}"


def _no_prompt() -> bytes:
    # Without a password callback OpenSSL would prompt on the terminal for an encrypted key (a
    # service would hang); an empty passphrase makes it fail with an error we can report instead.
    return b""


def tls_options(rt: Any) -> dict[str, Any]:
    """uvicorn's ssl_* options for `server.tls`, after checking that the files load together."""
    cfg = rt.config
    tls = cfg.server.tls
    if tls is None:
        return {}
    cert, key = cfg.resolve_path(tls.cert_file), cfg.resolve_path(tls.key_file)
    for name, path in (("cert_file", cert), ("key_file", key)):
        if not path.is_file():
            raise ConfigError(f"{cfg.where('server', 'tls', name)}: file not found: {path} "
                              "(relative paths are relative to the configuration file)")
    password: str | None = None
    if tls.key_password_secret:
        from ml_connector.core.redact import register_secret
        from ml_connector.core.vault import VaultError

        try:
            password = rt.vault.get(tls.key_password_secret)
        except VaultError as exc:
            raise ConfigError(f"{cfg.where('server', 'tls', 'key_password_secret')}: {exc}") from None
        register_secret(password)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(str(cert), str(key), password if password is not None else _no_prompt)
    except (ssl.SSLError, OSError) as exc:
        hint = ("" if password is not None else
                "; if the key file is encrypted, name its passphrase with key_password_secret")
        raise ConfigError(f"{cfg.where('server', 'tls')}: cannot load cert_file {cert} with key_file {key}: "
                          f"{getattr(exc, 'reason', None) or exc} (PEM certificate and its matching private key "
                          f"expected{hint})") from None
    opts: dict[str, Any] = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
    if password is not None:
        opts["ssl_keyfile_password"] = password
    return opts


def plan(rt: Any, port: int | None = None) -> Listener:
    """Where and how to listen; raises ConfigError naming the setting when TLS cannot be used."""
    server = rt.config.server
    opts = tls_options(rt)
    return Listener(host=server.host, port=port or server.port, scheme="https" if opts else "http",
                    uvicorn_options=opts)


def warnings_for(rt: Any, listener: Listener) -> list[str]:
    """Loud start-up warnings for exposed, unprotected listeners."""
    from ml_connector.server.api_auth import active_token_count, auth_required

    out = []
    if listener.scheme == "http" and not is_loopback_host(listener.host):
        out.append(f"serving plain HTTP on {listener.host}, which is not loopback: agent requests and operator "
                   "tokens cross the network unencrypted. Configure server.tls (cert_file, key_file)")
    if auth_required(rt.config.server) and active_token_count(rt.db) == 0:
        out.append("the operators' API needs a bearer token and none exists yet: create one with "
                   "`ml-connector api-tokens create NAME`")
    return out


def startup_line(rt: Any, listener: Listener) -> str:
    """`control plane listening on URL`, and who may use the operators' API without a token."""
    from ml_connector.server.api_auth import auth_required

    line = f"control plane listening on {listener.url}"
    if not auth_required(rt.config.server):
        line += ("; operators' API open WITHOUT a token to processes on this host (loopback, api_auth: auto; "
                 "requests with a proxy header need one; api_auth: token to always require one)")
    else:
        line += "; operators' API needs a bearer token"
    return line


def serve(rt: Any, listener: Listener, announce: Callable[[str], None] | None = None) -> None:
    """Run the control plane's app on `listener` until stopped."""
    import uvicorn

    from ml_connector.server.app import create_app

    for w in warnings_for(rt, listener):
        log.warning("%s", w)
    line = startup_line(rt, listener)
    if announce is not None:
        announce(line)
    else:
        print(line, flush=True)
    # proxy_headers off: uvicorn would believe X-Forwarded-For from 127.0.0.1 (anyone on the
    # host); the app's ClientAddress middleware believes it only from server.trusted_proxies.
    uvicorn.run(create_app(rt), host=listener.host, port=listener.port, log_level="warning",
                proxy_headers=False, **listener.uvicorn_options)
