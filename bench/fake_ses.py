"""A fake SES v1 endpoint on loopback, for the sender benchmark and for the tests of SES faults.

It speaks just enough of the AWS Query protocol (form-encoded POST, XML answers) for
boto3's SES client, and answers errors with SES's real XML error bodies (an `ErrorResponse`
with Type, Code, Message and a RequestId), which is what moto cannot produce for every fault:

- `SendBulkTemplatedEmail`: waits `delay` seconds (a realistic SES round trip), then
  answers Success with a MessageId for every destination; or, as the `Faults` say, a whole-
  call error (scripted for the next calls, or for any call holding a refused address, as
  SES answers `InvalidParameterValue`), or a per-destination status;
- `GetSendQuota`, `GetAccountSendingEnabled`, `GetIdentityVerificationAttributes`,
  `GetTemplate`, `DescribeConfigurationSet`: answered from `Faults` (by default: every
  identity verified, every template and configuration set present, sending enabled);
- anything else: HTTP 400 `InvalidAction`.

Every request is served on its own thread (ThreadingHTTPServer), so concurrent calls
overlap like they do against SES. It listens on loopback only. The first line on stdout
is `listening on 127.0.0.1:PORT`; `GET /_bench/stats` answers JSON with the total of
destinations received, the distinct addresses and `[wall time, destinations]` per call,
which is how the harness measures the send rate without trusting the sender's own count.

    python -m bench.fake_ses --port 0 --delay 0.05
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

XMLNS = "http://ses.amazonaws.com/doc/2010-12-01/"
_DEST = re.compile(r"^Destinations\.member\.(\d+)\.Destination\.ToAddresses\.member\.\d+$")


@dataclass
class Faults:
    """What the fake answers besides Success; change it while the server runs (under `lock`)."""

    verified: set[str] | None = None  # identities (addresses or domains) verified; None: all
    templates: set[str] | None = None  # templates that exist; None: all
    config_sets: set[str] | None = None  # configuration sets that exist; None: all
    sending_enabled: bool = True
    max_send_rate: float = 5000.0
    # the next SendBulkTemplatedEmail calls answer these (HTTP status, code, message), in order
    script: list[tuple[int, str, str]] = field(default_factory=list)
    # a call holding one of these addresses fails whole: address -> (code, message), as SES does
    refuse_call: dict[str, tuple[str, str]] = field(default_factory=dict)
    # a destination with one of these addresses gets this status: address -> (status, error)
    statuses: dict[str, tuple[str, str]] = field(default_factory=dict)
    # an error for every call of these actions: action -> (HTTP status, code, message)
    errors: dict[str, tuple[int, str, str]] = field(default_factory=dict)
    # scripted answers wait until this many SendBulkTemplatedEmail calls have arrived (calls in flight)
    script_after: int = 0
    # when set: calls without a scripted answer wait for this event before answering
    hold: threading.Event | None = field(default=None, repr=False)
    arrived: int = 0  # SendBulkTemplatedEmail calls received so far
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[float, int]] = []
        self.call_addresses: list[list[str]] = []
        self.destinations = 0
        self.addresses: set[str] = set()
        self.delivered: list[str] = []
        self.other_actions: dict[str, int] = {}

    def record(self, addresses: list[str], delivered: list[str]) -> None:
        with self.lock:
            self.calls.append((time.time(), len(addresses)))
            self.call_addresses.append(addresses)
            self.destinations += len(addresses)
            self.addresses.update(addresses)
            self.delivered += delivered

    def as_json(self) -> bytes:
        with self.lock:
            return json.dumps(
                {
                    "destinations": self.destinations,
                    "distinct": len(self.addresses),
                    "calls": self.calls,
                    "other_actions": self.other_actions,
                }
            ).encode()


def _respond_xml(handler: BaseHTTPRequestHandler, status: int, body: str) -> None:
    data = body.encode("utf-8")
    handler.send_response(status)
    handler.send_header("Content-Type", "text/xml")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def error_body(code: str, message: str, request_id: str, kind: str = "Sender") -> str:
    """SES's error document, as SES sends it."""
    return (
        f'<ErrorResponse xmlns="{XMLNS}"><Error><Type>{kind}</Type><Code>{escape(code)}</Code>'
        f"<Message>{escape(message)}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
    )


