"""Benchmark: SES events per second through `mailroom events --drain`, 10,000 queued events.

bench/fake_sqs.py (on loopback, in this process) stands in for SQS; the events are the documented SES Delivery and
Bounce records (tests/data/ses_events), SNS-wrapped, each tagged with a real token's
token_ref, one in 100 a permanent bounce. The figure is 10,000 / (start to exit) of
`mailroom events --drain`: connecting, every receive, record and delete included. Queueing
the messages is not timed.

    .venv/bin/python -m bench.events_rate [--events 10000] [--profile PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import psycopg

from bench.common import ROOT, Children, bench_database, program_env, script, seed_accounts, wait_with_rusage
from bench.fake_sqs import FakeSqs, serve
from mailroom.ses_events import TAG_ACTION, TAG_TOKEN_REF
from mailroom.signing import secret_ref

DATA = ROOT / "tests" / "data" / "ses_events"


def _bodies(tokens: list[tuple[str, str]]) -> list[str]:
    envelope = json.loads((DATA / "sns-envelope.json").read_text())
    delivery = json.loads((DATA / "publishing-delivery.json").read_text())
    bounce = json.loads((DATA / "publishing-bounce.json").read_text())
    bodies = []
    for i, (email, ref) in enumerate(tokens):
        record = json.loads(json.dumps(bounce if i % 100 == 41 else delivery))
        record["mail"] |= {"messageId": f"bench-{i}", "destination": [email]}
        record["mail"]["tags"] |= {TAG_TOKEN_REF: [ref], TAG_ACTION: ["activation"]}
        if "bounce" in record:
            record["bounce"]["bouncedRecipients"][0]["emailAddress"] = email
            record["bounce"]["feedbackId"] = f"bench-fb-{i}"
        else:
            record["delivery"]["recipients"] = [email]
        bodies.append(json.dumps({**envelope, "Message": json.dumps(record)}))
    return bodies


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.events_rate")
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument(
        "--profile", metavar="PATH", help="run `mailroom events` under cProfile, its stats written to PATH"
    )
    args = parser.parse_args()
    queue = FakeSqs()
    server = serve(queue)
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    aws = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_SQS": endpoint,
    }
    with Children() as children, bench_database("events", register_queue=False) as url:
        seed_accounts(url, args.events)
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT a.email, t.secret FROM tokens t JOIN accounts a ON a.id = t.account").fetchall()
        for body in _bodies([(email, secret_ref(bytes(secret))) for email, secret in rows]):
            queue.add(body)
        env = program_env(
            MAILROOM_DATABASE_URL=url, MAILROOM_EVENTS_QUEUE_URL=f"{endpoint}/123456789012/bench-events", **aws
        )
        load = os.getloadavg()[0]
        started = time.monotonic()
        profiler = [sys.executable, "-m", "cProfile", "-o", args.profile] if args.profile else []
        proc = children.start([*profiler, script("mailroom"), "events", "--drain"], env=env)
        status, cpu_s = wait_with_rusage(proc, timeout=600)
        elapsed = time.monotonic() - started
        with psycopg.connect(url) as conn:
            recorded = conn.execute("SELECT count(*) FROM delivery_events").fetchone()
            suppressed = conn.execute("SELECT count(*) FROM suppressions").fetchone()
            statuses = conn.execute("SELECT count(*) FROM token_deliveries").fetchone()
    server.shutdown()
    print(
        f"events: {args.events:,} queued SES events (SNS-wrapped Delivery, 1 in 100 a permanent Bounce) through "
        f"`mailroom events --drain` against bench/fake_sqs.py: exit {status}, {elapsed:.2f} s start to exit, "
        f"{args.events / elapsed:,.0f} events/s, {cpu_s:.2f} s CPU; recorded {recorded[0] if recorded else '?'} "
        f"events, {statuses[0] if statuses else '?'} token statuses, {suppressed[0] if suppressed else '?'} "
        f"suppressions; messages deleted {queue.deleted:,}; load average before {load:.2f}"
    )


if __name__ == "__main__":
    main()
