"""A real SMTP server on loopback (aiosmtpd) that records the messages it receives: STARTTLS with a
test CA's certificate and a login, as a mail relay of a customer would ask for."""

from __future__ import annotations

import email
import email.policy
import ssl
from email.message import Message
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from ml_connector.core.servers import free_port
from tests.support.tls import make_pki


class _Handler:
    def __init__(self, box: SmtpServer) -> None:
        self.box = box

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.box.messages.append(email.message_from_bytes(envelope.original_content or envelope.content,
                                                           policy=email.policy.default))
        self.box.logins.append(getattr(session, "auth_data", None))
        return "250 OK"


class SmtpServer:
    """STARTTLS required, then AUTH LOGIN/PLAIN with `username` / `password`."""

    def __init__(self, tmp: Path, username: str, password: str) -> None:
        self.pki = make_pki(tmp / "smtp-pki")
        self.messages: list[Message] = []
        self.logins: list[Any] = []
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.pki["cert"]), str(self.pki["key"]))

        def check(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
            ok = isinstance(data, LoginPassword) and data.login == username.encode() \
                and data.password == password.encode()
            return AuthResult(success=ok, handled=False, auth_data=data.login.decode() if ok else None)

        self.port = free_port()
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port, tls_context=ctx,
                                     require_starttls=True, authenticator=check, auth_require_tls=True)
        self.controller.start()

    @property
    def ca(self) -> Path:
        return self.pki["ca"]

    def stop(self) -> None:
        self.controller.stop()
