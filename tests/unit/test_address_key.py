"""The suppression list's key (mailroom/suppressions.py): one key per mailbox, whatever the
spelling of its domain; the local part as written."""

from __future__ import annotations

import pytest

from mailroom.suppressions import NotAnAddress, address_key


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("Ada@Example.COM", "Ada@example.com"),
        ("zoë@bücher.de", "zoë@xn--bcher-kva.de"),
        ("zoë@Bücher.DE", "zoë@XN--BCHER-KVA.de"),
        ("user@例え.JP", "user@xn--r8jz45g.jp"),
        ("strange@local@Example.com", "strange@local@example.com"),  # the domain is after the last @
    ],
)
def test_spellings_of_one_mailbox_share_a_key(one: str, other: str) -> None:
    assert address_key(one) == address_key(other)


def test_the_key_keeps_the_local_part_as_written_and_the_domain_in_lower_case_a_labels() -> None:
    assert address_key("Zoë.Smith@Bücher.de") == "Zoë.Smith@xn--bcher-kva.de"


def test_local_parts_that_differ_in_case_are_different_mailboxes() -> None:
    assert address_key("Ada@example.com") != address_key("ada@example.com")


def test_an_ascii_domain_idna_refuses_is_still_keyed_by_lowering_it() -> None:
    assert address_key("a@Under_Score.example") == "a@under_score.example"


@pytest.mark.parametrize(
    "text",
    [
        "no-at-sign",
        "@example.com",
        "local@",
        "a@bad\u0000domäin",
        # a non-ASCII domain the address rule refuses: SQL's mailroom_address_key gives NULL for
        # it, since only for the domains the rule admits is SQL's A-label the one IDNA gives
        "zoë@BÜCHER.DE",
        "a@ｅｘａｍｐｌｅ．ｃｏｍ",
    ],
)
def test_what_is_not_an_address_has_no_key(text: str) -> None:
    with pytest.raises(NotAnAddress):
        address_key(text)
