"""The off-site destination's URL and sftp's listing (relentad.lifecycle.offsite): pure parsing only; the copy
itself is tested against a real sshd in tests/e2e/test_backup_offsite.py."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from relentad.lifecycle.offsite import Destination, _parse_listing, parse_url


@pytest.mark.parametrize(
    ("url", "expected", "shown"),
    [
        (
            "sftp://backup@example.org/srv/relentad",
            Destination("backup", "example.org", 22, "/srv/relentad"),
            "sftp://backup@example.org:22/srv/relentad",
        ),
        (
            "sftp://u1@example.org:2222/~/relentad/",
            Destination("u1", "example.org", 2222, "relentad"),
            "sftp://u1@example.org:2222/~/relentad",
        ),
        ("sftp://u1@example.org", Destination("u1", "example.org", 22, ""), "sftp://u1@example.org:22/~/"),
        ("sftp://u@[2001:db8::1]:23/b", Destination("u", "2001:db8::1", 23, "/b"), "sftp://u@[2001:db8::1]:23/b"),
    ],
)
def test_destinations(url: str, expected: Destination, shown: str) -> None:
    """A path is absolute unless it starts with /~/ (the login folder), as in sftp's own URLs."""
    assert parse_url(url) == expected
    assert str(expected) == shown


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("https://u@example.org/x", "not an sftp://"),
        ("sftp:///x", "not an sftp://"),
        ("sftp://example.org/x", "name the user"),
        ("sftp://u:secret@example.org/x", "no password"),
        ("sftp://u@example.org:99999/x", "bad port"),
        ("sftp://u@example.org/a/../etc", "no \\.\\."),
        ('sftp://u@example.org/a"b', "may hold only"),
        ("sftp://u@example.org/x?y", "no query"),
        ("sftp://-oProxyCommand=x@example.org/x", "unusual user name"),
        ("sftp://u@example.org ProxyCommand=x/b", "unusual host name"),  # ssh reads HostName=… as a line
        ("sftp://u@example%h.org/b", "unusual host name"),  # a %-token of ssh's
    ],
)
def test_bad_destinations(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_url(url)


def test_listing_keeps_our_names_only() -> None:
    output = (
        "sftp> cd /srv/b\nsftp> ls -la\n"
        "drwxr-xr-x    ? root     root         4096 Nov 27 07:54 .\n"
        "-rw-r--r--    ? root     root           99 Nov 27 07:54 notes.txt\n"
        "-rw-r--r--    ? root     root         1234 Nov 27 07:54 relentad-20261127T031500123456Z.db.gz.age\n"
        "-rw-r--r--    ? root     root           12 Nov 27 07:54 .tmp-relentad-20261126T031500123456Z.db.gz.age\n"
        "-rw-r--r--    ? root     root           12 Nov 27 07:54 relentad-not-a-stamp.db.gz.age\n"
    )
    [ours, partial] = _parse_listing(output)
    assert (ours.name, ours.size, ours.taken) == (
        "relentad-20261127T031500123456Z.db.gz.age",
        1234,
        datetime(2026, 11, 27, 3, 15, 0, 123456, tzinfo=UTC),
    )
    assert partial.name.startswith(".tmp-") and partial.taken is None