def _result(action: str, inner: str, request_id: str) -> str:
    return (
        f'<{action}Response xmlns="{XMLNS}"><{action}Result>{inner}</{action}Result>'
        f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{action}Response>"
    )


def make_handler(stats: Stats, delay: float, faults: Faults) -> type[BaseHTTPRequestHandler]:
    arrivals = threading.Condition(faults.lock)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: boto3 reuses its pooled connections
        # Headers and body go out in separate writes: with Nagle's algorithm on, the body
        # would wait for the client's delayed ACK (~40 ms per call), which SES does not add.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: object) -> None:  # quiet: stdout/stderr stay clean
            return

        def do_GET(self) -> None:
            if self.path == "/_bench/stats":
                data = stats.as_json()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            else:
                _respond_xml(self, 404, "<Error><Code>NotFound</Code></Error>")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode("utf-8"), keep_blank_values=True)
            action = (form.get("Action") or [""])[0]
            rid = str(uuid.uuid4())
            with faults.lock:
                error = faults.errors.get(action)
            if error is not None:
                _respond_xml(self, error[0], error_body(error[1], error[2], rid))
                return
            answer = getattr(self, f"_{action}", None)
            if answer is None:
                with stats.lock:
                    stats.other_actions[action] = stats.other_actions.get(action, 0) + 1
                message = f"the fake SES does not implement {action!r}"
                _respond_xml(self, 400, error_body("InvalidAction", message, rid))
                return
            status, body = answer(form, rid)
            _respond_xml(self, status, body)

        def _SendBulkTemplatedEmail(self, form: dict[str, list[str]], rid: str) -> tuple[int, str]:
            by_index: dict[int, str] = {}
            for key, values in form.items():
                match = _DEST.match(key)
                if match:
                    by_index.setdefault(int(match.group(1)), values[0])
            addresses = [by_index[i] for i in sorted(by_index)]
            with arrivals:
                faults.arrived += 1
                arrivals.notify_all()
            if delay:
                time.sleep(delay)
            with faults.lock:
                scripted = faults.script.pop(0) if faults.script else None
            if scripted is not None and faults.script_after:
                with arrivals:
                    arrivals.wait_for(lambda: faults.arrived >= faults.script_after, timeout=60)
            elif scripted is None and faults.hold is not None:
                faults.hold.wait(timeout=120)
            with faults.lock:
                refused = next((faults.refuse_call[a] for a in addresses if a in faults.refuse_call), None)
                statuses = [faults.statuses.get(a, ("Success", "")) for a in addresses]
            if scripted is not None:
                stats.record(addresses, [])
                return scripted[0], error_body(scripted[1], scripted[2], rid)
            if refused is not None:
                stats.record(addresses, [])
                return 400, error_body(refused[0], refused[1], rid)
            members = "".join(
                f"<member><Status>Success</Status><MessageId>{uuid.uuid4()}</MessageId></member>"
                if status == "Success"
                else f"<member><Status>{status}</Status><Error>{escape(message)}</Error></member>"
                for status, message in statuses
            )
            stats.record(addresses, [a for a, (s, _) in zip(addresses, statuses, strict=True) if s == "Success"])
            return 200, _result("SendBulkTemplatedEmail", f"<Status>{members}</Status>", rid)

        def _GetSendQuota(self, form: dict[str, list[str]], rid: str) -> tuple[int, str]:
            inner = (
                f"<Max24HourSend>100000000.0</Max24HourSend><MaxSendRate>{faults.max_send_rate}</MaxSendRate>"
                f"<SentLast24Hours>0.0</SentLast24Hours>"
            )
            return 200, _result("GetSendQuota", inner, rid)

        def _GetAccountSendingEnabled(self, form: dict[str, list[str]], rid: str) -> tuple[int, str]:
            enabled = "true" if faults.sending_enabled else "false"
            return 200, _result("GetAccountSendingEnabled", f"<Enabled>{enabled}</Enabled>", rid)

        def _GetIdentityVerificationAttributes(self, form: dict[str, list[str]], rid: str) -> tuple[int, str]:
            identities = [v[0] for k, v in sorted(form.items()) if k.startswith("Identities.member.")]
            entries = "".join(
                f"<entry><key>{escape(i)}</key><value><VerificationStatus>"
                f"{'Success' if faults.verified is None or i in faults.verified else 'Pending'}"
                f"</VerificationStatus></value></entry>"
                for i in identities
            )
            return 200, _result(
                "GetIdentityVerificationAttributes", f"<VerificationAttributes>{entries}</VerificationAttributes>", rid
            )

        def _GetTemplate(self, form: dict[str, list[str]], rid: str) -> tuple[int, str]:
            name = form.get("TemplateName", [""])[0]
            if faults.templates is not None and name not in faults.templates:
                return 400, error_body("TemplateDoesNotExist", f"Template {name} does not exist.", rid)
            inner = f"<Template><TemplateName>{escape(name)}</TemplateName><SubjectPart>s</SubjectPart></Template>"
            return 200, _result("GetTemplate", inner, rid)

        def _DescribeConfigurationSet(self, form: dict[str, list[str]], rid: str) -> tuple[int, str]:
            name = form.get("ConfigurationSetName", [""])[0]
            if faults.config_sets is not None and name not in faults.config_sets:
                message = f"Configuration set <{name}> does not exist."
                return 400, error_body("ConfigurationSetDoesNotExist", message, rid)
            inner = f"<ConfigurationSet><Name>{escape(name)}</Name></ConfigurationSet>"
            return 200, _result("DescribeConfigurationSet", inner, rid)

    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # a burst of concurrent calls is queued, not refused


