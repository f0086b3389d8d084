"""`mailroom run`: `collector | sender` as one supervised unit (the container's main process).

A shell pipeline hides a dying collector behind a sender that exits 0 at end of input, and
POSIX sh has no portable `pipefail`. This supervisor starts both processes joined by a
pipe and watches them:

- when either exits on its own, the pipeline is over and `mailroom run` exits non-zero
  (the child's status, or 128+signal, or 1 if it exited 0 without being asked), so that
  Docker, Kubernetes or systemd restarts it;
- on SIGTERM or SIGINT it stops them in the order that loses nothing: the collector first,
  then the sender is left to read what is still in the pipe up to end of input and exit by
  itself; exits 0 when both exit 0.

A process that does not stop within the grace period gets SIGTERM (the sender), then
SIGKILL after another grace period. Stopping therefore takes at most three grace periods
(the collector's SIGTERM, the sender's end of input, the sender's SIGTERM), which is why an
orchestrator's stop timeout must be longer than 3 × --grace.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from mailroom import settings

log = logging.getLogger("mailroom.run")

DEFAULT_GRACE_S = 20.0
POLL_S = 0.05


def default_command(name: str) -> list[str]:
    """The installed console script `name`, next to this Python first, then on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return [str(beside)]
    found = shutil.which(name)
    return [found] if found else [name]


def exit_code(returncode: int) -> int:
    """A child's status as a shell would report it: N, or 128+signal when killed."""
    return 128 - returncode if returncode < 0 else returncode


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    try:
        proc.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        return False


def _stop(name: str, proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM, then SIGKILL if it is still there after the grace period."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    if not _wait(proc, grace_s):
        log.error("%s (pid %d) ignored SIGTERM for %g s: killing it", name, proc.pid, grace_s)
        proc.kill()
        proc.wait()


def _drain(name: str, proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """Let the downstream process read to end of input and exit; stop it after the grace period."""
    if not _wait(proc, grace_s):
        log.warning("%s (pid %d) still running %g s after end of input: stopping it", name, proc.pid, grace_s)
        _stop(name, proc, grace_s)


def supervise(
    upstream: Sequence[str],
    downstream: Sequence[str],
    *,
    grace_s: float = DEFAULT_GRACE_S,
    names: tuple[str, str] = ("collector", "sender"),
) -> int:
    """Run `upstream | downstream` until one exits or a signal asks us to stop; return the exit status."""
    up_name, down_name = names
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        received.append(signum)
        stop.set()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            up = subprocess.Popen(list(upstream), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        except OSError as exc:
            log.error("cannot start %s (%s): %s", up_name, " ".join(upstream), exc)
            return 2
        try:
            down = subprocess.Popen(list(downstream), stdin=up.stdout)
        except OSError as exc:
            log.error("cannot start %s (%s): %s", down_name, " ".join(downstream), exc)
            _stop(up_name, up, grace_s)
            return 2
        finally:
            assert up.stdout is not None
            up.stdout.close()  # the pipe now belongs to the two children only
        log.info("started %s (pid %d) | %s (pid %d)", up_name, up.pid, down_name, down.pid)

        while not stop.is_set() and up.poll() is None and down.poll() is None:
            stop.wait(POLL_S)

        if stop.is_set():
            log.info(
                "received %s: stopping %s, then letting %s finish its input",
                signal.Signals(received[0]).name,
                up_name,
                down_name,
            )
            _stop(up_name, up, grace_s)
            _drain(down_name, down, grace_s)
            failed = [(n, p.returncode) for n, p in ((up_name, up), (down_name, down)) if p.returncode != 0]
            for name, rc in failed:
                log.error("%s exited with status %d while stopping", name, exit_code(rc))
            return exit_code(failed[0][1]) if failed else 0

        # One (or, between two polls, both) ended on its own. When the sender dies the
        # collector soon follows on a broken pipe, so with both gone the sender's failure
        # is the cause to report.
        if down.poll() is None:
            log.error(
                "%s exited with status %d: letting %s finish its input, then exiting",
                up_name,
                exit_code(up.returncode),
                down_name,
            )
            _drain(down_name, down, grace_s)
            # A dying sender closes the pipe a moment before it can be waited for, so the
            # collector's broken pipe may be seen first: then the sender's failure is the cause.
            if down.returncode != 0:
                log.error("%s exited with status %d", down_name, exit_code(down.returncode))
            cause = down if down.returncode != 0 else up
        else:
            if up.poll() is None and down.returncode == 0:
                # The sender ends cleanly at end of input, that is when the collector closed
                # the pipe: give the collector a moment to be waited for.
                _wait(up, 1.0)
            if up.poll() is None:
                log.error("%s exited with status %d: stopping %s", down_name, exit_code(down.returncode), up_name)
                cause = down
                _stop(up_name, up, grace_s)
                return exit_code(cause.returncode) or 1
            log.error(
                "%s exited with status %d; %s exited with status %d",
                down_name,
                exit_code(down.returncode),
                up_name,
                exit_code(up.returncode),
            )
            cause = down if down.returncode != 0 else up
        return exit_code(cause.returncode) or 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# `mailroom run` (wired up in mailroom/cli.py). The children read their own settings.


# The three grace periods a stop can take (see the module docstring): an orchestrator's
# stop timeout must be longer than this many times --grace.
STOP_GRACE_PERIODS = 3


def _grace(raw: str) -> float:
    """A duration as the settings take it: seconds, or 500ms, 20s, 1m."""
    try:
        return settings.seconds("--grace", raw)
    except settings.ConfigError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--collector", metavar="CMD", help="command line of the upstream process [default: the installed `collector`]"
    )
    parser.add_argument(
        "--sender", metavar="CMD", help="command line of the downstream process [default: the installed `sender`]"
    )
    parser.add_argument(
        "--grace",
        type=_grace,
        default=DEFAULT_GRACE_S,
        metavar="DURATION",
        help="how long each process gets to stop before it is signalled again (seconds, or 500ms, 20s, 1m); "
        f"a stop takes at most {STOP_GRACE_PERIODS} of them: give the orchestrator a longer stop timeout "
        f"[default: {DEFAULT_GRACE_S:g}s]",
    )


def cli_main(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    upstream = shlex.split(args.collector) if args.collector else default_command("collector")
    downstream = shlex.split(args.sender) if args.sender else default_command("sender")
    return supervise(upstream, downstream, grace_s=args.grace)
