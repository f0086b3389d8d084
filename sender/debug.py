"""The debug provider: prints each bulk send it would make to stdout, and calls nothing.

No AWS call and no credentials. Where the local templates exist, each message's rendered
subject, text body and HTML body (CSS inlined, as sent) are printed too, so a developer sees
the email itself.

Each bulk send is one block, from RULE to END_RULE, written at once: a program that shows
this output among lines of its own (`mailroom demo`) can tell where a block ends and
never print inside one (the frame is in `mailroom.debug_output`).
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Mapping
from typing import TextIO

from mailroom.checks import Check
from mailroom.debug_output import END_RULE, RULE
from mailroom.templates import DEFAULT_LOCALE, EmailTemplate
from sender.provider import BulkSend, DestinationResult


class DebugProvider:
    name = "debug"

    def __init__(self, out: TextIO | None = None, templates: Mapping[str, EmailTemplate] | None = None) -> None:
        self.out = out or sys.stdout
        self.templates = templates
        self._lock = threading.Lock()

    def address(self, email: str) -> str:
        """Printed as stored: nothing goes to a mail server."""
        return email

    def preflight(self) -> list[Check]:
        return [Check("provider", True, "debug mode: emails are printed, no provider is called")]

    def close(self) -> None:
        """Nothing to release."""

    def send_bulk(self, send: BulkSend) -> list[DestinationResult]:
        n = len(send.destinations)
        lines = [
            RULE,
            f"bulk send: {n} {send.action.name} email{'s' if n != 1 else ''}{_locale(send)} (debug: nothing is sent)",
            f"  template:          {send.template}",
            f"  configuration set: {send.config_set or '(none)'}",
            f"  source:            {send.source}",
            f"  default data:      {send.default_data}",
        ]
        template = send.local_template(self.templates)
        defaults = json.loads(send.default_data)
        for i, dest in enumerate(send.destinations, 1):
            lines.append(f"  [{i}/{n}] to {dest.email}")
            lines.append(f"        data:    {dest.data}")
            if template is not None:
                message = template.render({**defaults, **json.loads(dest.data)})
                lines.append(f"        subject: {message['subject']}")
                lines.extend(
                    "        | " + row if row else "        |" for row in message["text"].rstrip("\n").split("\n")
                )
                lines.extend(
                    "        html | " + row if row else "        html |"
                    for row in message["html"].rstrip("\n").split("\n")
                )
        lines.append(END_RULE)
        with self._lock:
            self.out.write("\n".join(lines) + "\n")
            self.out.flush()
        return [DestinationResult("Success") for _ in send.destinations]


def _locale(send: BulkSend) -> str:
    return "" if send.locale == DEFAULT_LOCALE else f" ({send.locale})"
