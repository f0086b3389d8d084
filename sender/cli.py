"""`sender`: read batch lines on stdin, send each record through SES (or print it in debug mode)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence

from mailroom import __version__, settings
from mailroom.logs import setup_logging
from mailroom.signing import Action
from sender import templates
from sender.debug import DebugProvider
from sender.dispatch import SendConfig, Sender
from sender.journal import Journal
from sender.outputs import Outputs

log = logging.getLogger("sender")
DEBUG_DEFAULT_RATE = 14.0

DESCRIPTION = """\
Read the collector's batch lines on stdin and send each record as a templated email with
SES SendBulkTemplatedEmail (at most 50 destinations per call). Failed destinations are
retried until MAILROOM_SEND_DEADLINE; what cannot be sent goes to rejects.jsonl with the
reason. Every outcome is in deliveries.jsonl. AWS is configured by boto3's standard chain
(credentials, AWS_REGION, AWS_ENDPOINT_URL_SES for an emulator such as moto_server)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sender",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=settings.help_epilog(settings.SENDER_VARIABLES),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def build(s: settings.SenderSettings) -> Sender:
    """Wire the parts together from the settings; raises ConfigError for what is unusable."""
    try:
        outputs = Outputs(s.output_path)
    except OSError as exc:
        raise settings.ConfigError(
            "MAILROOM_SES_OUTPUT_PATH", f"cannot create or write {str(s.output_path)!r}: {exc.strerror or exc}"
        ) from None
    if s.debug:
        provider = DebugProvider(sys.stdout, templates.load_all())
        rate = s.max_send_rate or DEBUG_DEFAULT_RATE
    else:
        from sender.ses import SesProvider, account_send_rate, make_client

        client = make_client(max_pool=s.concurrency + 2)
        provider = SesProvider(client, outputs)
        rate = s.max_send_rate or account_send_rate(client)
    config = SendConfig(
        templates={Action.ACTIVATION: s.template_activation, Action.PASSWORD_RECOVERY: s.template_recovery},
        source=s.source,
        config_set=s.config_set,
        app_url=s.app_url,
        deadline_s=s.send_deadline_s,
        concurrency=s.concurrency,
        max_send_rate=rate,
        debug=s.debug,
    )
    journal = Journal(s.output_path / "journal", dedup_window=max(1800.0, 2 * s.send_deadline_s))
    return Sender(config, provider, outputs, journal)


def main(argv: Sequence[str] | None = None) -> int:
    build_parser().parse_args(argv)
    environ = settings.load_environment()
    try:
        s = settings.SenderSettings.from_environ(environ)
        setup_logging("sender", s.log_level)
        settings.warn_unknown_variables(environ, log)
        sender = build(s)
    except settings.ConfigError as exc:
        settings.exit_on_config_error("sender", exc)
    log.info(
        "sending %s; at most %g emails/s, %d call(s) in flight, %d destinations per call, deadline %gs",
        "in debug mode (printing, no AWS call)" if s.debug else "through SES",
        sender.config.max_send_rate,
        s.concurrency,
        sender.batch_size,
        s.send_deadline_s,
    )

    def on_signal(signum: int, _frame: object) -> None:
        sender.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return sender.run(sys.stdin.fileno())


if __name__ == "__main__":
    sys.exit(main())
