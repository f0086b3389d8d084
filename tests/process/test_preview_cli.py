"""`mailroom templates preview` as a program: an address it cannot listen on is one line and
exit 2, never a traceback; Ctrl-C as soon as it serves is a clean stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess

from conftest import script


def preview(*args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILROOM_")}
    return subprocess.Popen(
        [script("mailroom"), "templates", "preview", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_port_in_use_exits_2_with_one_line_naming_the_address_and_the_way_out() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = preview("--port", str(port))
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert f"cannot listen on 127.0.0.1:{port}" in lines[0] and "--port" in lines[0], err


def test_a_host_that_is_not_this_machines_exits_2_with_one_line() -> None:
    proc = preview("--host", "192.0.2.1", "--port", "0")  # TEST-NET-1: never an address of this machine
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert len(err.strip().splitlines()) == 1 and "cannot listen on 192.0.2.1:0" in err, err


def test_ctrl_c_as_soon_as_it_serves_stops_it_cleanly() -> None:
    proc = preview("--port", "0")
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "serving http://127.0.0.1:" in line, line
    proc.send_signal(signal.SIGINT)  # at once: the handler is in place before the URL is shown
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 0, rest
    assert "Traceback" not in rest and "stopped" in rest, rest
