"""An app adopts mailroom, end to end, with the real console scripts (issue 18's test).

The app's database has its own `public.users` table (uuid keys) and tables of its own named
`accounts` and `jobs`, as mailroom's are. It runs `mailroom migrate --account-key uuid`,
points `mailroom.recipients` at its users as docs/how-to/integrate.md says, and asks for
each of the six shipped actions with `mailroom.request(...)` from a connection with the
default search_path (qualified names only). `collector --drain | sender` then delivers
them, once with the sender in debug mode and once through `moto_server`; every link
verifies with `mailroom.verify` and is consumed once with `mailroom.consume(...)`, the
pt-BR recipient reads Portuguese, the `de` one English, and the app's own tables are as
they were.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from conftest import FAKE_AWS_ENV, ROOT, TEST_KEY_HEX, prepare_moto_ses, script

from mailroom.verify import verify_link_token

SOURCE = "noreply@example.com"
APP_URL = "https://app.example.com"
SAFETY_S = 120.0  # only a safety net: every wait ends on a process's exit
KEY = bytes.fromhex(TEST_KEY_HEX)

# The app's schema before mailroom: its users, and two tables of its own whose names are
# mailroom's table names too.
APP_SCHEMA = """
CREATE TABLE public.users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email text NOT NULL UNIQUE,
    username text NOT NULL,
    lang text,
    state text NOT NULL DEFAULT 'new' CHECK (state IN ('new', 'confirmed', 'banned'))
);
CREATE TABLE public.accounts (
    id serial PRIMARY KEY,
    owner uuid NOT NULL REFERENCES public.users (id),
    plan text NOT NULL DEFAULT 'free',
    balance_cents bigint NOT NULL DEFAULT 0
);
CREATE INDEX accounts_plan ON public.accounts (plan);
CREATE TABLE public.jobs (
    id bigserial PRIMARY KEY,
    kind text NOT NULL,
    payload jsonb NOT NULL DEFAULT '{}',
    run_at timestamptz NOT NULL DEFAULT '2026-01-01 00:00:00+00'
);
CREATE FUNCTION public.jobs_touch() RETURNS trigger LANGUAGE plpgsql AS
    $$ BEGIN NEW.payload := NEW.payload || '{"touched": true}'; RETURN NEW; END $$;
CREATE TRIGGER jobs_touch BEFORE INSERT OR UPDATE ON public.jobs FOR EACH ROW EXECUTE FUNCTION public.jobs_touch();
"""

# The users, by role in the test: (username, email, lang, state).
USERS = {
    "newbie": ("newbie", "newbie@example.com", None, "new"),  # provisioned: activation
    "ana": ("ana", "ana@example.com", "pt-BR", "confirmed"),  # Portuguese
    "hans": ("hans", "hans@example.com", "de", "confirmed"),  # no German templates: English
    "grace": ("grace", "grace@example.com", None, "confirmed"),  # changes her address
    "joao": ("joao", "joao@example.com", "pt_BR", "confirmed"),  # a POSIX spelling: pt-BR
    "lee": ("lee", "lee@example.com", "", "confirmed"),  # an empty lang: the default
}
NEW_ADDRESS = "grace.new@example.com"
INVITEE = "guest@example.com"

# The view, as docs/how-to/integrate.md writes it for "a plain users table with uuid keys".
RECIPIENTS_VIEW = """
CREATE OR REPLACE VIEW mailroom.recipients AS
SELECT id AS account, email, username AS login, lang AS locale,
       CASE WHEN state = 'confirmed' THEN 'active' ELSE 'provisioned' END AS status
  FROM public.users
