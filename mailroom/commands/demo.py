"""`mailroom demo`: the whole job in one command, on a throwaway database, with no AWS account.

What it does, in order (each step is narrated on stdout in lines starting with `[demo]`;
everything else on stdout is what the sender prints in debug mode, passed on one whole
bulk send at a time, so that narration never lands inside an email):

1. a database: an embedded throwaway PostgreSQL (`mailroom.commands.embedded`, the `pgserver`
   package) unless MAILROOM_DATABASE_URL is set, in which case that database is used as it
   is (migrated, then used under a queue name of the demo's own, dropped at the end);
2. the migrations;
3. `collector | sender` under the `mailroom run` supervisor, in debug mode (the sender
   prints each email instead of calling SES), with a freshly generated signing key, a
   300 ms batch timeout and its output directory in a temporary folder;
4. the app's side, from a connection of its own: creates three accounts (the activation
   emails follow), activates one the way an app does (the signed token from the email,
   verified with the key, consumed with `mailroom_consume_token`), requests a password
   recovery for it, and verifies and consumes that token with its code;
5. stops everything it started, also on an error, Ctrl-C or SIGTERM: the pipeline
   (SIGTERM, then SIGKILL of its whole process group if it hangs) and the embedded server.
   If the demo is killed outright (SIGKILL), the pipeline still gets SIGTERM (parent-death
   signal, Linux) and the embedded server's watchdog stops it (see `mailroom.commands.embedded`).

Exit status: 0 when all of it worked, 1 on a failure (said on stderr), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, LiteralString

import psycopg

from mailroom import migrate, settings
from mailroom.commands import embedded
from mailroom.db import connect, describe
from mailroom.debug_output import END_RULE, RULE
from mailroom.signing import InvalidToken
from mailroom.verify import verify_link_token

DEMO_VARIABLES = ("MAILROOM_DATABASE_URL", "MAILROOM_SCHEMA", "MAILROOM_LOG_LEVEL")
BATCH_TIMEOUT_MS = 300
EMAIL_WAIT_S = 30.0
STOP_GRACE_S = 15.0
PEOPLE = (("alice", "Alice"), ("bob", "Bob"), ("carol", "Carol"))

_BULK = re.compile(r"^bulk send: \d+ (activation|password_recovery) emails? ")
_TO = re.compile(r"^\s+\[\d+/\d+\] to (\S+)\s*$")
_DATA = re.compile(r"^\s+data:\s+(\{.*\})\s*$")


class DemoError(Exception):
    """A step of the demo failed; the message says which and why."""


class _Interrupted(BaseException):
    """SIGTERM, handled like Ctrl-C: clean up, exit 130."""


class Screen:
    """stdout shared by the narration (main thread) and the sender's output (reader thread)."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.lock = threading.Lock()

    def say(self, text: str) -> None:
        with self.lock:
            for line in text.split("\n"):
                self.out.write(f"[demo] {line}\n")
            self.out.flush()

    def passthrough(self, text: str) -> None:
        with self.lock:
            self.out.write(text)
            self.out.flush()


