"""SORT and THREAD's pure parts: base subject (RFC 5256 §2.1), the comparator, the THREAD algorithms (§4) and
the `* THREAD` syntax, ESORT's ordered sets, and the SORT / THREAD grammar."""

from __future__ import annotations

import threading
from typing import Any, cast

import pytest

from relentad.imap import threads
from relentad.imap.basesubject import MAX_SUBJECT, base_subject, casemap
from relentad.imap.commands import sort as sortmod
from relentad.imap.parser import ParseError, Sort, SortKey, Thread, UnsupportedCharset, parse_command
from relentad.imap.parser_search import SearchSimple
from relentad.imap.parser_sort import SORT_KEYS
from relentad.imap.sequence import render_in_order
from relentad.imap.threads import Node, ThreadMessage, ordered_subject, references, render
from relentad.message import parse


@pytest.mark.parametrize(
    ("subject", "base", "reply"),
    [
        ("hello", "hello", False),
        ("Re: hello", "hello", True),
        ("RE: Re: re:hello", "hello", True),
        ("Fw: hello", "hello", True),
        ("FWD: hello", "hello", True),
        ("Re[2]: hello", "hello", True),
        ("Re [2] : hello", "hello", True),
        ("[list] Re: hello", "hello", True),  # *subj-blob subj-refwd
        ("[PATCH 1/2] fix it", "fix it", False),  # a blob alone is removed when text remains...
        ("[only a blob]", "[only a blob]", False),  # ...and kept when it is the whole subject
        ("[a][b] [c] x", "x", False),
        ("hello (fwd)", "hello", True),
        ("hello (FWD) (fwd)  ", "hello", True),
        ("[fwd: hello]", "hello", True),
        ("[Fwd: Re: [list] hello (fwd)]", "hello", True),
        ("Re: [fwd: [fwd: hello]]", "hello", True),
        ("[fwd: unterminated", "[fwd: unterminated", False),
        ("  hello \t  world\r\n  again ", "hello world again", False),  # white space and folding
        ("Rex: hello", "Rex: hello", False),
        ("Re:", "", True),
        ("", "", False),
        (None, "", False),
        ("Ré: hé", "Ré: hé", False),
    ],
)
def test_base_subject(subject: str | None, base: str, reply: bool) -> None:
    assert base_subject(subject) == (base, reply)


def test_base_subject_of_a_hostile_subject_is_bounded() -> None:
    text, _ = base_subject("[x]" * 1_000_000 + " tail")
    assert len(text) <= MAX_SUBJECT


def test_casemap() -> None:
    assert casemap("HeLLo") == "hello"
    assert casemap("STRASSE") == casemap("straße")
    assert casemap("Émile") == casemap("E\u0301MILE")  # decomposed and composed forms compare equal
    assert casemap("ﬁle") == "file"  # compatibility decomposition
    assert sorted(["b", "Émile", "a", "Zed"], key=casemap) == ["a", "b", "Émile", "Zed"]


def message(
    number: int,
    subject: str = "s",
    *,
    sent: float | None = None,
    reply: bool = False,
    mid: str | None = None,
    refs: tuple[str, ...] = (),
) -> ThreadMessage:
    return ThreadMessage(
        number, number, float(number if sent is None else sent), subject, reply, mid, refs
    )  # fmt: skip


def test_render_follows_the_rfc_syntax() -> None:
    def node(number: int | None, *children: Node) -> Node:
        return Node(None if number is None else message(number), children=list(children))

    tree = [node(2), node(3, node(6, node(4, node(23)), node(44, node(7, node(96)))))]
    assert render(tree) == b"(2)(3 6 (4 23)(44 7 96))"  # RFC 5256 §4's example
    assert render([node(None, node(3), node(5))]) == b"((3)(5))"
    assert render([node(1, node(2), node(3, node(4)))]) == b"(1 (2)(3 4))"
    assert render([]) == b""


