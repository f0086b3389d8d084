"""`mailroom templates push|render|check|preview`.

The link base URL is not baked into the SES templates: they use `{{app_url}}`, which the
sender fills from MAILROOM_APP_URL in each call's DefaultTemplateData. Changing the URL
therefore needs no push; changing the wording does.

All read the templates from MAILROOM_TEMPLATES_DIR when it is set (the shipped ones
otherwise). `push` runs every check of `check` first (mailroom.template_checks): a problem is
one line naming the file, exit status 2, and nothing is pushed. `preview` serves the rendered
emails on a local web page (mailroom.preview) until Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path

from mailroom import settings, template_checks, templates
from mailroom.actions import ACTIVATION, PASSWORD_RECOVERY, Action
from mailroom.template_fixtures import Sample
from mailroom.templates import EmailTemplate

PUSH_VARIABLES = (
    "MAILROOM_SES_TEMPLATE_ACTIVATION",
    "MAILROOM_SES_TEMPLATE_RECOVERY",
    "MAILROOM_TEMPLATES_DIR",
    "MAILROOM_REDIRECT_TO",
    "MAILROOM_APP_URL",
    "MAILROOM_LOG_LEVEL",
)
RENDER_VARIABLES = ("MAILROOM_APP_URL", "MAILROOM_TEMPLATES_DIR", "MAILROOM_LOG_LEVEL")
CHECK_EXIT_STATUS = 2  # an operator's configuration to correct, as for invalid settings
PREVIEW_PORT = 8025
ACTION_NAMES = {
    "activation": ACTIVATION,
    "1": ACTIVATION,
    "password_recovery": PASSWORD_RECOVERY,
    "recovery": PASSWORD_RECOVERY,
    "2": PASSWORD_RECOVERY,
}
SAMPLE_LOGIN = 'Ada <b>"Lovelace"</b>'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="templates_command", required=True, metavar="SUBCOMMAND")
    sub.add_parser(
        "push",
        help="create or update both SES templates from the templates folder (idempotent)",
        description="Create or update both SES templates from the templates folder "
        "(MAILROOM_TEMPLATES_DIR, or the shipped templates when it is empty), CSS inlined, after every check "
        "of `mailroom templates check` passed (else nothing is pushed, exit 2; idempotent). "
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
    sub.add_parser(
        "check",
        help="check every template (variables, https links, subject, HTML size, parts per locale); exit 2 on a problem",
        description="Check every action's template in every locale before anything is pushed or sent: each "
        "part exists and stays in the supported Handlebars subset; every variable is in the template data; "
        "every link is https:// or starts with {{app_url}}; rendered with the fixtures (fixtures.json next to "
        f"the templates) the subject is one line of at most {template_checks.SUBJECT_MAX_CHARS} characters and "
        f"the HTML part, CSS inlined, is under {template_checks.HTML_MAX_BYTES} bytes. Prints one line per "
        "action and locale and exits 0, or one line per problem on stderr and exits 2.",
    )
    preview = sub.add_parser(
        "preview",
        help="serve every email rendered with its fixtures on a local web page, reloaded on edits",
        description="Serve a local web page showing every action in every locale rendered with its "
        "fixture data (templates/<action>/fixtures.json): the subject, the link and the code, the text "
        "part and the HTML part (CSS inlined) at desktop (600 px) or mobile (375 px) width, light or "
        "dark. The page reloads when a file in the templates folder changes. Runs until Ctrl-C; its "
        "URL is logged on stderr.",
    )
    preview.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)"
    )
    preview.add_argument(
        "--port",
        type=int,
        default=PREVIEW_PORT,
        help=f"port to listen on; 0 picks a free one (default: {PREVIEW_PORT})",
    )


def handle(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    try:
        if args.templates_command == "push":
            return push(environ)
        if args.templates_command == "check":
            return check(environ)
        if args.templates_command == "preview":
            return preview(args.host, args.port, environ)
        return render(ACTION_NAMES[args.action], args.login, environ)
    except templates.TemplateError as exc:
        templates.exit_on_error(f"mailroom templates {args.templates_command}", exc)


def _directory(environ: Mapping[str, str]) -> Path | None:
    directory: Path | None = settings.read(environ, "MAILROOM_TEMPLATES_DIR")["MAILROOM_TEMPLATES_DIR"]
    return directory


def _app_url(environ: Mapping[str, str]) -> str:
    app_url: str = settings.read(environ, "MAILROOM_APP_URL")["MAILROOM_APP_URL"]
    return app_url


def _load_all(environ: Mapping[str, str]) -> dict[str, EmailTemplate]:
    """Every template from MAILROOM_TEMPLATES_DIR (or the shipped ones), all checked."""
    return templates.load_all(_directory(environ))


def _problems(program: str, environ: Mapping[str, str]) -> bool:
    """Print every check's problem on stderr, one line each; True when there was one."""
    problems = template_checks.run(_directory(environ), _app_url(environ))
    for problem in problems:
        print(f"{program}: {problem.line()}", file=sys.stderr)
    return bool(problems)