"""

# (action, user or None, request's email, the address it goes to, the locale of its templates)
REQUESTS = [
    ("activation", "newbie", None, "newbie@example.com", "en"),
    ("password_recovery", "ana", None, "ana@example.com", "pt"),
    ("email_change", "grace", NEW_ADDRESS, NEW_ADDRESS, "en"),
    ("magic_link", "ana", None, "ana@example.com", "pt"),
    ("magic_link", "hans", None, "hans@example.com", "en"),
    ("magic_link", "joao", None, "joao@example.com", "pt"),
    ("invitation", None, INVITEE, INVITEE, "en"),
    ("welcome", "ana", None, "ana@example.com", "pt"),
    ("welcome", "hans", None, "hans@example.com", "en"),
    ("welcome", "lee", None, "lee@example.com", "en"),
]
PATHS = {
    "activation": "/activate",
    "password_recovery": "/recover",
    "email_change": "/email-change",
    "magic_link": "/magic-link",
    "invitation": "/invitation",
}
SES_BASE = {"activation": "activationv1", "password_recovery": "passwordrecoveryv1"}


def ses_name(action: str, locale: str) -> str:
    base = SES_BASE.get(action, f"{action}v1")
    return base if locale == "en" else f"{base}-{locale}"


@dataclass
class Email:
    action: str
    to: str
    template: str  # the SES template name the sender chose
    data: dict[str, Any]
    subject: str | None = None  # debug mode only: the rendered email
    text: str = ""
    html: str = ""


# -- the app's side ------------------------------------------------------------------------


def app_connect(url: str) -> psycopg.Connection:
    """The app's connection: PostgreSQL's default search_path, mailroom's names qualified."""
    conn = psycopg.connect(url, autocommit=True)
    assert conn.execute("SHOW search_path").fetchone() == ('"$user", public',)
    return conn


def create_app(app: psycopg.Connection) -> dict[str, Any]:
    app.execute(APP_SCHEMA)
    ids = {}
    for role, (username, email, lang, state) in USERS.items():
        (ids[role],) = app.execute(
            "INSERT INTO users (email, username, lang, state) VALUES (%s, %s, %s, %s) RETURNING id",
            (email, username, lang, state),
        ).fetchone()
    app.execute("INSERT INTO accounts (owner, plan, balance_cents) VALUES (%s, 'pro', 1200)", (ids["ana"],))
    app.execute("INSERT INTO accounts (owner) VALUES (%s)", (ids["hans"],))
    app.execute("INSERT INTO jobs (kind, payload) VALUES ('report', '{\"month\": 11}'), ('cleanup', '{}')")
    return ids


def public_state(app: psycopg.Connection) -> dict[str, Any]:
    """Everything in public: its objects, the definitions of the app's tables, and their rows."""
    state: dict[str, Any] = {}
    state["objects"] = app.execute(
        "SELECT c.relname, c.relkind::text FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace "
        "UNION ALL SELECT p.oid::regprocedure::text, 'function' FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace "
        "UNION ALL SELECT t.typname, 'type' FROM pg_type t WHERE t.typnamespace = 'public'::regnamespace "
        "ORDER BY 1, 2"
    ).fetchall()
    for table in ("accounts", "jobs", "users"):
        oid = f"public.{table}"
        state[table] = {
            "columns": app.execute(
                "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid) "
                "FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
                "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                (oid,),
            ).fetchall(),
            "constraints": app.execute(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass ORDER BY 1",
                (oid,),
            ).fetchall(),
            "indexes": app.execute(
                "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index "
                "WHERE indrelid = %s::regclass ORDER BY 1",
                (oid,),
            ).fetchall(),
            "triggers": app.execute(
                "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = %s::regclass ORDER BY 1", (oid,)
            ).fetchall(),
            "rows": app.execute(f"SELECT to_jsonb(t)::text FROM public.{table} t ORDER BY 1").fetchall(),
        }
    return state


def request_all(app: psycopg.Connection, ids: dict[str, Any], plain_activation: bool = False) -> None:
    """mailroom.request() for each of REQUESTS; with plain_activation, the activation token is
    a plain INSERT INTO mailroom.tokens instead (which keeps working)."""
    for action, user, email, _, _ in REQUESTS:
        if plain_activation and action == "activation":
            app.execute("INSERT INTO mailroom.tokens (action, account) VALUES ('activation', %s)", (ids[user],))
            continue
        args = ["%s"] + (["account => %s"] if user else []) + (["email => %s"] if email else [])
        params = [action] + ([ids[user]] if user else []) + ([email] if email else [])
        (token,) = app.execute(f"SELECT mailroom.request({', '.join(args)})", params).fetchone()
        assert isinstance(token, int)


