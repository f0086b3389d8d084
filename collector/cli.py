"""`collector`: signed batch lines of new tokens on stdout, from PostgreSQL LISTEN/NOTIFY.

Exit status: 0 when stopped by SIGTERM/SIGINT (or after `--drain`), 1 when stdout is
closed (the chunk in progress is rolled back) or on a database error such as a missing
schema, 2 on invalid configuration or a connection that retrying cannot fix (the
database or role does not exist, authentication failed).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from collector.output import LineWriter
from collector.service import Collector
from collector.signals import StopFlag, install
from collector.stats import CollectorStats
from mailroom import __version__, settings
from mailroom.logs import plural, setup_logging

log = logging.getLogger("collector")

DESCRIPTION = """\
Listen for new tokens in PostgreSQL and write them to stdout as signed batch lines,
one line per chunk of at most MAILROOM_BATCH_LIMIT records:

  action,email,username,secret,code[,action,email,username,secret,code...]

Delivery is at-least-once: a chunk is committed (removed from the queue) only after its
line has been written to stdout. Logs go to stderr. Run a second collector with the same
MAILROOM_QUEUE_NAME as a standby: it waits until the active one is gone, then takes over.

exit status: 0 stopped by SIGTERM/SIGINT or --drain done; 1 stdout closed or database
error (e.g. schema not migrated); 2 invalid configuration, or a connection that retrying
cannot fix (database or role does not exist, authentication failed)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="collector",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=settings.help_epilog(settings.COLLECTOR_VARIABLES),
    )
    parser.add_argument(
        "--drain",
        action="store_true",
        help="emit what is queued now, then exit 0 (does not wait for notifications, "
        "and fails if another collector is active on the queue)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    environ = settings.load_environment()
    try:
        config = settings.CollectorSettings.from_environ(environ)
    except settings.ConfigError as exc:
        settings.exit_on_config_error("collector", exc)
    setup_logging("collector", config.log_level, config.log_format)
    stats = CollectorStats()
    if config.metrics_addr is not None:  # prometheus_client is imported only for a collector that serves metrics
        from collector import metrics

        try:
            metrics.start(config, stats)
        except settings.ConfigError as exc:
            settings.exit_on_config_error("collector", exc)
    settings.warn_unknown_variables(environ, log)
    log.info(
        "collector %s: queue %r, channel %r; batch limit %d (a read at %s, at most %s per line), "
        "batch timeout %d ms, health check after %d ms of silence",
        __version__,
        config.queue_name,
        config.channel_name,
        config.batch_limit,
        plural(config.batch_limit, "notification"),
        plural(config.batch_limit, "record"),
        config.batch_timeout_ms,
        config.healthcheck_interval_ms,
    )
    stop = StopFlag()
    install(stop)
    return Collector(config, LineWriter(sys.stdout.fileno(), stop), stop, drain_only=args.drain, stats=stats).run()


if __name__ == "__main__":
    sys.exit(main())