def test_references_links_prunes_and_merges_subjects() -> None:
    found = references(
        [
            message(1, "plans", mid="a"),
            message(2, "plans", reply=True, mid="b", refs=("a",)),
            message(3, "plans", reply=True, mid="c", refs=("a", "missing")),  # missing parent: a dummy, pruned
            message(4, "plans", reply=True, mid="d", refs=("b",)),
            message(5, "lunch", mid="e"),
            message(6, "lunch", reply=True, mid="f"),  # a reply by subject only: under 5
            message(7, "other", sent=0, mid="g", refs=("nowhere",)),  # a dummy with one child: promoted
            message(8, "split", mid="h", refs=("gone",)),  # a top-level dummy with two children stays
            message(9, "split", mid="i", refs=("gone",)),
            message(10, "lunch", mid="j"),  # not a reply, same subject: both under a new dummy
        ]
    )
    assert render(found) == b"(7)(1 (2 4)(3))((5 6)(10))((8)(9))"


def test_references_orders_siblings_by_date_then_sequence() -> None:
    found = references(
        [
            message(1, "x", sent=50, mid="root"),
            message(2, "x", sent=40, reply=True, mid="b", refs=("root",)),
            message(3, "x", sent=30, reply=True, mid="c", refs=("root",)),
            message(4, "x", sent=30, reply=True, mid="d", refs=("root",)),
            message(5, "y", sent=10, mid="e"),
        ]
    )
    assert render(found) == b"(5)(1 (3)(4)(2))"


def test_references_survives_loops_duplicates_and_truncated_references() -> None:
    found = references(
        [
            message(1, "a", mid="x", refs=("y",)),
            message(2, "b", mid="y", refs=("x",)),  # would close a loop: the link is not made, 2 stays on top
            message(3, "c", mid="x"),  # a duplicate Message-ID: its own thread
            message(4, "d", mid="self", refs=("self",)),  # references itself
            message(5, "e", mid="p"),
            message(6, "f", mid="q", refs=("p",)),
            message(7, "g", mid="r", refs=("q",)),  # truncated: its parent q, whose own References win below
            message(8, "h", mid="z", refs=("p", "q", "r")),
            message(9, "i", mid="w", refs=("p", "s")),  # s: a dummy under p, so far
            message(10, "j", mid="s", refs=("q",)),  # s's own References win: it moves under q
        ]
    )
    assert render(found) == b"(2 1)(3)(4)(5 6 (7 8)(10 9))"


def test_in_reply_to_stands_in_for_references() -> None:
    # the command layer passes the first In-Reply-To ID as the only reference when References is empty
    found = references([message(1, "a", mid="m1"), message(2, "a", reply=True, mid="m2", refs=("m1",))])
    assert render(found) == b"(1 2)"


def test_deep_threads_need_no_recursion() -> None:
    chain = [message(1, "x", mid="m1")]
    chain += [message(n, "x", reply=True, mid=f"m{n}", refs=(f"m{n - 1}",)) for n in range(2, 5001)]
    assert render(references(chain)) == b"(" + b" ".join(b"%d" % n for n in range(1, 5001)) + b")"
    fork = [message(1, "x", mid="m1")]  # every message forks: nested lists 2,500 deep
    for n in range(2, 5001):
        fork.append(message(n, "x", reply=True, mid=f"m{n}", refs=(f"m{n - 1 if n % 2 else n - 2}",)))
    assert render(references(fork)).count(b"(") == 1 + 2 * 2499


class CountingNode(Node):
    """A Node that counts how often a parent link is followed: the cost of the loop checks."""

    steps = 0

    @property  # type: ignore[override]
    def parent(self) -> Node | None:
        CountingNode.steps += 1
        return self._parent

    @parent.setter
    def parent(self, value: Node | None) -> None:
        self._parent = value


