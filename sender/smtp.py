"""The SMTP provider: each email rendered locally and sent to one recipient per SMTP transaction.

The templates in `templates/` are rendered by the same renderer as debug mode and `mailroom
templates render`, from the same JSON data SES receives (template_data + default_template_data),
so an email reads the same whichever provider sent it.

Connections: one per worker thread (the dispatcher's MAILROOM_CONNECTIONS workers), opened on
first use, kept open across messages and calls, RSET before each message on a connection that was
used before (which also finds a connection the server closed while idle: that one is reopened
once, nothing having been sent on it), dropped after any failure and reopened by the next call,
closed by close() at exit.

Classification of every reply is in retry.py (smtp_outcome); this module only records at which
stage a reply (or the lack of one) came.

SMTPUTF8: the dispatcher asks address() at admission, before any message is sent. The server's
extensions are known once a connection said EHLO (preflight does, before stdin is read). A
non-ASCII local part is refused at admission when the server is known not to offer SMTPUTF8;
when nothing is known yet, it is admitted and refused at send time (for that recipient only) if
the server does not offer it. ASCII addresses never depend on it.
"""

from __future__ import annotations

import email.policy
import email.utils
import json
import logging
import smtplib
import ssl
import threading
from collections.abc import Mapping
from email.message import EmailMessage

from mailroom.actions import Action
from mailroom.checks import Check
from mailroom.settings import ConfigError, SmtpSettings
from mailroom.templates import EmailTemplate, template_data
from mailroom.wire import Record
from sender.addresses import ascii_address
from sender.provider import (
    PROBE_CODE,
    PROBE_LOGIN,
    PROBE_SECRET,
    BulkSend,
    Destination,
    DestinationResult,
    UnsendableAddress,
)
from sender.retry import (
    INTERNAL_FIX,
    SMTP_AUTH,
    SMTP_CONNECT,
    SMTP_DATA,
    SMTP_EHLO,
    SMTP_EXTENSION,
    SMTP_MAIL,
    SMTP_RCPT,
    SMTP_TLS,
    Outcome,
    smtp_fix,
    smtp_outcome,
    source_address,
)

log = logging.getLogger("sender.smtp")
NO_SMTPUTF8 = "the local part (before '@') is not 7-bit ASCII, and the SMTP server does not offer SMTPUTF8"


class _Broken(Exception):
    """An exception that is not a reply, in the middle of a transaction at `stage` (the cause)."""

    def __init__(self, stage: str) -> None:
        super().__init__(stage)
        self.stage = stage


class SmtpFault(Exception):
    """A reply (or no reply: code None) that ends the step in hand, and the stage it came at."""

    def __init__(self, stage: str, code: int | None, reply: str) -> None:
        super().__init__(f"{stage}: {code if code is not None else 'no reply'} {reply}".rstrip())
        self.stage = stage
        self.code = code
        self.reply = reply

    @property
    def outcome(self) -> Outcome:
        return smtp_outcome(self.stage, self.code, self.reply)

    @property
    def status(self) -> str:
        """A short status for deliveries/rejects: the stage and the code, e.g. `SMTP RCPT 550`."""
        return f"SMTP {self.stage.upper()} {self.code if self.code is not None else 'no-reply'}"


def _text(reply: bytes | str) -> str:
    return (reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply).replace("\n", " ").strip()


