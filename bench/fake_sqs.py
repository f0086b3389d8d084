"""A minimal SQS on loopback for the events benchmark: the JSON protocol (AmazonSQS.*) of
GetQueueAttributes, ReceiveMessage, DeleteMessageBatch and SendMessageBatch, one in-memory
queue, no visibility timeout (a received message stays in flight until deleted).

moto_server, which the tests use, spends 150-300 ms per ReceiveMessage and DeleteMessageBatch
pair on this machine: a benchmark through it measures moto. This one answers in well under a
millisecond, so the figure is mailroom's. Run it in-process: `serve()` returns the server. It
keeps its connections open (HTTP/1.1), as SQS does.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeSqs:
    def __init__(self) -> None:
        self.visible: collections.deque[tuple[str, str]] = collections.deque()
        self.in_flight: dict[str, tuple[str, str]] = {}
        self.deleted = 0
        self.lock = threading.Lock()
        self.ids = itertools.count(1)

    def add(self, body: str) -> None:
        self.visible.append((f"msg-{next(self.ids)}", body))

    def answer(self, target: str, request: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            if target == "GetQueueAttributes":
                return {"Attributes": {"RedrivePolicy": '{"maxReceiveCount":"5"}'}}
            if target == "SendMessageBatch":
                for entry in request["Entries"]:
                    self.add(entry["MessageBody"])
                return {
                    "Successful": [
                        {"Id": e["Id"], "MessageId": "x", "MD5OfMessageBody": ""} for e in request["Entries"]
                    ]
                }
            if target == "ReceiveMessage":
                messages = []
                for _ in range(min(int(request.get("MaxNumberOfMessages", 1)), len(self.visible))):
                    message_id, body = self.visible.popleft()
                    handle = f"rh-{message_id}"
                    self.in_flight[handle] = (message_id, body)
                    messages.append(
                        {
                            "MessageId": message_id,
                            "ReceiptHandle": handle,
                            "MD5OfBody": hashlib.md5(body.encode()).hexdigest(),
                            "Body": body,
                            "Attributes": {"ApproximateReceiveCount": "1"},
                        }
                    )
                return {"Messages": messages} if messages else {}
            if target == "DeleteMessageBatch":
                for entry in request["Entries"]:
                    if self.in_flight.pop(entry["ReceiptHandle"], None) is not None:
                        self.deleted += 1
                return {"Successful": [{"Id": e["Id"]} for e in request["Entries"]], "Failed": []}
        raise KeyError(target)


def serve(queue: FakeSqs) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        # Keep-alive, as SQS answers (botocore keeps its connections): without it every call
        # opened a connection, and the server started a thread per call.
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            target = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
            try:
                answer = json.dumps(queue.answer(target, json.loads(body or b"{}"))).encode()
                status = 200
            except KeyError:
                answer, status = json.dumps({"__type": "UnsupportedOperation"}).encode(), 400
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.0")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
