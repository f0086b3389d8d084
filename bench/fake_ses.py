"""A fake SES v1 endpoint for the sender benchmark: answers after a fixed delay, counts.

It speaks just enough of the AWS Query protocol (form-encoded POST, XML answers) for
boto3's SES client:

- `SendBulkTemplatedEmail`: waits `--delay` seconds (50 ms by default, a realistic SES
  round trip), then answers Success with a MessageId for every destination;
- `GetSendQuota`: a quota with `--max-send-rate`;
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
import re
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

XMLNS = "http://ses.amazonaws.com/doc/2010-12-01/"
_DEST = re.compile(r"^Destinations\.member\.(\d+)\.Destination\.ToAddresses\.member\.\d+$")


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[float, int]] = []
        self.destinations = 0
        self.addresses: set[str] = set()
        self.other_actions: dict[str, int] = {}

    def record(self, addresses: list[str]) -> None:
        with self.lock:
            self.calls.append((time.time(), len(addresses)))
            self.destinations += len(addresses)
            self.addresses.update(addresses)

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


def make_handler(stats: Stats, delay: float, max_send_rate: float) -> type[BaseHTTPRequestHandler]:
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
            request_id = str(uuid.uuid4())
            if action == "SendBulkTemplatedEmail":
                by_index: dict[int, str] = {}
                for key, values in form.items():
                    match = _DEST.match(key)
                    if match:
                        by_index.setdefault(int(match.group(1)), values[0])
                addresses = [by_index[i] for i in sorted(by_index)]
                time.sleep(delay)
                stats.record(addresses)
                members = "".join(
                    f"<member><Status>Success</Status><MessageId>{uuid.uuid4()}</MessageId></member>" for _ in addresses
                )
                _respond_xml(
                    self,
                    200,
                    f'<SendBulkTemplatedEmailResponse xmlns="{XMLNS}"><SendBulkTemplatedEmailResult>'
                    f"<Status>{members}</Status></SendBulkTemplatedEmailResult>"
                    f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>"
                    f"</SendBulkTemplatedEmailResponse>",
                )
            elif action == "GetSendQuota":
                _respond_xml(
                    self,
                    200,
                    f'<GetSendQuotaResponse xmlns="{XMLNS}"><GetSendQuotaResult>'
                    f"<Max24HourSend>100000000.0</Max24HourSend><MaxSendRate>{max_send_rate}</MaxSendRate>"
                    f"<SentLast24Hours>0.0</SentLast24Hours></GetSendQuotaResult>"
                    f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>"
                    f"</GetSendQuotaResponse>",
                )
            else:
                with stats.lock:
                    stats.other_actions[action] = stats.other_actions.get(action, 0) + 1
                _respond_xml(
                    self,
                    400,
                    f'<ErrorResponse xmlns="{XMLNS}"><Error><Type>Sender</Type><Code>InvalidAction</Code>'
                    f"<Message>the fake SES does not implement {action!r}</Message></Error>"
                    f"<RequestId>{request_id}</RequestId></ErrorResponse>",
                )

    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # a burst of concurrent calls is queued, not refused


def serve(port: int = 0, delay: float = 0.05, max_send_rate: float = 5000.0) -> tuple[ThreadingHTTPServer, Stats]:
    """A started server (on a daemon thread) and its counters; for in-process use."""
    stats = Stats()
    server = Server(("127.0.0.1", port), make_handler(stats, delay, max_send_rate))
    threading.Thread(target=server.serve_forever, name="fake-ses", daemon=True).start()
    return server, stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fake_ses", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: a free one)")
    parser.add_argument("--delay", type=float, default=0.05, help="seconds before each SendBulkTemplatedEmail answer")
    parser.add_argument("--max-send-rate", type=float, default=5000.0, help="MaxSendRate in GetSendQuota")
    args = parser.parse_args(argv)
    stats = Stats()
    server = Server(("127.0.0.1", args.port), make_handler(stats, args.delay, args.max_send_rate))
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