def tls_context(ca_file: object = None) -> ssl.SSLContext:
    """The system's trust store (and SSL_CERT_FILE), plus MAILROOM_SMTP_CA_FILE when set; hostnames checked."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    return context


class SmtpProvider:
    name = "smtp"
    # The dispatcher's unit of work: one message per call, MAILROOM_CONNECTIONS calls in flight,
    # so each message's result is journaled as soon as it is known and a kill re-sends at most the
    # message in flight on each connection (docs/explanation/delivery.md).
    max_destinations = 1

    def __init__(
        self,
        settings: SmtpSettings,
        source: str,
        templates: Mapping[str, EmailTemplate] | None,
        local_hostname: str | None = None,
    ) -> None:
        self.settings = settings
        self.source = source
        try:
            self.envelope_from = ascii_address(source_address(source), recipient=False)
        except UnsendableAddress as exc:
            raise ConfigError("MAILROOM_SOURCE", f"{source!r} cannot be an SMTP envelope sender: {exc}") from None
        self.domain = self.envelope_from.rpartition("@")[2]
        self.templates = templates
        self.local_hostname = local_hostname
        self.context = tls_context(settings.ca_file) if settings.tls != "none" else None
        self.smtputf8: bool | None = None  # unknown until a connection said EHLO
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: set[smtplib.SMTP] = set()

    @property
    def endpoint(self) -> str:
        """Where this provider sends, for log lines."""
        return f"{self.settings.host}:{self.settings.port}"

    # -- the Provider interface ----------------------------------------------------------------
    def address(self, email: str) -> str:
        """IDN domain in Punycode; a non-ASCII local part only if the server can take it (see above)."""
        local = email.rpartition("@")[0]
        if not local.isascii() and self.smtputf8 is False:
            raise UnsendableAddress(NO_SMTPUTF8)
        return ascii_address(email, utf8_local_part=True)

    def preflight(self) -> list[Check]:
        """Connect, EHLO, STARTTLS (per MAILROOM_SMTP_TLS) and AUTH (when a username is set), then QUIT."""
        s = self.settings
        where = f"{s.host}:{s.port}"
        checks: list[Check] = []
        if self.templates is None:  # when they load, the templates' own checks say so (template_checks)
            checks.append(
                Check(
                    "templates",
                    False,
                    "templates/ not found or invalid",
                    "reinstall mailroom or restore templates/ (mailroom templates render shows them)",
                )
            )
        try:
            conn = self._connect()
        except SmtpFault as fault:
            if fault.stage == SMTP_CONNECT and "connection refused" in fault.reply.lower():
                # at a check, a refused connection means no server there: the thing to fix
                shown = f"[{s.host}]:{s.port}" if ":" in s.host else where
                checks.append(
                    Check(
                        "SMTP connect",
                        False,
                        f"nothing is listening at {shown} (connection refused)",
                        "start the SMTP server there, or set MAILROOM_SMTP_HOST and MAILROOM_SMTP_PORT to where it"
                        " listens",
                    )
                )
            else:
                checks.append(Check(f"SMTP {fault.stage}", False, f"{where}: {fault}", self._fix(fault)))
            return checks
        try:
            tls = {"starttls": "STARTTLS", "tls": "implicit TLS", "none": "no TLS (plain text)"}[s.tls]
            checks.append(Check("SMTP connection", True, f"{where}, {tls}, EHLO answered"))
            if s.tls != "none":
                cipher = conn.sock.cipher() if isinstance(conn.sock, ssl.SSLSocket) else None
                checks.append(
                    Check("SMTP TLS", True, f"certificate valid for {s.host}" + (f", {cipher[1]}" if cipher else ""))
                )
            checks.append(
                Check(
                    "SMTP login", True, f"authenticated as {s.username}" if s.username else "no AUTH (no username set)"
                )
            )
            checks.append(
                Check(
                    "SMTP SMTPUTF8",
                    True,
                    "offered" if self.smtputf8 else "not offered: non-ASCII local parts are refused",
                )
            )
        finally:
            self._quit(conn)
        return checks

    def send_bulk(self, send: BulkSend) -> list[DestinationResult]:
        """One transaction per destination on this thread's connection; one result per destination.

        The dispatcher sends one destination per call (max_destinations), so each result is
        journaled as soon as the server answered. Nothing a destination holds can raise out of
        here: an exception costs that destination only (see _send_one)."""
        results: list[DestinationResult] = []
        template = send.local_template(self.templates)
        if template is None:
            fault = SmtpFault(SMTP_EXTENSION, None, f"has no template for {send.action.name} in templates/")
            return [self._failed(fault)] * len(send.destinations)
        defaults = json.loads(send.default_data)
        for i, dest in enumerate(send.destinations):
            result, stop = self._send_one(send.action, template, defaults, dest)
            results.append(result)
            if stop:
                # the connection is gone, or the fault is ours: the rest of this call waits for the
                # dispatcher's backoff (or stop) rather than hammering a server that just failed
                results.extend([result] * (len(send.destinations) - i - 1))
                break
        return results

    def _send_one(
        self, action: Action, template: EmailTemplate, defaults: Mapping[str, object], dest: Destination
    ) -> tuple[DestinationResult, bool]:
        """One destination's result, and whether the rest of the call must wait."""
        try:
            rcpt = self.address(dest.email)
        except UnsendableAddress as exc:
            return DestinationResult("UnsendableAddress", None, str(exc), Outcome.REFUSED), False
        utf8 = not rcpt.isascii()
        try:  # the whole message, before a byte of it goes to the server
            body = self.body(action, template, rcpt, {**defaults, **json.loads(dest.data)}, utf8)
        except Exception as exc:  # noqa: BLE001 - whatever the email package raises on this record
            return self._unbuildable(action, template, defaults, exc), False
        try:
            conn = self._ready_connection()
            if utf8 and not self.smtputf8:
                return DestinationResult("UnsendableAddress", None, NO_SMTPUTF8, Outcome.REFUSED), False
            return DestinationResult("Success", self._transaction(conn, rcpt, body, utf8)), False
        except SmtpFault as fault:
            result = self._failed(fault)
            gone = fault.stage not in (SMTP_RCPT, SMTP_DATA, SMTP_MAIL) or fault.code is None or fault.code == 421
            if gone:
                self._drop()  # the connection is gone or unusable: the next call opens a new one
            return result, gone or result.outcome is Outcome.OPERATOR
        except _Broken as broken:
            return self._broken(broken), broken.stage != SMTP_RCPT
        except Exception as exc:  # opening the connection failed in a way nobody foresaw
            log.exception("opening an SMTP connection to %s failed unexpectedly", self.endpoint)
            self._drop()
            return DestinationResult(
                "Internal", None, f"{type(exc).__name__}: {exc}", Outcome.OPERATOR, INTERNAL_FIX
            ), True

    def _unbuildable(
        self, action: Action, template: EmailTemplate, defaults: Mapping[str, object], exc: Exception
    ) -> DestinationResult:
        """This record's message cannot be built. It is refused (the record alone) when the same
        template builds a message to our own address with sample data; otherwise the template or
        the sender is at fault, and that is the operator's: nothing is written off."""
        error = f"{type(exc).__name__}: {exc}"
        try:
            probe = Record(action, self.envelope_from, PROBE_LOGIN, PROBE_SECRET, PROBE_CODE)
            self.body(action, template, self.envelope_from, {**defaults, **json.loads(template_data(probe))}, False)
        except Exception:  # the template or the sender, not this record
            log.exception("no %s message can be built, whatever the recipient", action.name)
            return DestinationResult(
                "Internal", None, f"no message can be built: {error}", Outcome.OPERATOR, INTERNAL_FIX
            )
        return DestinationResult(
            "UnbuildableMessage", None, f"no message can be built for this record: {error}", Outcome.REFUSED
        )

    def _broken(self, broken: _Broken) -> DestinationResult:
        """An exception that is neither a reply nor a network error, in the middle of a transaction.
        The connection is dropped (its state is unknown). Before DATA nothing went out: at RCPT TO the
        recipient is the only input, so that record is refused; at MAIL FROM it is ours. From DATA on
        the server may have taken the message: it is retried, as after a connection lost there (a
        duplicate is possible, a loss is not)."""
        self._drop()
        exc = broken.__cause__
        error = f"{type(exc).__name__}: {exc}"
        log.error("SMTP %s failed unexpectedly: %s", broken.stage.upper(), error, exc_info=exc)
        status = f"SMTP {broken.stage.upper()} error"
        if broken.stage == SMTP_RCPT:
            return DestinationResult(
                status, None, f"the sender failed on this address at RCPT TO: {error}", Outcome.REFUSED
            )
        if broken.stage == SMTP_DATA:
            return DestinationResult(status, None, error, Outcome.RETRY)
        return DestinationResult(status, None, error, Outcome.OPERATOR, INTERNAL_FIX)

    def close(self) -> None:
        """QUIT every connection still open (called once at exit)."""
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for conn in connections:
            self._quit(conn)

    # -- messages ------------------------------------------------------------------------------
    def body(self, action: Action, template: EmailTemplate, to: str, data: Mapping[str, object], utf8: bool) -> bytes:
        """The message as it goes after DATA."""
        message = self.message(action, template, to, data)
        return message.as_bytes(policy=email.policy.SMTPUTF8 if utf8 else email.policy.SMTP)

    def message(self, action: Action, template: EmailTemplate, to: str, data: Mapping[str, object]) -> EmailMessage:
        """multipart/alternative (text, HTML); EmailMessage encodes a non-ASCII subject per RFC 2047."""
        parts = template.render(data)
        message = EmailMessage()
        message["From"] = self.source
        message["To"] = to
        message["Subject"] = " ".join(parts["subject"].split())  # one line, whatever the data held
        message["Date"] = email.utils.formatdate(localtime=False, usegmt=True)
        message["Message-ID"] = email.utils.make_msgid(domain=self.domain)
        message.set_content(parts["text"])
        message.add_alternative(parts["html"], subtype="html")
        return message

    # -- connections ---------------------------------------------------------------------------
    def _connect(self) -> smtplib.SMTP:
        """A new connection, greeted, said EHLO, under TLS per the settings and logged in; or SmtpFault."""
        s = self.settings
        conn: smtplib.SMTP | None = None
        try:
            try:
                if s.tls == "tls":
                    conn = smtplib.SMTP_SSL(
                        s.host, s.port, self.local_hostname, timeout=s.timeout_s, context=self.context
                    )
                else:
                    conn = smtplib.SMTP(s.host, s.port, self.local_hostname, timeout=s.timeout_s)
            except smtplib.SMTPConnectError as exc:
                raise SmtpFault(SMTP_CONNECT, exc.smtp_code, _text(exc.smtp_error)) from None
            self._ehlo(conn)
            if s.tls == "starttls":
                if not conn.has_extn("starttls"):
                    raise SmtpFault(SMTP_EXTENSION, None, "does not offer STARTTLS (MAILROOM_SMTP_TLS=starttls)")
                try:
                    conn.starttls(context=self.context)
                except smtplib.SMTPResponseException as exc:
                    raise SmtpFault(SMTP_TLS, exc.smtp_code, _text(exc.smtp_error)) from None
                self._ehlo(conn)
            if s.username:
                self._login(conn)
            self.smtputf8 = conn.has_extn("smtputf8")
        except SmtpFault:
            self._quit(conn)
            raise
        except (ssl.SSLEOFError, smtplib.SMTPServerDisconnected, ConnectionError, TimeoutError) as exc:
            self._quit(conn)
            raise SmtpFault(SMTP_CONNECT, None, f"{type(exc).__name__}: {exc}") from None
        except ssl.SSLError as exc:  # certificate not trusted, wrong host name, not TLS at all
            self._quit(conn)
            detail = getattr(exc, "verify_message", None) or exc.reason or str(exc)
            raise SmtpFault(SMTP_TLS, None, f"{type(exc).__name__}: {detail}") from None
        except OSError as exc:  # refused, unreachable, name not resolved: the network, retried
            self._quit(conn)
            raise SmtpFault(SMTP_CONNECT, None, f"{type(exc).__name__}: {exc}") from None
        return conn

    @staticmethod
    def _ehlo(conn: smtplib.SMTP) -> None:
        code, reply = conn.ehlo()
        if code != 250:
            raise SmtpFault(SMTP_EHLO, code if code != -1 else None, _text(reply))

    def _login(self, conn: smtplib.SMTP) -> None:
        s = self.settings
        if not conn.has_extn("auth"):
            raise SmtpFault(SMTP_EXTENSION, None, "does not offer AUTH, but MAILROOM_SMTP_USERNAME is set")
        try:
            conn.login(s.username, s.password)
        except smtplib.SMTPResponseException as exc:  # 535 credentials, 454 temporary, 534 mechanism too weak
            raise SmtpFault(SMTP_AUTH, exc.smtp_code, _text(exc.smtp_error)) from None
        except (smtplib.SMTPServerDisconnected, OSError) as exc:  # no answer to AUTH: retried, at AUTH
            raise SmtpFault(SMTP_AUTH, None, f"{type(exc).__name__}: {exc}") from None
        except smtplib.SMTPException as exc:  # no mechanism in common
            raise SmtpFault(SMTP_EXTENSION, None, f"offers no AUTH mechanism smtplib has in common: {exc}") from None

    def _ready_connection(self) -> smtplib.SMTP:
        """This thread's connection, RSET if it carried a message before; reopened once if it was closed."""
        conn: smtplib.SMTP | None = getattr(self._local, "conn", None)
        if conn is not None:
            try:
                code, reply = conn.rset()
                if code == 250:
                    return conn
                log.info("SMTP connection answered RSET with %s %s; opening a new one", code, _text(reply))
            except (smtplib.SMTPServerDisconnected, OSError):
                pass  # closed by the server while idle: normal, and nothing was sent on it
            self._drop()
        conn = self._connect()
        self._local.conn = conn
        with self._lock:
            self._connections.add(conn)
        return conn

    def _transaction(self, conn: smtplib.SMTP, rcpt: str, body: bytes, utf8: bool) -> str:
        """MAIL, RCPT, DATA for one recipient; the server's reply to the message (its queue id)."""
        options: list[str] = []
        if utf8:
            options = ["SMTPUTF8", "BODY=8BITMIME"] if conn.has_extn("8bitmime") else ["SMTPUTF8"]
        stage = SMTP_MAIL
        try:
            code, reply = conn.mail(self.envelope_from, options)
            if code != 250:
                raise SmtpFault(stage, code, _text(reply))
            stage = SMTP_RCPT
            code, reply = conn.rcpt(rcpt)
            if code not in (250, 251):
                raise SmtpFault(stage, code, _text(reply))
            stage = SMTP_DATA
            try:
                code, reply = conn.data(body)
            except smtplib.SMTPDataError as exc:  # the DATA command itself was refused
                raise SmtpFault(stage, exc.smtp_code, _text(exc.smtp_error)) from None
            if smtp_outcome(stage, code, _text(reply)) is not Outcome.DELIVERED:
                raise SmtpFault(stage, code, _text(reply))
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            # dropped or timed out mid-transaction: retried. If it was after the message's final
            # dot, the server may have queued it: one of the documented duplicates.
            raise SmtpFault(stage, None, f"{type(exc).__name__}: {exc}") from None
        except SmtpFault:
            raise
        except Exception as exc:
            raise _Broken(stage) from exc
        return f"{code} {_text(reply)}"

    def _failed(self, fault: SmtpFault) -> DestinationResult:
        outcome = fault.outcome
        fix = self._fix(fault) if outcome is Outcome.OPERATOR else ""
        return DestinationResult(fault.status, None, f"{fault.code or ''} {fault.reply}".strip(), outcome, fix)

    def _fix(self, fault: SmtpFault) -> str:
        s = self.settings
        return smtp_fix(fault.stage, fault.code, fault.reply, host=s.host, port=s.port, source=self.envelope_from)

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._lock:
                self._connections.discard(conn)
            self._quit(conn)

    @staticmethod
    def _quit(conn: smtplib.SMTP | None) -> None:
        if conn is None:
            return
        try:
            conn.quit()
        except (smtplib.SMTPException, OSError):
            conn.close()
