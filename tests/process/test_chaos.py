"""Chaos: the real pipeline loses no token while its processes are killed and its
database connection is cut.

`mailroom run` (collector | sender, supervised) runs against `moto_server`, restarted like
an orchestrator would (systemd `Restart=always`, a Kubernetes container) whenever it exits,
always with the same environment and the same MAILROOM_SES_OUTPUT_PATH, so the sender's
journal carries over. Four writers insert ACCOUNTS accounts (one in ACTIVE_EVERY created
'active', with a password-recovery token instead of an activation token) while the test
SIGKILLs the collector three times, SIGKILLs the sender three times and terminates the
collector's backend twice, in a seeded random order (CHAOS_SEED to replay one).

`mailroom run` reacts as in production: the collector died -> the sender reads the pipe
to its end, finishes and exits, then `mailroom run` exits non-zero; the sender died -> the
collector is stopped with SIGTERM. The test restarts it each time. (The sender is not
SIGTERMed when the collector dies: it would stop reading and drop with the pipe lines the
collector had committed; reading to end of input is what `mailroom run` does.)

The second test pins the hand-off that makes a sender SIGKILL safe: a line the sender has
not journaled yet is still in the pipe, and the collector has not committed its chunk.

Afterwards every token in the database must have reached SES (moto's record of what it
accepted), with the right recipient, action and signed secret: zero lost. Duplicates are
printed and bounded (see DUPLICATE_BOUND).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from conftest import FAKE_AWS_ENV, TEST_KEY_HEX, pg_connect, prepare_moto_ses, script

from mailroom.actions import ACTIVATION, PASSWORD_RECOVERY
from mailroom.signing import sign

ACCOUNTS = 10_000
WRITERS = 4
ACTIVE_EVERY = 4  # every 4th account is created active and gets a password recovery
WRITE_RATE = 300  # accounts/s over all writers: writing lasts ~35 s, so faults land during it
COLLECTOR_KILLS = 3
SENDER_KILLS = 3
BACKEND_TERMINATIONS = 2
SES_CONCURRENCY = 4  # MAILROOM_SES_CONCURRENCY
SES_DESTINATIONS_PER_CALL = 50
# Why duplicates are bounded: the sender journals a delivery (its secret's hash) only after
# SES answered. A SIGKILL can therefore only lose the completions of the calls in flight at
# that moment: at most concurrency x 50 destinations, sent again by the next sender. Every
# other repeat (the collector re-emitting a chunk after a crash between write and commit,
# after its backend was terminated, or after the sender died holding its line journaled
# but still in the pipe) is absorbed by the journal as a "Duplicate" row, never sent.
DUPLICATE_BOUND = SENDER_KILLS * SES_CONCURRENCY * SES_DESTINATIONS_PER_CALL
SOURCE = "noreply@example.com"
COLLECTOR_APP = "mailroom-collector"
DEADLINE_S = 240.0


def _children(pid: int) -> dict[str, int]:
    """{program name: pid} of the direct children of `pid` (Linux /proc)."""
    found: dict[str, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) != pid:
                continue
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        for arg in argv[:2]:
            name = os.path.basename(arg.decode(errors="replace"))
            if name in ("collector", "sender"):
                found[name] = int(entry)
    return found


class Orchestrator:
    """Keeps one `mailroom run` going: restarts it whenever it exits, same env, same output dir."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env = env
        self.workdir = workdir
        self.log_path = workdir / "pipeline.log"
        self.exits: list[int] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch, daemon=True)

    def _spawn(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [script("mailroom"), "run"],
                env=self.env,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )

    def start(self) -> None:
        self._spawn()
        self._watcher.start()

    def _watch(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                assert self.proc is not None
                if self.proc.poll() is not None and not self._stopping.is_set():
                    self.exits.append(self.proc.returncode)
                    self._spawn()
            time.sleep(0.02)

    def child(self, name: str) -> int | None:
        with self._lock:
            assert self.proc is not None
            return _children(self.proc.pid).get(name) if self.proc.poll() is None else None

    def stop(self, timeout: float = 90) -> int:
        """SIGTERM `mailroom run`: it stops the collector and lets the sender finish its input."""
        self._stopping.set()
        self._watcher.join(5)
        assert self.proc is not None
        # `mailroom run` installs its SIGTERM handler before it starts the children
        deadline = time.monotonic() + 30
        while len(_children(self.proc.pid)) < 2 and self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill_everything(self) -> None:
        """Cleanup whatever state the test ended in: no process is left behind."""
        self._stopping.set()
        self._watcher.join(5)
        if self.proc is not None and self.proc.poll() is None:
            for pid in _children(self.proc.pid).values():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()

    def log(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-20000:]


def _wait(condition: Callable[[], bool], what: str, orch: Orchestrator, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{orch.log()}")
        time.sleep(0.02)


def _collector_backends(db: psycopg.Connection) -> list[int]:
    return [
        r[0]
        for r in db.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s "
            "AND pid <> pg_backend_pid()",
            [COLLECTOR_APP],
        ).fetchall()
    ]


class Writers:
    """WRITERS threads, each on its own connection, inserting at WRITE_RATE in small transactions."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.written = 0
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(w,), daemon=True) for w in range(WRITERS)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self, timeout: float) -> None:
        for t in self.threads:
            t.join(timeout)
        assert not any(t.is_alive() for t in self.threads), "writers did not finish"
        assert not self.errors, self.errors

    def _run(self, w: int) -> None:
        try:
            mine = list(range(w, ACCOUNTS, WRITERS))
            per_second = WRITE_RATE / WRITERS
            started = time.monotonic()
            with pg_connect(self.database_url) as conn:
                i, k = 0, 0
                while i < len(mine):
                    n = 1 + k % 8  # transactions of 1 to 8 accounts, one multi-row statement each
                    batch = mine[i : i + n]
                    emails = [f"c{j}@example.com" for j in batch]
                    logins = [f"c{j}" for j in batch]
                    status = ["active" if j % ACTIVE_EVERY == 0 else "provisioned" for j in batch]
                    with conn.transaction():
                        rows = conn.execute(
                            "INSERT INTO accounts (email, login, status) SELECT * FROM "
                            "unnest(%s::text[], %s::text[], %s::account_status[]) RETURNING id, status",
                            [emails, logins, status],
                        ).fetchall()
                        active = [r[0] for r in rows if r[1] == "active"]
                        if active and k % 2 == 0:  # the recovery in the same transaction
                            conn.execute(
                                "INSERT INTO tokens (account, action) SELECT unnest(%s::bigint[]), 'password_recovery'",
                                [active],
                            )
                    if active and k % 2 == 1:  # ... or in a transaction of its own, one by one
                        with conn.transaction():
                            for account in active:
                                conn.execute(
                                    "INSERT INTO tokens (account, action) VALUES (%s, 'password_recovery')", [account]
                                )
                    i += n
                    k += 1
                    with self._lock:
                        self.written += n
                    ahead = started + i / per_second - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)  # pacing, so that the faults fall while writing
        except BaseException as exc:  # surfaced by join()
            self.errors.append(exc)


def _moto_destinations(url: str) -> list[tuple[str, str, str]]:
    """(template, recipient, signed secret) of every destination moto_server accepted."""
    with urllib.request.urlopen(url + "/moto-api/data.json", timeout=60) as response:
        data = json.load(response)
    found = []
    for message in data.get("ses", {}).get("TemplateMessage", []):
        for dest in message["destinations"]:
            secret = json.loads(dest["ReplacementTemplateData"])["secret"]
            for to in dest["Destination"]["ToAddresses"]:
                found.append((message["template"], to, secret))
    return found


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


@pytest.mark.slow
def _pipeline_env(base_env: dict[str, str], database_url: str, moto_server: str, output: Path) -> dict[str, str]:
    return {
        **base_env,
        **FAKE_AWS_ENV,
        "AWS_ENDPOINT_URL_SES": moto_server,
        "MAILROOM_DATABASE_URL": database_url,
        "MAILROOM_SECRET_KEY": TEST_KEY_HEX,
        "MAILROOM_BATCH_TIMEOUT": "200",
        "MAILROOM_BATCH_LIMIT": "10",
        "MAILROOM_DEBUG": "false",
        "MAILROOM_SES_SOURCE": SOURCE,
        "MAILROOM_SES_OUTPUT_PATH": str(output),
        "MAILROOM_SES_CONCURRENCY": str(SES_CONCURRENCY),
        "MAILROOM_SES_MAX_SEND_RATE": "2000",
        "MAILROOM_LOG_LEVEL": "info",
    }


def test_no_token_is_lost_while_collector_and_sender_are_killed_and_the_connection_cut(
    database_url: str, db: psycopg.Connection, base_env: dict[str, str], tmp_path: Path, moto_server: str
) -> None:
    seed = int(os.environ.get("CHAOS_SEED", random.SystemRandom().randrange(1 << 30)))
    rng = random.Random(seed)
    output = tmp_path / "output"
    env = _pipeline_env(base_env, database_url, moto_server, output)
    ses = prepare_moto_ses(env, moto_server, tmp_path, SOURCE)

    faults = (
        ["kill collector"] * COLLECTOR_KILLS
        + ["kill sender"] * SENDER_KILLS
        + ["terminate backend"] * BACKEND_TERMINATIONS
    )
    rng.shuffle(faults)
    done: list[tuple[float, str, int]] = []  # (seconds since start, fault, accounts written by then)
    started = time.monotonic()
    orch = Orchestrator(env, tmp_path)
    writers = Writers(database_url)

    def healthy() -> bool:
        return bool(orch.child("sender") and orch.child("collector") and _collector_backends(db))

    try:
        orch.start()
        _wait(healthy, "the first pipeline to connect", orch)
        writers.start()
        for n, fault in enumerate(faults):
            # spread the faults over the writing, at a random moment within each slice
            target = ACCOUNTS * (n + rng.uniform(0.3, 1.0)) / len(faults)
            _wait(
                lambda target=target: (
                    writers.written >= min(target, ACCOUNTS) or not any(t.is_alive() for t in writers.threads)
                ),
                "the writers' progress",
                orch,
                timeout=120,
            )
            _wait(healthy, f"the pipeline to be up before fault {n + 1} ({fault})", orch)
            exits_before = len(orch.exits)
            if fault == "terminate backend":
                terminated = db.execute(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND application_name = %s AND pid <> pg_backend_pid()",
                    [COLLECTOR_APP],
                ).fetchone()[0]
                assert terminated >= 1, "no collector backend to terminate"
                _wait(lambda: bool(_collector_backends(db)), "the collector to reconnect", orch)
            else:
                pid = orch.child(fault.split()[1])
                assert pid is not None
                os.kill(pid, signal.SIGKILL)
                _wait(lambda n=exits_before: len(orch.exits) > n, f"`mailroom run` to exit after {fault}", orch)
            done.append((time.monotonic() - started, fault, writers.written))
        writers.join(DEADLINE_S)
        written_at = time.monotonic() - started

        # Drain: the queue empty means every token's line was committed, which the collector
        # does only once the sender has journaled it and taken it out of the pipe; then
        # SIGTERM: the collector stops and the sender finishes what it has.
        _wait(
            lambda: db.execute("SELECT count(*) FROM job_tokens").fetchone()[0] == 0,
            "the collector to drain the queue",
            orch,
            timeout=DEADLINE_S,
        )
        _wait(healthy, "the pipeline to be up before stopping it", orch)  # its signal handlers installed
        status = orch.stop()
        assert status == 0, f"`mailroom run` exited {status} on SIGTERM\n{orch.log()}"
    finally:
        orch.kill_everything()
    elapsed = time.monotonic() - started

    # Every run but the last ended because of one of our kills, and only those.
    kills = COLLECTOR_KILLS + SENDER_KILLS
    assert len(orch.exits) == kills and all(code != 0 for code in orch.exits), (orch.exits, orch.log())

    key = bytes.fromhex(TEST_KEY_HEX)
    templates = {"activation": "activationv1", "password_recovery": "passwordrecoveryv1"}
    expected = {}
    for action, secret, code, email in db.execute(
        "SELECT t.action::text, t.secret, t.code, a.email FROM tokens t JOIN accounts a ON a.id = t.account"
    ):
        signed = sign(key, ACTIVATION if action == "activation" else PASSWORD_RECOVERY, bytes(secret), code)
        expected[(templates[action], email, signed)] = action
    recovery_count = sum(1 for a in expected.values() if a == "password_recovery")
    # an account created active has no activation token, only its recovery token
    assert recovery_count == len(range(0, ACCOUNTS, ACTIVE_EVERY)) and len(expected) == ACCOUNTS

    received = Counter(_moto_destinations(moto_server))
    lost = sorted(set(expected) - set(received))
    unexpected = sorted(set(received) - set(expected))
    duplicates = sum(n - 1 for n in received.values())
    deliveries = _jsonl(output / "deliveries.jsonl")
    absorbed = sum(1 for r in deliveries if r["status"] == "Duplicate")
    rejects = _jsonl(output / "rejects.jsonl")
    summary = (
        f"chaos (seed {seed}): {len(expected)} tokens ({ACCOUNTS - recovery_count} activation, {recovery_count} recovery), "
        f"{sum(received.values())} destinations received by SES, {len(lost)} lost, {duplicates} duplicate(s) "
        f"(bound {DUPLICATE_BOUND}), {absorbed} repeat(s) absorbed by the journal, {len(rejects)} rejected; "
        f"writing took {written_at:.1f} s, all {elapsed:.1f} s; faults "
        + ", ".join(f"{f} at {t:.1f}s/{w} accounts" for t, f, w in done)
    )
    print(summary)
    assert not lost, (
        f"{len(lost)} tokens never reached SES, e.g. {[(t, e) for t, e, _ in lost[:10]]}\n{summary}\n{orch.log()}"
    )
    assert not unexpected, unexpected[:10]
    assert duplicates <= DUPLICATE_BOUND, summary
    assert rejects == [], rejects[:5]
    assert ses.get_send_quota()["SentLast24Hours"] == sum(received.values())
    # deliveries.jsonl agrees: each token has a Success row (one more per duplicate).
    successes = Counter((r["action"], r["recipient"]) for r in deliveries if r["status"] == "Success")
    assert set(successes) == {(action, email) for (_, email, _), action in expected.items()}
    assert sum(successes.values()) >= len(expected)


def test_lines_waiting_in_the_pipe_survive_a_sender_sigkill(
    database_url: str, db: psycopg.Connection, base_env: dict[str, str], tmp_path: Path, moto_server: str
) -> None:
    """The sender is frozen (SIGSTOP) while tokens arrive, then SIGKILLed: whatever the
    collector wrote into the pipe meanwhile dies with the pipe. The collector must not have
    committed those chunks (it commits a line only once the sender took it out of the
    pipe, which the sender does only after journaling it), so the restarted pair sends
    every one of them."""
    env = _pipeline_env(base_env, database_url, moto_server, tmp_path / "output")
    prepare_moto_ses(env, moto_server, tmp_path, SOURCE)
    orch = Orchestrator(env, tmp_path)
    count = 200  # 20 lines of 10: about 26 KB, well within a pipe's 64 KiB
    try:
        orch.start()
        _wait(lambda: bool(orch.child("sender") and _collector_backends(db)), "the pipeline to connect", orch)
        sender = orch.child("sender")
        assert sender is not None
        os.kill(sender, signal.SIGSTOP)
        db.execute(
            "INSERT INTO accounts (email, login) SELECT 'p' || i || '@example.com', 'p' || i "
            "FROM generate_series(1, %s) i",
            [count],
        )
        # Either the collector committed everything it wrote into the pipe (the queue is
        # empty), or it holds its chunk open until the sender reads it (idle in transaction).
        _wait(
            lambda: db.execute(
                "SELECT (SELECT count(*) FROM job_tokens) = 0 OR EXISTS (SELECT FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = %s "
                "AND state = 'idle in transaction' AND now() - state_change > interval '1 second')",
                [COLLECTOR_APP],
            ).fetchone()[0],
            "the collector to write into the pipe",
            orch,
            timeout=30,
        )
        os.kill(sender, signal.SIGKILL)
        _wait(lambda: len(orch.exits) == 1, "`mailroom run` to exit", orch)
        _wait(
            lambda: db.execute("SELECT count(*) FROM job_tokens").fetchone()[0] == 0,
            "the restarted collector to drain the queue",
            orch,
        )
        _wait(lambda: bool(orch.child("sender") and _collector_backends(db)), "the pipeline to reconnect", orch)
        assert orch.stop() == 0, orch.log()
    finally:
        orch.kill_everything()
    received = Counter(to for _, to, _ in _moto_destinations(moto_server))
    missing = [f"p{i}@example.com" for i in range(1, count + 1) if not received[f"p{i}@example.com"]]
    assert not missing, f"{len(missing)} of {count} tokens lost with the pipe\n{orch.log()}"