@dataclass
class Inbox:
    """The emails the sender printed, by (action, recipient), parsed from its debug output."""

    emails: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    cond: threading.Condition = field(default_factory=threading.Condition)
    closed: bool = False
    _action: str | None = None
    _to: str | None = None

    def feed(self, line: str) -> None:
        if m := _BULK.match(line):
            self._action, self._to = m.group(1), None
        elif m := _TO.match(line):
            self._to = m.group(1)
        elif (m := _DATA.match(line)) and self._action and self._to:
            with self.cond:
                self.emails.setdefault((self._action, self._to), []).append(json.loads(m.group(1)))
                self.cond.notify_all()
            self._to = None

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def wait_for(self, action: str, recipients: list[str], timeout: float) -> dict[str, dict[str, Any]]:
        """The first email of `action` to each recipient; DemoError if they do not all come in time."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                missing = [r for r in recipients if (action, r) not in self.emails]
                if not missing:
                    return {r: self.emails[(action, r)][0] for r in recipients}
                left = deadline - time.monotonic()
                if self.closed or left <= 0:
                    why = "the pipeline stopped" if self.closed else f"none came within {timeout:.0f} s"
                    raise DemoError(
                        f"no {action} email for {', '.join(missing)}: {why} "
                        "(the collector's and sender's logs are on stderr)"
                    )
                self.cond.wait(min(left, 0.5))


class SenderOutput:
    """The sender's stdout, passed on to the screen one whole bulk send (RULE ... END_RULE,
    see sender/debug.py) at a time, and only then to the inbox.

    The demo's narration is written between two of these whole writes, never inside one,
    and narration that waits for an email (`Inbox.wait_for`) comes after it is printed.
    """

    def __init__(self, screen: Screen, inbox: Inbox) -> None:
        self.screen = screen
        self.inbox = inbox
        self._block: list[str] = []

    def feed(self, line: str) -> None:
        mark = line.rstrip("\r\n")
        if mark == RULE and self._block:  # a block that never ended (cannot happen): pass it on
            self._flush()
        if self._block or mark == RULE:
            self._block.append(line)
            if mark == END_RULE:
                self._flush()
        else:
            self._pass([line])

    def close(self) -> None:
        """End of the sender's output: pass on what is left of a block cut short."""
        self._flush()

    def _flush(self) -> None:
        block, self._block = self._block, []
        if block:
            self._pass(block)

    def _pass(self, lines: list[str]) -> None:
        self.screen.passthrough("".join(lines))
        for line in lines:
            self.inbox.feed(line)


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the demo dies without cleaning up (Linux; a no-op elsewhere)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Pipeline:
    """`mailroom run` (the supervisor of `collector | sender`) as a child of the demo.

    It gets a session of its own, so that a Ctrl-C in the terminal reaches only the demo,
    which then stops it in order (SIGTERM: collector first, the sender finishes its input).
    """

    def __init__(self, env: Mapping[str, str], cwd: Path, screen: Screen, inbox: Inbox) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mailroom", "run", "--grace", "10"],
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 (one prctl call; no lock taken)
        )
        self.pid = self.proc.pid
        self._reader = threading.Thread(target=self._read, args=(screen, inbox), name="sender-stdout", daemon=True)
        self._reader.start()

    def _read(self, screen: Screen, inbox: Inbox) -> None:
        assert self.proc.stdout is not None
        output = SenderOutput(screen, inbox)
        try:
            for line in self.proc.stdout:
                output.feed(line)
            output.close()
        finally:
            inbox.close()

    def stop(self) -> int:
        """SIGTERM and wait; SIGKILL the whole group if it hangs. Returns `mailroom run`'s status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(STOP_GRACE_S)
        # Whatever is left in the group (a child that outlived the supervisor) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self.proc.wait()
        self._reader.join(5)
        return self.proc.returncode


@contextlib.contextmanager
def _database(environ: Mapping[str, str], screen: Screen, workdir: Path) -> Iterator[tuple[str, bool]]:
    """(conninfo, is_embedded): the configured database as it is, or a throwaway embedded one."""
    url = environ.get("MAILROOM_DATABASE_URL")
    if url:
        screen.say(
            f"MAILROOM_DATABASE_URL is set: using that database as it is ({describe(url)}),\n"
            "under a queue of the demo's own that is dropped at the end"
        )
        yield url, False
        return
    screen.say("MAILROOM_DATABASE_URL is not set: starting an embedded throwaway PostgreSQL (pgserver)")
    try:
        with embedded.embedded_postgres(also_delete=[workdir]) as server:
            screen.say(f"PostgreSQL is up (pid {server.pid}, data in {server.datadir}, Unix socket only)")
            yield server.url, True
        screen.say("embedded PostgreSQL stopped and its data directory deleted")
    except embedded.EmbeddedUnavailable as exc:
        raise DemoError(str(exc)) from None


@contextlib.contextmanager
def _signals_as_interrupt() -> Iterator[None]:
    """Ctrl-C (SIGINT) and SIGTERM interrupt the demo, which then cleans up.

    SIGINT's handler is installed explicitly, as `mailroom run` does: a shell starts a
    background job (`make demo &`) with SIGINT ignored, and Python keeps an ignored SIGINT
    ignored, so without this Ctrl-C would not reach the demo at all.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_interrupt(signum: int, frame: object) -> None:
        raise _Interrupted()

    previous = {
        signal.SIGTERM: signal.signal(signal.SIGTERM, raise_interrupt),
        signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _child_env(url: str, key_hex: str, queue_name: str, workdir: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """The demo's settings for the pipeline, and none of the caller's MAILROOM_* or AWS_* ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAILROOM_", "AWS_"))}
    env.update(
        {
            "MAILROOM_DATABASE_URL": url,
            "MAILROOM_SECRET_KEY": key_hex,
            "MAILROOM_QUEUE_NAME": queue_name,
            "MAILROOM_CHANNEL_NAME": queue_name,
            "MAILROOM_BATCH_TIMEOUT": str(BATCH_TIMEOUT_MS),
            "MAILROOM_DEBUG": "true",
            "MAILROOM_SES_OUTPUT_PATH": str(workdir / "output"),
            "MAILROOM_LOG_LEVEL": environ.get("MAILROOM_LOG_LEVEL", "warning"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _value(conn: psycopg.Connection, query: LiteralString, params: list[Any]) -> Any:
    """The one value of a query that returns one row (a function call, a lookup by id)."""
    row = conn.execute(query, params).fetchone()
    if row is None:
        raise DemoError(f"no row from {query}")
    return row[0]


def _app_side(conn: psycopg.Connection, inbox: Inbox, key: bytes, screen: Screen, tag: str) -> None:
    """What an app does: create accounts, activate one from its email, recover its password."""
    people = [(f"{login}{tag}@example.com", f"{login}{tag}", name) for login, name in PEOPLE]
    screen.say(
        "the app creates 3 accounts from its own connection (the activation emails follow):\n"
        "  INSERT INTO accounts (email, login) VALUES (%s, %s), (%s, %s), (%s, %s) RETURNING id"
    )
    ids = {
        email: row[0]
        for (email, _, _), row in zip(
            people,
            conn.execute(
                "INSERT INTO accounts (email, login) VALUES (%s, %s), (%s, %s), (%s, %s) RETURNING id",
                [v for email, login, _ in people for v in (email, login)],
            ).fetchall(),
            strict=True,
        )
    }
    recipients = [email for email, _, _ in people]
    activations = inbox.wait_for("activation", recipients, EMAIL_WAIT_S)

    alice = recipients[0]
    token = activations[alice]["secret"]
    screen.say(
        f"{people[0][2]} opens the activation link. The app checks the token's signature with the key\n"
        "  (mailroom.verify.verify_link_token, or `mailroom verify --action activation -- TOKEN`)\n"
        "and consumes it in the database:  SELECT mailroom_consume_token(secret, NULL)"
    )
    secret = verify_link_token(key, token, "activation")
    account = _value(conn, "SELECT mailroom_consume_token(%s, NULL)", [secret])
    if account != ids[alice]:
        raise DemoError(f"consuming {alice}'s activation token returned {account!r}, expected {ids[alice]}")
    status = _value(conn, "SELECT status FROM accounts WHERE id = %s", [account])
    screen.say(f"  -> account {account}; its status is now {status!r}")
    again = _value(conn, "SELECT mailroom_consume_token(%s, NULL)", [secret])
    screen.say(
        f"the same link opened a second time: mailroom_consume_token -> {'NULL' if again is None else again} (a token works once)"
    )
    if again is not None:
        raise DemoError("an activation token was consumed twice")

    screen.say(
        f"{people[0][2]} forgot her password; the app requests a recovery:\n"
        f"  SELECT mailroom.request('password_recovery', {account})"
    )
    conn.execute("SELECT request('password_recovery', %s)", [account])
    recovery = inbox.wait_for("password_recovery", [alice], EMAIL_WAIT_S)[alice]

    token, code = recovery["secret"], recovery["code"]
    wrong = f"{(int(code) + 1) % 100000:05d}"
    try:
        verify_link_token(key, token, "password_recovery", wrong)
        raise DemoError("a recovery token verified with a wrong code")
    except InvalidToken as exc:
        screen.say(f"the recovery link with a wrong code ({wrong}) is refused: {exc}")
    secret = verify_link_token(key, token, "password_recovery", code)
    account = _value(conn, "SELECT mailroom_consume_token(%s, %s)", [secret, code])
    if account != ids[alice]:
        raise DemoError(f"consuming the recovery token returned {account!r}, expected {ids[alice]}")
    screen.say(
        f"with the code from the email ({code}) it verifies, and mailroom_consume_token(secret, code)\n"
        f"  -> account {account}: the app now lets her choose a new password"
    )


def run(environ: Mapping[str, str], out: IO[str] = sys.stdout) -> int:
    started = time.monotonic()
    screen = Screen(out)
    key_hex = secrets.token_hex(32)
    run_id = secrets.token_hex(3)
    queue_name = f"mailroom_demo_{run_id}"
    schema = settings.read(environ, "MAILROOM_SCHEMA")["MAILROOM_SCHEMA"]
    pipeline: Pipeline | None = None
    try:
        with (
            _signals_as_interrupt(),
            tempfile.TemporaryDirectory(prefix="mailroom-demo-") as tmp,
            _database(environ, screen, Path(tmp)) as (url, is_embedded),
        ):
            workdir = Path(tmp)
            applied = migrate.apply(url, schema).applied
            screen.say("migrations applied: " + (", ".join(applied) or "none needed (the schema is up to date)"))
            with connect(url, application_name="mailroom demo (the app)", schema=schema) as conn:
                # The demo's queue starts empty, so a shared database's pending tokens are not printed.
                with conn.transaction():
                    conn.execute("SELECT mailroom_register_queue(%s, %s)", [queue_name, queue_name])
                    conn.execute("DELETE FROM job_tokens WHERE job = %s", [queue_name])
                try:
                    inbox = Inbox()
                    screen.say(
                        "starting `collector | sender` (mailroom run) in debug mode: MAILROOM_DEBUG=true,\n"
                        f"MAILROOM_BATCH_TIMEOUT={BATCH_TIMEOUT_MS}, a freshly generated MAILROOM_SECRET_KEY "
                        f"(not shown),\nMAILROOM_QUEUE_NAME={queue_name}, "
                        f"MAILROOM_SES_OUTPUT_PATH={workdir / 'output'}"
                    )
                    env = _child_env(url, key_hex, queue_name, workdir, environ) | {"MAILROOM_SCHEMA": schema}
                    pipeline = Pipeline(env, workdir, screen, inbox)
                    _app_side(conn, inbox, bytes.fromhex(key_hex), screen, "" if is_embedded else f"+{run_id}")
                    screen.say(
                        "stopping the pipeline with SIGTERM (the collector first, then the sender finishes its input)"
                    )
                    status, pipeline = pipeline.stop(), None
                    if status != 0:
                        raise DemoError(f"`mailroom run` exited with status {status} when stopped")
                    screen.say("collector and sender exited 0")
                finally:
                    if pipeline is not None:
                        pipeline.stop()
                        pipeline = None
                    if not is_embedded:
                        conn.execute("SELECT mailroom_drop_queue(%s)", [queue_name])
        screen.say(f"done in {time.monotonic() - started:.1f} s; nothing the demo started is still running")
        return 0
    except (KeyboardInterrupt, _Interrupted):
        print("mailroom demo: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    except (DemoError, InvalidToken) as exc:
        print(f"mailroom demo: failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if pipeline is not None:  # an exception outside the inner block
            pipeline.stop()


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """No options: the demo is the same every time. The help says what it reads instead."""
    parser.description = (
        "Run the whole job once, with no AWS account: a database, the migrations, `collector | sender` "
        "in debug mode with a fresh key, three accounts created by an app, one activated and one "
        "password recovery; the emails are printed on stdout. Then everything it started is stopped."
    )
    parser.epilog = (
        "environment variables (also read from ./.env; the environment wins):\n"
        "  MAILROOM_DATABASE_URL  [default: none: an embedded throwaway PostgreSQL (pgserver)]\n"
        "      When set, that database is used as it is (migrated; the demo's queue is dropped after).\n"
        "  MAILROOM_LOG_LEVEL  [default: warning, for the collector and sender]\n"
        "      Log level of the pipeline's processes (their logs go to stderr).\n"
        "No other MAILROOM_* or AWS_* variable reaches the pipeline."
    )


def cli_main(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    return run(environ)
