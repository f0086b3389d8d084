"""bench/fake_ses.py in a child process of its own, driven over stdin/stdout, for the disk-full
process tests. In the full suite, the fake SES served from the test process itself lost its
connections (its server thread sat in accept() after poll() had reported one, and the
sender's preflight timed out), presumably to a thread an earlier test left accepting on a
descriptor number that was closed and reused; the culprit was not pinned down. In a process
of its own nothing else can take them. One command per line on stdin, one JSON answer per
line on stdout:

- `received`: every address of every SendBulkTemplatedEmail call answered so far, in order;
- `arrived`: SendBulkTemplatedEmail calls received so far (answered or held);
- `release`: calls wait no more (with `--hold` they wait until this).

The first line on stdout is the port.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.fake_ses import Faults, serve


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--hold", action="store_true", help="calls wait for `release` before answering")
    args = parser.parse_args()
    hold = threading.Event()
    faults = Faults(hold=hold if args.hold else None)
    server, stats = serve(0, args.delay, faults=faults)
    print(json.dumps(server.server_address[1]), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "received":
            with stats.lock:
                answer: object = [a for call in stats.call_addresses for a in call]
        elif command == "arrived":
            answer = faults.arrived
        elif command == "release":
            hold.set()
            answer = True
        else:
            answer = f"unknown command {command!r}"
        print(json.dumps(answer), flush=True)
    server.shutdown()


if __name__ == "__main__":
    main()
