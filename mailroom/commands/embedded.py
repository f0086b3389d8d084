"""A throwaway PostgreSQL for the demo (and the tests' last resort), from the `pgserver` package.

`pgserver` ships PostgreSQL binaries in a wheel, so nothing has to be installed or
configured: `initdb` into a fresh temporary directory, start the server on a Unix socket in
that directory (no TCP port to collide with), and on the way out stop it and delete the
directory. As root it runs the server as a `pgserver` system user it creates, since
PostgreSQL refuses to run as root.

`pg_ctl` detaches the server from our process, so nothing stops it for us: callers use
`embedded_postgres()` as a context manager and the server is stopped on any way out of the
block (error, Ctrl-C, SIGTERM turned into an exception). On Linux a watchdog process also
stops it and deletes its data directory if the caller dies without cleaning up (SIGKILL).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = (
    "the embedded PostgreSQL needs the `pgserver` package (pip install pgserver, or "
    "`make demo`, which installs it); or set MAILROOM_DATABASE_URL to a database you have"
)


class EmbeddedUnavailable(RuntimeError):
    """The embedded server cannot be started; the message says what to do instead."""


@dataclass(frozen=True)
class EmbeddedServer:
    url: str  # libpq URL of the `postgres` database (superuser `postgres`, trust auth, Unix socket)
    pid: int  # the postmaster's pid, to check that it is gone afterwards
    datadir: Path


@contextlib.contextmanager
def embedded_postgres(prefix: str = "mailroom-pg-", also_delete: Sequence[Path] = ()) -> Iterator[EmbeddedServer]:
    """Start a fresh PostgreSQL in a temporary directory; stop it and delete the directory after.

    `also_delete`: the caller's own temporary directories, which the watchdog deletes too if
    the caller dies without cleaning up (the caller deletes them itself otherwise).
    """
    # pgserver logs every initdb/pg_ctl command line and its output at INFO: not for our stderr.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, root shells); harmless here.
        warnings.simplefilter("ignore")
        try:
            import pgserver
        except ImportError as exc:
            raise EmbeddedUnavailable(f"{INSTALL_HINT} ({exc})") from None
        datadir = Path(tempfile.mkdtemp(prefix=prefix))
        try:
            server = pgserver.get_server(datadir, cleanup_mode="delete")
        except Exception as exc:
            log = datadir / "log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            shutil.rmtree(datadir, ignore_errors=True)
            raise EmbeddedUnavailable(
                f"the embedded PostgreSQL did not start: {exc}" + (f"\nend of its log:\n{tail}" if tail else "")
            ) from exc
    pid = int(server.get_pid() or 0)
    watchdog = _start_watchdog(pid, datadir, also_delete)
    try:
        yield EmbeddedServer(url=server.get_uri(), pid=pid, datadir=datadir)
    finally:
        try:
            server.cleanup()
        finally:
            shutil.rmtree(datadir, ignore_errors=True)
            _stop_watchdog(watchdog)


# The watchdog: a small process of its own session that holds the read end of a pipe whose
# write end only we have. It reads until end of file, which comes when we close the pipe
# (after our own cleanup: the data directory is gone and it just exits) or when we die, even
# by SIGKILL: then it stops the server (SIGINT: PostgreSQL's fast shutdown; SIGKILL after
# 10 s) and deletes the data directory. The pid is signalled only while its command line
# still names our data directory, so a recycled pid is never hit.
_WATCHDOG = r"""
import os, re, shutil, signal, sys, time
pid, datadir, also = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
signal.signal(signal.SIGINT, signal.SIG_IGN)
sys.stdin.buffer.read()
def ours():
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return False
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return datadir.encode() in f.read()
    except OSError:
        return False
if os.path.isdir(datadir):
    for sig, wait in ((signal.SIGINT, 10.0), (signal.SIGKILL, 5.0)):
        if not ours():
            break
        os.kill(pid, sig)
        end = time.monotonic() + wait
        while ours() and time.monotonic() < end:
            time.sleep(0.1)
    shutil.rmtree(datadir, ignore_errors=True)
    for path in also:
        shutil.rmtree(path, ignore_errors=True)
"""


def _start_watchdog(pid: int, datadir: Path, also_delete: Sequence[Path]) -> subprocess.Popen[bytes] | None:
    if not pid or not Path("/proc").is_dir():  # Linux only; elsewhere the finally above is all there is
        return None
    try:
        return subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(pid), str(datadir), *map(str, also_delete)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError:
        return None


def _stop_watchdog(watchdog: subprocess.Popen[bytes] | None) -> None:
    if watchdog is None:
        return
    assert watchdog.stdin is not None
    watchdog.stdin.close()  # end of file: the data directory is gone, so it exits at once
    try:
        watchdog.wait(10)
    except subprocess.TimeoutExpired:
        watchdog.kill()
        watchdog.wait()
