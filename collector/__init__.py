"""The collector: LISTENs for token inserts and writes signed batch lines to stdout.

Modules, one job each: `cli` (arguments, settings, exit codes), `service` (the
connect / stand by / drain / wait loop and reconnects), `connection` (connecting, the
standby lock, registering the queue, LISTEN), `batching` (when to read while asleep: the
batching policy), `awake` (awake mode: reading on its own schedule while inserts skip
their NOTIFY, and going back to sleep without stranding a token), `queue` (one chunk:
claim, sign, write, commit), `output` (writing lines to stdout), `signals` (SIGTERM and
SIGINT as a flag).
"""
