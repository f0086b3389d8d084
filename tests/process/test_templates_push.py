"""The real `mailroom templates push` against `moto_server`: one SES template per action and locale,
named as the sender will ask for them (mailroom.templates.ses_template_name), and idempotent."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import boto3
from conftest import FAKE_AWS_ENV, script

from mailroom import templates

STANDARD = ("activation", "email_change", "invitation", "magic_link", "password_recovery", "welcome")


def push(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [script("mailroom"), "templates", "push"], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def ses(moto_server: str):  # -> boto3 SES client
    return boto3.client(
        "ses",
        endpoint_url=moto_server,
        region_name=FAKE_AWS_ENV["AWS_REGION"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_push_creates_one_ses_template_per_action_and_locale_then_updates_them(moto_server, base_env, tmp_path):
    env = {**base_env, **FAKE_AWS_ENV, "AWS_ENDPOINT_URL_SES": moto_server}
    first = push(env, tmp_path)
    assert first.returncode == 0, first.stderr
    expected = {
        "activationv1": ("activation", "en"),
        "activationv1-pt": ("activation", "pt"),
        "passwordrecoveryv1": ("password_recovery", "en"),
        "passwordrecoveryv1-pt": ("password_recovery", "pt"),
        **{f"{a}v1": (a, "en") for a in STANDARD if a not in ("activation", "password_recovery")},
        **{f"{a}v1-pt": (a, "pt") for a in STANDARD if a not in ("activation", "password_recovery")},
    }
    assert len(expected) == 12
    assert sorted(first.stdout.splitlines()) == sorted(
        f"created SES template {name} ({action}, {locale})" for name, (action, locale) in expected.items()
    )
    client = ses(moto_server)
    assert {t["Name"] for t in client.list_templates()["TemplatesMetadata"]} == set(expected)
    for name, (action, locale) in expected.items():
        pushed = client.get_template(TemplateName=name)["Template"]
        shipped = templates.load(action, None, locale)
        assert (pushed["SubjectPart"], pushed["TextPart"], pushed["HtmlPart"]) == (
            shipped.subject,
            shipped.text,
            shipped.html,
        )
    assert client.get_template(TemplateName="magic_linkv1-pt")["Template"]["SubjectPart"] == "Seu link de acesso"
    assert "{{secret}}" not in client.get_template(TemplateName="welcomev1")["Template"]["HtmlPart"]

    again = push(env, tmp_path)
    assert again.returncode == 0, again.stderr
    assert sorted(again.stdout.splitlines()) == sorted(
        f"updated SES template {name} ({action}, {locale})" for name, (action, locale) in expected.items()
    )


def test_push_names_the_original_two_by_their_settings_and_pushes_an_action_folder_of_your_own(
    moto_server, base_env, tmp_path
):
    mine = tmp_path / "mine"
    shutil.copytree(templates.template_dir(), mine)
    shutil.copytree(mine / "welcome", mine / "order_shipped")
    shutil.rmtree(mine / "order_shipped" / "pt")
    (mine / "order_shipped" / "fixtures.json").write_text('{"link": false, "samples": [{"name": "a", "login": "a"}]}')
    shutil.copytree(mine / "activation" / "pt", mine / "activation" / "pt-BR")
    env = {
        **base_env,
        **FAKE_AWS_ENV,
        "AWS_ENDPOINT_URL_SES": moto_server,
        "MAILROOM_TEMPLATES_DIR": str(mine),
        "MAILROOM_SES_TEMPLATE_ACTIVATION": "app-activation",
        "MAILROOM_SES_TEMPLATE_RECOVERY": "app-recovery",
    }
    pushed = push(env, tmp_path)
    assert pushed.returncode == 0, pushed.stderr
    names = {t["Name"] for t in ses(moto_server).list_templates()["TemplatesMetadata"]}
    assert {"app-activation", "app-activation-pt", "app-activation-pt-BR", "app-recovery", "app-recovery-pt"} <= names
    assert "order_shippedv1" in names and "order_shippedv1-pt" not in names
    assert not {"activationv1", "passwordrecoveryv1"} & names
    assert len(names) == 14