def check(environ: Mapping[str, str]) -> int:
    if _problems("mailroom templates check", environ):
        return CHECK_EXIT_STATUS
    directory = _directory(environ)
    for action in (ACTIVATION, PASSWORD_RECOVERY):
        for locale in templates.locales(action.name, directory):
            t = templates.load(action.name, directory, locale)
            links = len(template_checks.html_links(t.html))
            print(
                f"ok {action.name} ({locale}): subject, text and HTML ({len(t.html.encode())} bytes inlined, "
                f"{links} link{'s' if links != 1 else ''}) pass every check"
            )
    return 0


def preview(host: str, port: int, environ: Mapping[str, str]) -> int:
    from mailroom import preview as server  # http.server is loaded only to preview

    return server.serve(host, port, _directory(environ), _app_url(environ))


def push(environ: Mapping[str, str]) -> int:
    from mailroom.aws import make_client  # boto3 is loaded only to push

    names = settings.read(
        environ, "MAILROOM_SES_TEMPLATE_ACTIVATION", "MAILROOM_SES_TEMPLATE_RECOVERY", "MAILROOM_REDIRECT_TO"
    )
    by_action = {
        ACTIVATION: names["MAILROOM_SES_TEMPLATE_ACTIVATION"],
        PASSWORD_RECOVERY: names["MAILROOM_SES_TEMPLATE_RECOVERY"],
    }
    if _problems("mailroom templates push", environ):  # before any call: a bad template pushes nothing
        return CHECK_EXIT_STATUS
    loaded = _load_all(environ)
    redirect_note = ""
    if names["MAILROOM_REDIRECT_TO"]:
        # only then: a sender older than the variable would fail to render such a template
        from mailroom.redirect import SUBJECT_TAG, with_subject_tags

        loaded = with_subject_tags(loaded)
        redirect_note = f", subject starting with {SUBJECT_TAG} for MAILROOM_REDIRECT_TO"
    client = make_client()
    for action, name in by_action.items():
        t = loaded[action.name]
        body = {"TemplateName": name, "SubjectPart": t.subject, "TextPart": t.text, "HtmlPart": t.html}
        try:
            client.update_template(Template=body)
            print(f"updated SES template {name} ({action.name}{redirect_note})")
        except client.exceptions.TemplateDoesNotExistException:
            client.create_template(Template=body)
            print(f"created SES template {name} ({action.name}{redirect_note})")
    return 0


def render(action: Action, login: str, environ: Mapping[str, str]) -> int:
    message = _load_all(environ)[action.name].render(Sample("--login", login).data(action, _app_url(environ)))
    print(
        f"Subject: {message['subject']}\n\n--- text/plain ---\n{message['text'].rstrip()}\n\n"
        f"--- text/html ---\n{message['html'].rstrip()}"
    )
    return 0
