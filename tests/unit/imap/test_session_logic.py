"""Pure pieces of the IMAP server: flag arithmetic, LIST patterns, the selected-mailbox view."""

from __future__ import annotations

import pytest

from relentad.imap.commands.mailbox import _pattern
from relentad.imap.errors import ImapError
from relentad.imap.sequence import SequenceSet
from relentad.imap.view import Selected
from relentad.store import flags
from relentad.store.imapview import MailboxInfo


def test_flag_split_and_names() -> None:
    bits, keywords = flags.split(["\\Seen", "$Work", "\\Recent", "$work", "Later"])
    assert bits == flags.SYSTEM_BITS["\\Seen"]
    assert keywords == ["$Work", "Later"]
    assert flags.names(bits | flags.SYSTEM_BITS["\\Flagged"], "$Work") == ["\\Flagged", "\\Seen", "$Work"]


@pytest.mark.parametrize(
    ("action", "expected_bits", "expected_keywords"),
    [("replace", 4, "b"), ("add", 5, "a b"), ("remove", 1, "a")],
)
def test_flag_apply(action: str, expected_bits: int, expected_keywords: str) -> None:
    assert flags.apply(action, 1, "a", 4, ["B"] if action == "remove" else ["b"]) == (
        (expected_bits & ~4 if action == "remove" else expected_bits),
        expected_keywords if action != "remove" else "a",
    )
    assert flags.apply("remove", 5, "a B", 4, ["b"]) == (1, "a")


@pytest.mark.parametrize(
    ("reference", "pattern", "name", "matches"),
    [
        ("", "*", "Work/Clients/ACME", True),
        ("", "%", "Work/Clients", False),
        ("", "%", "Work", True),
        ("Work/", "%", "Work/Clients", True),
        ("Work/", "%", "Work/Clients/ACME", False),
        ("", "inbox", "INBOX", True),
        ("", "INBOX/%", "INBOX/sub", True),
        ("", "a.b", "aXb", False),
        ("", "Sent*", "Sent Items", True),
    ],
)
def test_list_patterns(reference: str, pattern: str, name: str, matches: bool) -> None:
    assert bool(_pattern(reference, pattern).fullmatch(name)) is matches


def view(uids: list[int]) -> Selected:
    info = MailboxInfo(
        id=1, name="INBOX", special_use=None, uidvalidity=7, uidnext=100, highestmodseq=9, noselect=False
    )
    return Selected(info=info, readonly=False, uids=uids, modseq=9)


def test_view_resolves_sequence_numbers_and_uids() -> None:
    selected = view([3, 5, 9, 12])
    assert selected.resolve(SequenceSet.parse("2:*"), uid=False, saved=None) == [5, 9, 12]
    assert selected.resolve(SequenceSet.parse("4:10"), uid=True, saved=None) == [5, 9]
    assert selected.resolve(SequenceSet.parse("20:*"), uid=True, saved=None) == [12]
    assert selected.resolve(SequenceSet.parse("$"), uid=False, saved=SequenceSet.of([9, 99])) == [9]
    with pytest.raises(ImapError):
        selected.resolve(SequenceSet.parse("5"), uid=False, saved=None)
    assert selected.seq(9) == 3 and selected.seq(4) is None
    assert selected.remove(5) == 2 and selected.uids == [3, 9, 12]
    with pytest.raises(ImapError):
        view([]).resolve(SequenceSet.parse("1"), uid=False, saved=None)
    assert view([]).resolve(SequenceSet.parse("1:*"), uid=False, saved=None) == []