def check_and_consume(app: psycopg.Connection, ids: dict[str, Any], emails: list[Email]) -> None:
    """Each email against REQUESTS: its template, and its link verified and consumed once."""
    assert sorted((e.action, e.to) for e in emails) == sorted((a, to) for a, _, _, to, _ in REQUESTS)
    for action, user, _, to, locale in REQUESTS:
        (email,) = [e for e in emails if (e.action, e.to) == (action, to)]
        assert email.template == ses_name(action, locale), (action, to, email.template)
        if action == "welcome":
            continue  # no link: nothing to consume (its email has none: checked in debug mode)
        code = email.data.get("code")  # the data carry it for every action but activation
        assert (code is None) == (action == "activation"), (action, to)
        secret = verify_link_token(KEY, email.data["secret"], action, code)
        got = app.execute("SELECT * FROM mailroom.consume(%s, %s, %s)", (action, secret, code)).fetchall()
        assert len(got) == 1, (action, to, got)
        (_token, account, address) = got[0]
        assert account == (ids[user] if user else None), (action, to)
        assert address == to, (action, to)
        again = app.execute("SELECT * FROM mailroom.consume(%s, %s, %s)", (action, secret, code)).fetchall()
        assert again == [], (action, to)


# -- the programs --------------------------------------------------------------------------


def programs_env(base_env: dict[str, str], url: str, out: Path, **extra: str) -> dict[str, str]:
    return {
        **base_env,
        "MAILROOM_DATABASE_URL": url,
        "MAILROOM_SECRET_KEY": TEST_KEY_HEX,
        "MAILROOM_APP_URL": APP_URL,
        "MAILROOM_RECOVERY_COOLDOWN": "0",  # the second round asks again for the same recipients
        "MAILROOM_SES_OUTPUT_PATH": str(out),
        "MAILROOM_SES_SOURCE": SOURCE,
        "MAILROOM_SES_CONFIG_SET": "",
        "MAILROOM_SES_MAX_SEND_RATE": "1000",
        "MAILROOM_LOG_LEVEL": "info",
        **extra,
    }


