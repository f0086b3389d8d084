"""`mailroom demo` prints the sender's emails whole: its narration never lands inside one."""

from __future__ import annotations

import io
import json

from demo_output import blocks

from mailroom import templates
from mailroom.actions import ACTIVATION, PASSWORD_RECOVERY
from mailroom.commands.demo import Inbox, Screen, SenderOutput
from mailroom.debug_output import END_RULE
from mailroom.templates import default_template_data
from sender.debug import DebugProvider
from sender.provider import BulkSend, Destination


def sender_output() -> str:
    """What the debug sender prints for two bulk sends (three emails), templates rendered."""
    out = io.StringIO()
    provider = DebugProvider(out, templates.load_all())
    for action, logins in ((ACTIVATION, ["ada", "bob"]), (PASSWORD_RECOVERY, ["ada"])):
        destinations = [
            Destination(
                f"{login}@example.com",
                json.dumps({"login": login, "login_html": login, "secret": "S" * 86, "code": "12345"}),
            )
            for login in logins
        ]
        provider.send_bulk(
            BulkSend(
                action, "t", "noreply@example.com", "", default_template_data("https://app.example.com"), destinations
            )
        )
    return out.getvalue()


def test_narration_said_between_any_two_lines_of_the_sender_lands_between_whole_emails() -> None:
    printed = sender_output()
    screen_out = io.StringIO()
    screen = Screen(screen_out)
    output = SenderOutput(screen, Inbox())
    for n, line in enumerate(printed.splitlines(keepends=True)):
        screen.say(f"narration {n}")  # the demo's main thread may speak at any moment
        output.feed(line)
    output.close()
    found, outside = blocks(screen_out.getvalue())
    assert "".join(found) == printed and len(found) == 2
    assert [line for line in outside if not line.startswith("[demo] narration ")] == []


def test_an_email_reaches_the_inbox_only_once_its_whole_bulk_send_is_on_the_screen() -> None:
    printed = sender_output().splitlines(keepends=True)
    first_end = printed.index(END_RULE + "\n")
    screen_out, inbox = io.StringIO(), Inbox()
    output = SenderOutput(Screen(screen_out), inbox)
    for line in printed[:first_end]:
        output.feed(line)
    assert inbox.emails == {} and screen_out.getvalue() == ""  # narration waiting on it still waits
    output.feed(printed[first_end])
    assert screen_out.getvalue() == "".join(printed[: first_end + 1])
    assert set(inbox.emails) == {("activation", "ada@example.com"), ("activation", "bob@example.com")}


def test_a_bulk_send_cut_short_by_the_end_of_the_output_is_still_printed() -> None:
    printed = sender_output().splitlines(keepends=True)
    cut = printed[: printed.index(END_RULE + "\n")]
    screen_out = io.StringIO()
    output = SenderOutput(Screen(screen_out), Inbox())
    for line in cut:
        output.feed(line)
    output.close()
    assert screen_out.getvalue() == "".join(cut)
