"""`sender`: read batch lines on stdin, send each record through SES (or print it in debug mode)."""

from __future__ import annotations

import argparse
import errno
import logging
import signal
import sys
from collections.abc import Sequence

from mailroom import __version__, settings, template_checks, templates
from mailroom.checks import Check, render
from mailroom.logs import setup_logging
from mailroom.redirect import Redirect, with_subject_tags
from sender import metrics
from sender.catalog import Catalog
from sender.debug import DebugProvider
from sender.dispatch import DISK_FIX, SendConfig, Sender
from sender.journal import Journal
from sender.outputs import Outputs
from sender.provider import Provider, UnsendableAddress
from sender.retry import EXIT_OPERATOR_FAULT

log = logging.getLogger("sender")
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
FALLBACK_SEND_RATE = 14.0  # the SES sandbox rate, when the provider publishes none (SMTP relays)

DESCRIPTION = """\
Read the collector's batch lines on stdin and send each record as an email: through SES
SendBulkTemplatedEmail (at most 50 destinations per call; MAILROOM_PROVIDER=ses, the
default), through an SMTP relay (MAILROOM_PROVIDER=smtp, one transaction per recipient), or
printed to stdout (MAILROOM_DEBUG=true). Before reading anything it runs the provider's
preflight checks (`--check` prints them and exits). Failed destinations are retried until
MAILROOM_SEND_DEADLINE; a recipient the provider refuses goes to rejects.jsonl with the
reason; a fault of the operator's (templates, identity, credentials, configuration, a full
disk under MAILROOM_SES_OUTPUT_PATH) stops the sender with exit status 75 and writes
nothing off. Every outcome is in deliveries.jsonl. With MAILROOM_REDIRECT_TO set (a staging
deployment) every email goes to that one address instead, its subject starting with
`[to: original@address]`. AWS is configured by boto3's standard chain (credentials,
AWS_REGION, AWS_ENDPOINT_URL_SES for an emulator such as moto_server)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sender",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=settings.help_epilog(settings.SENDER_VARIABLES),
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="run the provider's preflight checks, print one line per check (✓/✗) and exit 0 or 1; reads no input",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def build(s: settings.SenderSettings) -> Sender:
    """Wire the parts together from the settings; raises ConfigError for what is unusable, and
    OSError for a full disk (an operator fault: exit 75, not a configuration error)."""
    try:
        outputs = Outputs(s.output_path)
        journal = Journal(s.output_path / "journal", dedup_window=max(1800.0, 2 * s.send_deadline_s))
    except OSError as exc:
        if exc.errno in DISK_FULL:
            raise
        raise settings.ConfigError(
            "MAILROOM_SES_OUTPUT_PATH", f"cannot create or write {str(s.output_path)!r}: {exc.strerror or exc}"
        ) from None
    template_names = {"activation": s.template_activation, "password_recovery": s.template_recovery}
    provider: Provider
    rate: float | None
    local = templates.load_all(s.templates_dir)
    if s.redirect_to:  # the subjects rendered here start with the redirect prefix (empty when not redirected)
        local = with_subject_tags(local)
    if s.debug:
        provider = DebugProvider(sys.stdout, local)
        rate = None  # printing is not paced: there is no provider to protect
    elif s.provider == "smtp":
        from sender.smtp import SmtpProvider

        provider = SmtpProvider(s.smtp, s.source, local)
        rate = s.max_send_rate
    else:
        from mailroom.aws import make_client
        from sender.ses import SesProvider

        client = make_client(max_pool=s.concurrency + 2)
        # preflight: every SES template a record may be sent with (each local action and locale)
        sendable = Catalog(template_names, s.templates_dir)
        provider = SesProvider(
            client,
            outputs,
            source=s.source,
            templates=sendable.ses_templates(),
            config_set=s.config_set,
            subject_tag_required=bool(s.redirect_to),
        )
        rate = s.max_send_rate
    redirect = None
    if s.redirect_to:
        try:
            to = provider.address(s.redirect_to)
        except UnsendableAddress as exc:
            raise settings.ConfigError("MAILROOM_REDIRECT_TO", f"{s.redirect_to!r} cannot be sent to: {exc}") from None
        redirect = Redirect.from_settings(to, s.redirect_except)
    config = SendConfig(
        templates=template_names,
        source=s.source,
        config_set=s.config_set,
        app_url=s.app_url,
        deadline_s=s.send_deadline_s,
        concurrency=s.concurrency,
        max_send_rate=rate,
        debug=s.debug,
        redirect=redirect,
        templates_dir=s.templates_dir,
        local_templates=s.debug or s.provider == "smtp",
    )
    return Sender(config, provider, outputs, journal)


def preflight(sender: Sender, s: settings.SenderSettings) -> list[Check]:
    """The templates' checks (`mailroom templates check`) and the provider's; the account's send
    rate is taken from the provider's when none is set."""
    checks = [*template_checks.preflight_checks(s.templates_dir, s.app_url), *sender.provider.preflight()]
    redirect = sender.config.redirect
    if redirect is not None:  # passes, and says so loudly: `sender --check` and `mailroom check` show it
        checks.append(Check("redirect", True, f"ON (MAILROOM_REDIRECT_TO): {redirect.describe()}"))
    quota_rate = getattr(sender.provider, "quota_rate", None)
    if not s.debug and s.max_send_rate is None:
        rate = quota_rate or FALLBACK_SEND_RATE
        sender.set_send_rate(rate)
    return checks


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    environ = settings.load_environment()
    try:
        s = settings.SenderSettings.from_environ(environ)
        setup_logging("sender", s.log_level, s.log_format)
        settings.warn_unknown_variables(environ, log)
        templates.load_all(s.templates_dir)  # every template checked, debug or not, before stdin is read
        sender = build(s)
        monitor = None if args.check else metrics.start(s, sender)
    except settings.ConfigError as exc:
        settings.exit_on_config_error("sender", exc)
    except templates.TemplateError as exc:
        templates.exit_on_error("sender", exc)
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        print(f"sender: cannot write {exc.filename}: {exc.strerror}; {DISK_FIX}", file=sys.stderr)
        return EXIT_OPERATOR_FAULT
    checks = preflight(sender, s)
    if args.check:
        print("\n".join(render(checks)), flush=True)
        return 0 if all(c.ok for c in checks) else 1
    failed = [c for c in checks if not c.ok]
    if failed:
        # Nothing is read: the collector keeps the tokens queued until the sender can send.
        for check in failed:
            print(f"sender: preflight failed: {check.line()}", file=sys.stderr)
        return settings.CONFIG_EXIT_STATUS
    if sender.config.redirect is not None:
        log.warning("REDIRECT ON: %s; the subject says whom each email was for", sender.config.redirect.describe())
    rate = sender.config.max_send_rate
    log.info(
        "sending %s; %s, %d call(s) in flight, %d destinations per call, deadline %gs",
        "in debug mode (printing, no provider call)" if s.debug else f"through {sender.provider.name.upper()}",
        f"at most {rate:g} emails/s" if rate is not None else "not paced",
        s.concurrency,
        sender.batch_size,
        s.send_deadline_s,
    )

    def on_signal(signum: int, _frame: object) -> None:
        sender.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if monitor is not None:
        monitor.preflight_passed = True
    log.info("ready: preflight passed, reading stdin")
    try:
        return sender.run(sys.stdin.fileno())
    finally:
        sender.provider.close()


if __name__ == "__main__":
    sys.exit(main())
