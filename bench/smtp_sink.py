"""A local SMTP sink for the SMTP benchmark: aiosmtpd on loopback, in its own process.

Accepts every message, remembers (arrival time, recipient) of each, and on SIGTERM prints one
JSON line with them to stdout and exits. Prints `listening on 127.0.0.1:PORT` first.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self) -> None:
        self.arrivals: list[tuple[float, str]] = []

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        now = time.time()
        self.arrivals.extend((now, rcpt) for rcpt in envelope.rcpt_tos)
        return f"250 2.0.0 Ok: queued as S{len(self.arrivals)}"


class _Controller(Controller):
    def _trigger_server(self) -> None:  # port 0: read the real port from the socket
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    sink = Sink()
    controller = _Controller(sink, hostname="127.0.0.1", port=args.port)
    controller.start()
    print(f"listening on 127.0.0.1:{controller.port}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    controller.stop()
    rcpts = [r for _, r in sink.arrivals]
    json.dump(
        {"messages": len(rcpts), "distinct": len(set(rcpts)), "arrivals": [t for t, _ in sink.arrivals]}, sys.stdout
    )
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