def migrate(env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(
        [script("mailroom"), "migrate", "--account-key", "uuid"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=SAFETY_S,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def drain_into_sender(env: dict[str, str], workdir: Path) -> str:
    """`collector --drain | sender`; both must exit 0; the sender's stdout."""
    workdir.mkdir()
    clog, slog, sout = workdir / "collector.stderr", workdir / "sender.stderr", workdir / "sender.stdout"
    with open(clog, "wb") as c, open(slog, "wb") as s, open(sout, "wb") as o:
        collector = subprocess.Popen(
            [script("collector"), "--drain"],
            env=env,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=c,
        )
        assert collector.stdout is not None
        sender = subprocess.Popen([script("sender")], env=env, cwd=workdir, stdin=collector.stdout, stdout=o, stderr=s)
        collector.stdout.close()  # the pipe belongs to the two children now
        try:
            codes = (collector.wait(SAFETY_S), sender.wait(SAFETY_S))
        finally:
            for proc in (collector, sender):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    logs = f"--- collector ---\n{clog.read_text()}\n--- sender ---\n{slog.read_text()}"
    assert codes == (0, 0), logs
    assert (Path(env["MAILROOM_SES_OUTPUT_PATH"]) / "rejects.jsonl").read_text() == "", logs
    return sout.read_text()


_BULK = re.compile(r"^bulk send: \d+ (\w+) emails?(?: \(([\w-]+)\))? \(debug: nothing is sent\)$")
_TEMPLATE = re.compile(r"^  template:\s+(\S+)$")
_TO = re.compile(r"^  \[\d+/\d+\] to (\S+)$")
_DATA = re.compile(r"^        data:    (\{.*\})$")
_SUBJECT = re.compile(r"^        subject: (.*)$")
_HTML = re.compile(r"^        html \|(?: (.*))?$")
_TEXT = re.compile(r"^        \|(?: (.*))?$")


def debug_emails(stdout: str) -> list[Email]:
    """The emails the debug sender printed: each with its template, data and rendering."""
    emails: list[Email] = []
    action = template = None
    for line in stdout.splitlines():
        if m := _BULK.match(line):
            action, template = m.group(1), None
        elif m := _TEMPLATE.match(line):
            template = m.group(1)
        elif m := _TO.match(line):
            assert action and template, line
            emails.append(Email(action, m.group(1), template, {}))
        elif m := _DATA.match(line):
            emails[-1].data = json.loads(m.group(1))
        elif m := _SUBJECT.match(line):
            emails[-1].subject = m.group(1)
        elif m := _HTML.match(line):
            emails[-1].html += (m.group(1) or "") + "\n"
        elif m := _TEXT.match(line):
            emails[-1].text += (m.group(1) or "") + "\n"
    return emails


def moto_emails(url: str) -> list[Email]:
    """What moto_server accepted: every destination of every templated send."""
    with urllib.request.urlopen(url + "/moto-api/data.json", timeout=10) as response:
        data = json.load(response)
    action_of = {ses_name(a, loc): a for a, _, _, _, loc in REQUESTS}
    found = []
    for message in data.get("ses", {}).get("TemplateMessage", []):
        for dest in message["destinations"]:
            for to in dest["Destination"]["ToAddresses"]:
                template = message["template"]
                found.append(
                    Email(action_of.get(template, "?"), to, template, json.loads(dest["ReplacementTemplateData"]))
                )
    return found


def subject(action: str, locale: str) -> str:
    folder = ROOT / "templates" / action / ("" if locale == "en" else locale)
    return (folder / "subject.txt").read_text(encoding="utf-8").strip()


def check_rendering(emails: list[Email]) -> None:
    """The debug renderings: the locale's subject, the link (or none for welcome), the code."""
    for action, _, _, to, locale in REQUESTS:
        (email,) = [e for e in emails if (e.action, e.to) == (action, to)]
        assert email.subject == subject(action, locale), (action, to)
        token = email.data["secret"]
        if action == "welcome":
            for body in (email.text, email.html):
                assert token not in body and "token=" not in body and APP_URL not in body, (action, to)
            continue
        # The link's token is the one the app verifies (check_and_consume takes it from the data).
        link = re.compile(re.escape(f"{APP_URL}{PATHS[action]}?token=") + r"([A-Za-z0-9_-]+)")
        assert {m.group(1) for m in link.finditer(email.text + email.html)} == {token}, (action, to)
        if action == "password_recovery":
            assert re.search(r"\b" + email.data["code"] + r"\b", email.text), (action, to)
    assert "Olá, ana" in next(e for e in emails if e.to == "ana@example.com" and e.action == "magic_link").text
    assert "Hello hans" in next(e for e in emails if e.to == "hans@example.com" and e.action == "magic_link").text


def test_an_app_with_its_own_uuid_users_installs_mailroom_and_gets_each_action_verified_consumed_and_localised(
    empty_database_url: str, base_env: dict[str, str], tmp_path: Path, moto_server: str
) -> None:
    url = empty_database_url
    with app_connect(url) as app:
        ids = create_app(app)
        before = public_state(app)

        env = programs_env(base_env, url, tmp_path / "debug-out", MAILROOM_DEBUG="true")
        migrate(env, tmp_path)
        app.execute(RECIPIENTS_VIEW)
        assert public_state(app) == before  # mailroom made nothing in public

        # Round 1: the debug sender.
        request_all(app, ids)
        emails = debug_emails(drain_into_sender(env, tmp_path / "debug"))
        check_and_consume(app, ids, emails)
        check_rendering(emails)

        # Round 2: the same requests, through moto_server with the pushed templates.
        env = {
            **programs_env(base_env, url, tmp_path / "ses-out", MAILROOM_DEBUG="false"),
            **FAKE_AWS_ENV,
            "AWS_ENDPOINT_URL_SES": moto_server,
        }
        ses = prepare_moto_ses(env, moto_server, tmp_path, SOURCE)
        pushed = {t["Name"] for t in ses.list_templates()["TemplatesMetadata"]}
        assert {ses_name(a, loc) for a, _, _, _, loc in REQUESTS} <= pushed
        for action, _, _, _, locale in REQUESTS:
            template = ses.get_template(TemplateName=ses_name(action, locale))["Template"]
            assert template["SubjectPart"].endswith(subject(action, locale)), (action, locale)
            if action == "welcome":
                assert "token=" not in template["TextPart"] + template["HtmlPart"]
        request_all(app, ids, plain_activation=True)
        drain_into_sender(env, tmp_path / "ses")
        check_and_consume(app, ids, moto_emails(moto_server))

        # A second migrate changes nothing; the app's tables are as they were.
        migrate(env, tmp_path)
        assert public_state(app) == before
