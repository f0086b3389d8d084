"""`mailroom templates push` and `mailroom templates render ACTION`.

The link base URL is not baked into the SES templates: they use `{{app_url}}`, which the
sender fills from MAILROOM_APP_URL in each call's DefaultTemplateData. Changing the URL
therefore needs no push; changing the wording does.

Both read the templates from MAILROOM_TEMPLATES_DIR when it is set (the shipped ones
otherwise), and check every one of them first: a problem is one line naming the file and
the line, exit status 2, and nothing is pushed.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping

from mailroom import settings, templates
from mailroom.signing import Action
from mailroom.templates import EmailTemplate, default_template_data, template_data
from mailroom.wire import Record

PUSH_VARIABLES = (
    "MAILROOM_SES_TEMPLATE_ACTIVATION",
    "MAILROOM_SES_TEMPLATE_RECOVERY",
    "MAILROOM_TEMPLATES_DIR",
    "MAILROOM_REDIRECT_TO",
    "MAILROOM_LOG_LEVEL",
)
RENDER_VARIABLES = ("MAILROOM_APP_URL", "MAILROOM_TEMPLATES_DIR", "MAILROOM_LOG_LEVEL")
ACTION_NAMES = {
    "activation": Action.ACTIVATION,
    "1": Action.ACTIVATION,
    "password_recovery": Action.PASSWORD_RECOVERY,
    "recovery": Action.PASSWORD_RECOVERY,
    "2": Action.PASSWORD_RECOVERY,
}
SAMPLE_LOGIN = 'Ada <b>"Lovelace"</b>'
SAMPLE_SECRET = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8aH0JcHFNfvoS14NYH1nxRRX8Z5XBVz34bO5O-ngKuFQ"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="templates_command", required=True, metavar="SUBCOMMAND")
    sub.add_parser(
        "push",
        help="create or update both SES templates from the templates folder (idempotent)",
        description="Create or update both SES templates from the templates folder "
        "(MAILROOM_TEMPLATES_DIR, or the shipped templates when it is empty), all checked first (idempotent). "
        "With MAILROOM_REDIRECT_TO set (staging), every subject is pushed starting with "
        "{{{redirect_prefix}}}, which the redirecting sender fills with `[to: original@address] `. "
        "AWS is configured by boto3's standard chain (AWS_REGION, credentials, "
        "AWS_ENDPOINT_URL_SES).",
    )
    render = sub.add_parser(
        "render",
        help="print a message rendered locally with sample data",
        description="Render ACTION's subject, text and HTML bodies locally with sample "
        "data, with SES's Handlebars semantics ({{x}} escaped, {{{x}}} raw).",
    )
    render.add_argument(
        "action",
        metavar="ACTION",
        choices=sorted(ACTION_NAMES),
        help="activation or password_recovery (also: recovery, 1, 2)",
    )
    render.add_argument("--login", default=SAMPLE_LOGIN, help="sample login (default shows the escaping)")


def handle(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    try:
        if args.templates_command == "push":
            return push(environ)
        return render(ACTION_NAMES[args.action], args.login, environ)
    except templates.TemplateError as exc:
        templates.exit_on_error(f"mailroom templates {args.templates_command}", exc)


def _load_all(environ: Mapping[str, str]) -> dict[Action, EmailTemplate]:
    """Every template from MAILROOM_TEMPLATES_DIR (or the shipped ones), all checked."""
    return templates.load_all(settings.read(environ, "MAILROOM_TEMPLATES_DIR")["MAILROOM_TEMPLATES_DIR"])


def push(environ: Mapping[str, str]) -> int:
    from mailroom.aws import make_client  # boto3 is loaded only to push

    names = settings.read(
        environ, "MAILROOM_SES_TEMPLATE_ACTIVATION", "MAILROOM_SES_TEMPLATE_RECOVERY", "MAILROOM_REDIRECT_TO"
    )
    by_action = {
        Action.ACTIVATION: names["MAILROOM_SES_TEMPLATE_ACTIVATION"],
        Action.PASSWORD_RECOVERY: names["MAILROOM_SES_TEMPLATE_RECOVERY"],
    }
    loaded = _load_all(environ)  # before any call: a bad template pushes nothing
    redirect_note = ""
    if names["MAILROOM_REDIRECT_TO"]:
        # only then: a sender older than the variable would fail to render such a template
        from mailroom.redirect import SUBJECT_TAG, with_subject_tags

        loaded = with_subject_tags(loaded)
        redirect_note = f", subject starting with {SUBJECT_TAG} for MAILROOM_REDIRECT_TO"
    client = make_client()
    for action, name in by_action.items():
        t = loaded[action]
        body = {"TemplateName": name, "SubjectPart": t.subject, "TextPart": t.text, "HtmlPart": t.html}
        try:
            client.update_template(Template=body)
            print(f"updated SES template {name} ({action.db_name}{redirect_note})")
        except client.exceptions.TemplateDoesNotExistException:
            client.create_template(Template=body)
            print(f"created SES template {name} ({action.db_name}{redirect_note})")
    return 0


def sample_data(action: Action, login: str, app_url: str) -> dict[str, str]:
    record = Record(action, "ada@example.com", login, SAMPLE_SECRET, "12345")
    return {**json.loads(default_template_data(app_url)), **json.loads(template_data(record))}


def render(action: Action, login: str, environ: Mapping[str, str]) -> int:
    app_url = settings.read(environ, "MAILROOM_APP_URL")["MAILROOM_APP_URL"]
    message = _load_all(environ)[action].render(sample_data(action, login, app_url))
    print(
        f"Subject: {message['subject']}\n\n--- text/plain ---\n{message['text'].rstrip()}\n\n"
        f"--- text/html ---\n{message['html'].rstrip()}"
    )
    return 0