def test_loop_checks_cost_linear_time_on_deep_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "Node", CountingNode)
    size = 3000
    chain = [message(1, "x", mid="m1")]  # each reply met after its parent (walking up cost n²/2 = 4.5 M steps)
    chain += [message(n, "x", reply=True, mid=f"m{n}", refs=(f"m{n - 1}",)) for n in range(2, size + 1)]
    # then pairs that each link a message which already has a child under the chain's deepest message
    chain += [message(size + 2 * n + 1, "y", mid=f"c{n}", refs=(f"p{n}",)) for n in range(size // 2)]
    chain += [message(size * 3 + n, "y", mid=f"p{n}", refs=(f"m{size}",)) for n in range(size // 2)]
    CountingNode.steps = 0
    found = references(chain)
    assert CountingNode.steps < 20 * len(chain)
    assert render(found).startswith(b"(1 2 3 ") and len(found) == 1


def test_ordered_subject() -> None:
    found = ordered_subject(
        [
            message(1, "b", sent=5),
            message(2, "a", sent=3),
            message(3, "b", sent=1),
            message(4, "a", sent=4),
            message(5, "c", sent=9),
            message(6, "a", sent=2),
        ]
    )
    assert render(found) == b"(3 1)(6 (2)(4))(5)"


def test_render_in_order() -> None:
    assert render_in_order([2, 1, 4, 3]) == "2,1,4,3"
    assert render_in_order([7, 1, 2, 3, 9]) == "7,1:3,9"
    assert render_in_order([5, 4, 3]) == "5,4,3"
    assert render_in_order([]) == ""


def test_parse_sort_and_thread() -> None:
    command = parse_command(b"a UID SORT RETURN (MIN ALL) (REVERSE Date subject DISPLAYFROM) utf-8 UNSEEN")
    assert command == Sort(
        tag="a",
        name="SORT",
        uid=True,
        criteria=(SortKey("DATE", True), SortKey("SUBJECT"), SortKey("DISPLAYFROM")),
        key=SearchSimple("UNSEEN"),
        charset="UTF-8",
        returns=("MIN", "ALL"),
    )
    thread = parse_command(b'b THREAD references "US-ASCII" ALL')
    assert thread == Thread(tag="b", name="THREAD", algorithm="REFERENCES", key=SearchSimple("ALL"), charset="US-ASCII")


@pytest.mark.parametrize(
    ("line", "text"),
    [
        (b"a SORT (ARRIVAL REVERSE) UTF-8 ALL", "expected space"),
        (b"a SORT (ARRIVAL FOO) UTF-8 ALL", "unknown sort key FOO"),
        (b"a SORT (REVERSE REVERSE DATE) UTF-8 ALL", "unknown sort key REVERSE"),
        (b"a SORT () UTF-8 ALL", "non-empty"),
        (b"a SORT (" + b" ".join([b"DATE"] * 17) + b") UTF-8 ALL", "more than 16"),
        (b"a SORT (DATE) UTF-8", "space"),
        (b"a THREAD XYZ UTF-8 ALL", "unknown threading algorithm"),
    ],
)
def test_sort_and_thread_syntax_errors(line: bytes, text: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_command(line)
    assert text in info.value.text and not isinstance(info.value, UnsupportedCharset)


def test_unknown_charset_and_saved_result() -> None:
    with pytest.raises(UnsupportedCharset):
        parse_command(b"a SORT (DATE) X-NOPE ALL")
    with pytest.raises(ParseError) as info:
        parse_command(b"a SORT RETURN (SAVE) (NOPE) UTF-8 ALL")
    assert info.value.resets_saved


def test_every_sort_key_has_a_value() -> None:
    assert set(sortmod._SORT_VALUES) == SORT_KEYS


def test_header_keys_from_the_stored_structure() -> None:
    raw = (
        b"From: =?utf-8?q?J=C3=B6rg?= <Joerg@Example.COM>\r\nTo: team: a@b.test, c@d.test;, X <x@y.test>\r\n"
        b"Subject: Re: [list] =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nDate: Mon, 2 Jan 2023 10:00:00 +0200\r\n"
        b"Message-ID: <m1@x>\r\nIn-Reply-To: <p1@x> <p2@x>\r\n\r\nhi\r\n"
    )
    keys = sortmod.HeaderKeys.of(parse(raw).to_dict())
    assert keys.subject == casemap("GRÜSSE") == "gru\u0308sse" and keys.reply
    assert (keys.from_, keys.display_from) == ("joerg", casemap("Jörg"))
    assert (keys.to, keys.display_to) == ("a", "a@b.test")  # the group's first member; no name: the address
    assert (keys.cc, keys.display_to) == ("", "a@b.test")
    assert keys.sent == 1672646400.0  # 08:00 UTC
    assert keys.message_id == "m1@x" and keys.references == ("p1@x",)  # no References: In-Reply-To's first
    bare = sortmod.HeaderKeys.of(
        parse(b"Subject: x\r\nDate: not a date\r\nReferences: <r1@x> <r2@x>\r\n\r\n").to_dict()
    )
    assert bare.sent is None and bare.from_ == "" and bare.references == ("r1@x", "r2@x")
    many = b"References: " + b" ".join(b"<r%d@x>" % n for n in range(5000)) + b"\r\n\r\n"
    kept = sortmod.HeaderKeys.of(parse(many).to_dict()).references
    assert len(kept) == threads.MAX_REFERENCES and kept[-1] == "r4999@x", "only what threading links is cached"


class ReplySink:
    """What the SORT and THREAD handlers need of a session: somewhere to send the reply."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> None:
        self.sent.append(data)


@pytest.mark.parametrize("line", [b"t THREAD REFERENCES UTF-8 ALL", b"t SORT (SUBJECT) UTF-8 ALL"])
async def test_big_results_are_ordered_off_the_event_loop(monkeypatch: pytest.MonkeyPatch, line: bytes) -> None:
    count = sortmod.INLINE_ROWS + 1
    keys = sortmod.HeaderKeys("s", False, None, "", "", "", "", "", None, ())
    rows = [sortmod.Row(uid, uid, float(uid), 1, keys) for uid in range(1, count + 1)]
    found = sortmod.Found(rows, {uid: uid for uid in range(1, count + 1)}, False)

    async def matching(*_: object) -> sortmod.Found:
        return found

    ran_in: list[threading.Thread] = []
    ordered, referenced = sortmod.sort_rows, threads.references
    monkeypatch.setattr(sortmod, "_matching", matching)
    monkeypatch.setattr(sortmod, "sort_rows", lambda *a: ran_in.append(threading.current_thread()) or ordered(*a))
    monkeypatch.setattr(threads, "references", lambda *a: ran_in.append(threading.current_thread()) or referenced(*a))
    session = ReplySink()
    handler = sortmod.thread if b"THREAD" in line else sortmod.sort
    await handler(cast(Any, session), parse_command(line))  # type: ignore[arg-type]
    assert ran_in and ran_in[0] is not threading.main_thread(), "a big result must not hold the loop"
    assert session.sent[0].startswith((b"* THREAD ((1)(2)(3)", b"* SORT 1 2 3 "))


def test_a_header_that_could_not_be_read_is_read_again_next_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed read (the store busy, say) sorts the message as one with empty headers this once; the cache,
    content-addressed and never invalidated, must not keep that empty result for good."""
    calls: list[int] = []

    def stored_summary(conn: Any, blob_id: int) -> dict[str, Any]:
        calls.append(blob_id)
        if len(calls) == 1:
            raise RuntimeError("database is locked")
        return {"su": "Hello"}

    monkeypatch.setattr(sortmod.searchmod, "stored_summary", stored_summary)
    sha = b"\x01" * 31 + b"\x7f"
    finish = sortmod._keys_job(True)
    rows = [(1, 1, 0.0, 10, sha, 77)]
    assert finish(cast(Any, None), rows)[0].keys.subject == ""
    assert finish(cast(Any, None), rows)[0].keys.subject == "hello"
    assert calls == [77, 77]
