"""A real SMTP server on loopback for the tests (aiosmtpd), with handlers that inject faults.

The server runs in a thread of the test process; the sender (in-process or a subprocess)
talks SMTP to it over TCP. Faults are set on the server object while it runs:

- `refuse_rcpt[address] = "550 ..."`: every RCPT TO for that address gets that reply;
- `rcpt_once[address] = "451 ..."`: the next RCPT TO for it gets that reply, then it passes;
- `mail_reply = "553 ..."`: every MAIL FROM gets that reply;
- `rcpt_reply = "553 ..."`: every RCPT TO gets that reply (a relay refusing *us* at RCPT TO, as
  Postfix with smtpd_delay_reject=yes, Exim and Microsoft 365 do); None: accepted again;
- `hold_from = n`: from the n-th accepted message on, the message is kept but the reply to it is
  held until the test ends (a sender killed then has exactly those messages in flight);
- `observe = f`: called with each accepted message, before the reply; what it returns is kept in
  `observed` (e.g. how many deliveries the sender had recorded when that message arrived);
- `drop_at_data_once.add(address)`: the connection is cut when that message's data arrives
  (before any reply, and the message is not kept), once;
- `password`: what AUTH accepts (None: no AUTH offered); change it to rotate the password.

Every accepted message is kept (envelope and parsed MIME) in `messages`; `wait_for` waits on
an observable condition (a message, a login), never on time.
"""

from __future__ import annotations

import asyncio
import datetime
import email
import email.policy
import ipaddress
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

USERNAME = "mailroom"
PASSWORD = "s3cret-smtp-password"


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    mail_options: list[str]
    raw: bytes
    queue_id: str

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.raw, policy=email.policy.default)  # type: ignore[return-value]


class _Controller(Controller):
    """aiosmtpd's Controller on port 0: the real port is read from the listening socket."""

    def _trigger_server(self) -> None:
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class SmtpServer:
    def __init__(
        self,
        *,
        password: str | None = None,
        smtputf8: bool = False,
        tls_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
    ) -> None:
        self.password = password
        self.messages: list[Received] = []
        self.refuse_rcpt: dict[str, str] = {}
        self.rcpt_once: dict[str, str] = {}
        self.mail_reply: str | None = None
        self.rcpt_reply: str | None = None
        self.hold_from: int | None = None
        self.held = 0
        self.observe: Callable[[Received], object] | None = None
        self.observed: list[object] = []
        self._release: asyncio.Event | None = None
        self.drop_at_data_once: set[str] = set()
        self.logins: list[tuple[str, bool]] = []  # (username, accepted)
        self.sessions = 0  # connections opened
        self.closed = 0  # connections ended (QUIT or dropped)
        self.rsets = 0
        self.dropped: list[str] = []
        self._cond = threading.Condition()
        kwargs: dict[str, object] = {"enable_SMTPUTF8": smtputf8}
        if password is not None:
            kwargs.update(authenticator=self._authenticate, auth_required=True, auth_require_tls=False)
        if tls_context is not None and implicit_tls:
            kwargs["ssl_context"] = tls_context
        elif tls_context is not None:
            kwargs.update(tls_context=tls_context, require_starttls=True)
        self.controller = _Controller(self, hostname="127.0.0.1", port=0, **kwargs)

    # -- life -----------------------------------------------------------------------------
    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        if self._release is not None:  # the held replies: their coroutines end before the loop does
            self.controller.loop.call_soon_threadsafe(self._release.set)
        self.controller.stop()

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return int(self.controller.port)

    # -- observations ---------------------------------------------------------------------
    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not condition():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}")
                self._cond.wait(min(left, 0.5))

    def recipients(self) -> list[str]:
        with self._cond:
            return [r for m in self.messages for r in m.rcpt_tos]

    # -- aiosmtpd hooks -------------------------------------------------------------------
    def _changed(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:  # type: ignore[no-untyped-def]
        assert isinstance(auth_data, LoginPassword)
        login = auth_data.login.decode()
        ok = login == USERNAME and auth_data.password.decode() == self.password
        with self._cond:
            self.logins.append((login, ok))
            self._cond.notify_all()
        return AuthResult(success=ok, handled=False)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # type: ignore[no-untyped-def]
        session.host_name = hostname
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # type: ignore[no-untyped-def]
        if self.mail_reply:
            return self.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
        with self._cond:
            if self.rcpt_reply:
                return self.rcpt_reply
            if address in self.refuse_rcpt:
                return self.refuse_rcpt[address]
            if address in self.rcpt_once:
                return self.rcpt_once.pop(address)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_RSET(self, server, session, envelope):  # type: ignore[no-untyped-def]
        with self._cond:
            self.rsets += 1
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        with self._cond:
            for address in envelope.rcpt_tos:
                if address in self.drop_at_data_once:
                    self.drop_at_data_once.discard(address)
                    self.dropped.append(address)
                    server.transport.abort()  # cut: the client gets no reply; the message is not kept
                    self._cond.notify_all()
                    return "421 dropped"
            queue_id = f"Q{len(self.messages) + 1:06d}"
            received = Received(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                list(envelope.mail_options),
                envelope.original_content,
                queue_id,
            )
            self.messages.append(received)
            if self.observe is not None:
                self.observed.append(self.observe(received))
            hold = self.hold_from is not None and len(self.messages) >= self.hold_from
            if hold:
                self.held += 1
            self._cond.notify_all()
        if hold:  # kept, but the client never hears it was: the message in flight when it is killed
            if self._release is None:
                self._release = asyncio.Event()
            await self._release.wait()
        return f"250 2.0.0 Ok: queued as {queue_id}"


def _count_sessions(server: SmtpServer) -> None:
    """Count connections opened and ended, from aiosmtpd's protocol callbacks."""
    from aiosmtpd.smtp import SMTP

    factory = server.controller.factory

    def counted() -> SMTP:
        with warnings.catch_warnings():  # AUTH without TLS: wanted here, on loopback
            warnings.simplefilter("ignore", UserWarning)
            protocol = factory()
        made, lost = protocol.connection_made, protocol.connection_lost

        def connection_made(transport):  # type: ignore[no-untyped-def]
            with server._cond:
                server.sessions += 1
                server._cond.notify_all()
            return made(transport)

        def connection_lost(exc):  # type: ignore[no-untyped-def]
            with server._cond:
                server.closed += 1
                server._cond.notify_all()
            return lost(exc)

        protocol.connection_made = connection_made  # type: ignore[method-assign]
        protocol.connection_lost = connection_lost  # type: ignore[method-assign]
        return protocol

    server.controller.factory = counted  # type: ignore[method-assign]


@pytest.fixture
def smtp_server() -> Iterator[Callable[..., SmtpServer]]:
    """A factory of started servers; every one is stopped at the end of the test."""
    started: list[SmtpServer] = []

    def start(**kwargs: object) -> SmtpServer:
        server = SmtpServer(**kwargs)  # type: ignore[arg-type]
        _count_sessions(server)
        started.append(server.start())
        # the Controller's own trigger connection at start is not one of the test's sessions
        server.wait_for(lambda: server.sessions >= 1 and server.closed == server.sessions, "the trigger session")
        with server._cond:
            server.sessions = server.closed = 0
        return server

    yield start
    for server in started:
        server.stop()


# -- TLS: a self-signed certificate for 127.0.0.1 and localhost, made at test time -------------


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


def make_certificate(directory: Path, name: str = "mailroom test SMTP") -> Certificate:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return Certificate(cert_path, key_path)


@pytest.fixture
def certificate(tmp_path: Path) -> Certificate:
    return make_certificate(tmp_path / "tls")