def serve(
    port: int = 0, delay: float = 0.05, max_send_rate: float = 5000.0, faults: Faults | None = None
) -> tuple[ThreadingHTTPServer, Stats]:
    """A started server (on a daemon thread) and its counters; for in-process use."""
    stats = Stats()
    faults = faults or Faults(max_send_rate=max_send_rate)
    server = Server(("127.0.0.1", port), make_handler(stats, delay, faults))
    threading.Thread(target=server.serve_forever, name="fake-ses", daemon=True).start()
    return server, stats


@dataclass(frozen=True)
class Child:
    """A fake SES started as a benchmark's child process."""

    process: Any  # subprocess.Popen
    port: int
    env: dict[str, str]  # the AWS_* environment that points the sender at it


def start_child(kids: Any, delay: float, max_send_rate: float) -> Child:
    """Start `python -m bench.fake_ses` as one of a benchmark's children (bench.common.Children)."""
    argv = ["--port", "0", "--delay", str(delay), "--max-send-rate", str(max_send_rate)]
    fake = kids.start(
        [sys.executable, "-m", "bench.fake_ses", *argv], env=os.environ, stdout=subprocess.PIPE, text=True
    )
    port = int(fake.stdout.readline().strip().rsplit(":", 1)[1])
    env = {
        "AWS_ENDPOINT_URL_SES": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_REGION": "us-east-1",
    }
    return Child(fake, port, env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fake_ses", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: a free one)")
    parser.add_argument("--delay", type=float, default=0.05, help="seconds before each SendBulkTemplatedEmail answer")
    parser.add_argument("--max-send-rate", type=float, default=5000.0, help="MaxSendRate in GetSendQuota")
    args = parser.parse_args(argv)
    stats = Stats()
    server = Server(("127.0.0.1", args.port), make_handler(stats, args.delay, Faults(max_send_rate=args.max_send_rate)))
    print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
