"""What a token is for: actions are data (the `actions` table), not code.

An action has a name (`magic_link`, the key of the `actions` table and of the templates
folder), a wire number (what the collector writes first on a record: 1 activation and 2
password recovery, as they always were, new ones from 3), the link path its tokens are
signed with, whether the 5-digit code is part of the signed message, whether its emails
carry a link at all, the token lifetime, the cooldown, and the recipient statuses that may
receive it. `Action` is the (number, name) pair that travels on the wire and keys the
sender; `ActionSpec` is the whole registry row.

The six shipped actions are known here without a database (`STANDARD_SPECS`), so that an
app verifies their links with the key alone; an action added with `mailroom actions add`
is known from its row (`load_registry`) or from an `ActionSpec` the app builds itself.
The shipped rows the migration writes hold the same values as `STANDARD_SPECS`
(`tests/integration` compares them when the table exists).

Standard library only: apps import this (through `mailroom.verify`) without the pipeline's
dependencies; `load_registry` takes the app's own psycopg connection.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

NAME_PATTERN = r"[a-z][a-z0-9_]{0,62}"
_NAME = re.compile(NAME_PATTERN)
MAX_NUMBER = 32767  # the `actions.number` column is a smallint
RESERVED = {1: "activation", 2: "password_recovery"}  # their wire numbers never change


class UnknownAction(ValueError):
    """An action name (or number) that is neither a standard action nor in the registry given."""


@dataclass(frozen=True, order=True, slots=True)
class Action:
    """An action as it travels on the wire and keys the sender: its number and its name.

    Ordered by number. Numbers 1 and 2 belong to activation and password_recovery, whose
    wire form and signing bytes are what they always were."""

    number: int
    name: str

    def __post_init__(self) -> None:
        if type(self.number) is not int or not 1 <= self.number <= MAX_NUMBER:
            raise ValueError(f"an action number is 1..{MAX_NUMBER}, not {self.number!r}")
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ValueError(f"an action name is a lowercase letter then up to 62 of a-z, 0-9 and _, not {self.name!r}")
        reserved = RESERVED.get(self.number)
        if reserved is not None and reserved != self.name:
            raise ValueError(f"action number {self.number} is {reserved}, not {self.name}")
        if self.name in _RESERVED_NUMBERS and _RESERVED_NUMBERS[self.name] != self.number:
            raise ValueError(f"{self.name} is action number {_RESERVED_NUMBERS[self.name]}, not {self.number}")

    def __str__(self) -> str:
        return self.name


_RESERVED_NUMBERS = {name: number for number, name in RESERVED.items()}

ACTIVATION = Action(1, "activation")
PASSWORD_RECOVERY = Action(2, "password_recovery")
EMAIL_CHANGE = Action(3, "email_change")
MAGIC_LINK = Action(4, "magic_link")
INVITATION = Action(5, "invitation")
WELCOME = Action(6, "welcome")
STANDARD: tuple[Action, ...] = (ACTIVATION, PASSWORD_RECOVERY, EMAIL_CHANGE, MAGIC_LINK, INVITATION, WELCOME)


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """One row of the `actions` registry.

    `path` is the signed link path (`/magic-link`); `signs_code`: the 5-digit code is part of
    the signed message (and needed to verify and consume); `link`: its emails carry a link
    (false for welcome); `lifetime`: token expiry from creation; `cooldown`: at most one email
    per recipient and action within it (None: MAILROOM_RECOVERY_COOLDOWN); `statuses`: the
    recipient statuses that may receive it (None: a token with no account, as invitations).

    To verify a custom action's links without a database, an app builds its spec:
    `ActionSpec(Action(7, "team_invite"), "/team-invite")`; the fields the verifier does
    not use have defaults."""

    action: Action
    path: str
    signs_code: bool = False
    link: bool = True
    lifetime: timedelta = timedelta(minutes=15)
    cooldown: timedelta | None = None
    statuses: tuple[str, ...] | None = ("active",)
    path_bytes: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path.startswith("/") or not self.path.isascii():
            raise ValueError(f"an action's link path is ASCII starting with '/', not {self.path!r}")
        object.__setattr__(self, "path_bytes", self.path.encode("ascii"))

    @property
    def name(self) -> str:
        return self.action.name

    @property
    def number(self) -> int:
        return self.action.number


# The shipped actions, in one place: the migration's rows hold the same values. Lifetimes:
# the two original ones keep 15 minutes; a sign-in link is as short; an email change is
# confirmed from another mailbox, often later (1 hour); an invitation waits for someone who
# has no account yet (7 days); a welcome has no link, and its lifetime only bounds how late
# it may still go out after an outage (1 day). Cooldowns: MAILROOM_RECOVERY_COOLDOWN for all.
STANDARD_SPECS: Mapping[str, ActionSpec] = {
    spec.name: spec
    for spec in (
        ActionSpec(ACTIVATION, "/activate", lifetime=timedelta(minutes=15), statuses=("provisioned",)),
        ActionSpec(PASSWORD_RECOVERY, "/recover", signs_code=True, lifetime=timedelta(minutes=15)),
        ActionSpec(EMAIL_CHANGE, "/email-change", lifetime=timedelta(hours=1)),
        ActionSpec(MAGIC_LINK, "/magic-link", lifetime=timedelta(minutes=15)),
        ActionSpec(INVITATION, "/invitation", lifetime=timedelta(days=7), statuses=None),
        ActionSpec(WELCOME, "/welcome", link=False, lifetime=timedelta(days=1)),
    )
}
_STANDARD_BY_NUMBER = {spec.number: spec for spec in STANDARD_SPECS.values()}
# What people typed before actions were data (`mailroom verify --action recovery`, numbers).
ALIASES = {"recovery": "password_recovery"}


def spec_for(action: str | int | Action | ActionSpec, registry: Mapping[str, ActionSpec] | None = None) -> ActionSpec:
    """The spec of `action`: itself when a spec; else looked up by name (or number) in
    `registry` first, then among the standard actions. UnknownAction otherwise."""
    if isinstance(action, ActionSpec):
        return action
    if isinstance(action, Action):
        key: str | int = action.name
    elif isinstance(action, bool) or not isinstance(action, (str, int)):
        raise TypeError(f"an action is a name, a number, an Action or an ActionSpec, not {type(action).__name__}")
    else:
        key = ALIASES.get(action, action) if isinstance(action, str) else action
    if isinstance(key, str) and key.isdigit():
        key = int(key)
    if registry:
        if isinstance(key, int):
            found = next((s for s in registry.values() if s.number == key), None)
        else:
            found = registry.get(key)
        if found is not None:
            return found
    standard = _STANDARD_BY_NUMBER.get(key) if isinstance(key, int) else STANDARD_SPECS.get(key)
    if standard is None:
        known = ", ".join(sorted({*STANDARD_SPECS, *(registry or {})}))
        raise UnknownAction(
            f"unknown action {action!r} (known: {known}); a custom action needs its spec "
            "(an ActionSpec, or the registry from mailroom.actions.load_registry)"
        )
    if isinstance(action, Action) and action != standard.action:
        raise UnknownAction(f"{action.name} is action {standard.number} here, not {action.number}")
    return standard


class _Connection(Protocol):
    def execute(self, query: Any, params: Any = ..., /) -> Any: ...


def load_registry(conn: _Connection) -> dict[str, ActionSpec]:
    """Every row of the `actions` table, by name (the query `action_registry` in sql/collector.sql).

    `conn` is a psycopg connection whose search_path reaches mailroom's schema (as
    `mailroom.db.connect` sets it). ValueError names a row that breaks the rules."""
    from mailroom.db import queries  # psycopg is the app's (or the pipeline's): not imported by apps otherwise

    return specs_from_rows(conn.execute(queries("collector.sql")["action_registry"]).fetchall())


def specs_from_rows(rows: Iterable[tuple[Any, ...]]) -> dict[str, ActionSpec]:
    """Registry rows `(name, number, path, signs_code, link, lifetime, cooldown, statuses)` as specs."""
    specs: dict[str, ActionSpec] = {}
    for name, number, path, signs_code, link, lifetime, cooldown, statuses in rows:
        try:
            specs[name] = ActionSpec(
                Action(int(number), name),
                path,
                signs_code=bool(signs_code),
                link=bool(link),
                lifetime=lifetime,
                cooldown=cooldown,
                statuses=None if statuses is None else tuple(str(s) for s in statuses),
            )
        except ValueError as exc:
            raise ValueError(f"the actions row {name!r}: {exc}") from None
    return specs
