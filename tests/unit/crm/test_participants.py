"""Who a message involves (relentad.crm.participants): address extraction from real header shapes."""

from __future__ import annotations

from relentad.crm.participants import (
    BULK,
    IN,
    LIST,
    MAX_PARTICIPANTS,
    OUT,
    PERSON,
    blind_copies,
    is_automatic,
    is_own,
    normalize,
    participants,
    sender,
)
from relentad.message import parse

OWN = frozenset({"alice@example.test", "sales@example.test"})


def msg(*headers: str, body: str = "Hello.\r\n") -> bytes:
    return ("\r\n".join(headers) + "\r\n\r\n" + body).encode("utf-8", "surrogateescape")


def people(raw: bytes, direction: str = IN, own: frozenset[str] = OWN) -> list[tuple[str, str, str, str]]:
    return [(p.address, p.name, p.role, p.kind) for p in participants(parse(raw), own, direction)]


def test_encoded_word_names_are_decoded() -> None:
    raw = msg(
        "From: =?UTF-8?B?SsO8cmdlbiBNw7xsbGVy?= <Juergen@Example.DE>",
        "To: alice@example.test",
        "Cc: =?ISO-8859-1?Q?Ren=E9e_Dupont?= <renee@client.fr>",
    )
    assert people(raw) == [
        ("juergen@example.de", "Jürgen Müller", "from", PERSON),
        ("renee@client.fr", "Renée Dupont", "cc", PERSON),
    ]


def test_groups_and_own_addresses() -> None:
    raw = msg(
        "From: Bob <bob@partner.test>",
        "To: Team: alice@example.test, Carol <carol@partner.test>;, undisclosed-recipients:;",
        'Cc: sales+leads@example.test, "Dave, Jr." <dave@other.test>',
    )
    found = people(raw)
    assert [p[0] for p in found] == ["bob@partner.test", "carol@partner.test", "dave@other.test"]
    assert found[2][1] == "Dave, Jr."


def test_broken_headers_never_raise_and_skip_garbage() -> None:
    raw = msg(
        "From: <<<broken",
        "To: just some words, @nodomain, bob@",
        'Cc: =?utf-8?q?bad=ZZ?= <dan@y.test>, "Unclosed <carol@x.test>, eve@z.test',
        "Reply-To: (comment only)",
    )
    found = people(raw)
    assert [p[0] for p in found] == ["dan@y.test"]  # garbage and the unclosed quote's swallowed text skipped


def test_reply_to_and_duplicates() -> None:
    raw = msg("From: Bob <BOB@partner.test>", "Reply-To: bob@partner.test, Help <help@partner.test>", "To: a@b.test")
    assert [(p[0], p[2]) for p in people(raw)] == [
        ("bob@partner.test", "from"),
        ("help@partner.test", "reply-to"),
        ("a@b.test", "to"),
    ]


def test_mailing_list_is_filed_against_the_list() -> None:
    raw = msg(
        "From: Poster <poster@somewhere.test>",
        "To: fork@xent.com",
        "List-Id: Friends of Rohit Khare <fork.xent.com>",
    )
    assert people(raw) == [("fork@xent.com", "Friends of Rohit Khare", "list", LIST)]


def test_list_address_from_list_id_when_not_in_to() -> None:
    raw = msg("From: x@y.test", "To: alice@example.test", "List-Id: <dev.lists.example.org>")
    assert people(raw)[0][::3] == ("dev@lists.example.org", LIST)


def test_bulk_and_noreply_senders() -> None:
    raw = msg("From: Shop <news@shop.test>", "To: alice@example.test", "Precedence: bulk")
    assert people(raw)[0][3] == BULK
    raw = msg("From: Service <no-reply@service.test>", "To: alice@example.test")
    assert people(raw)[0][3] == BULK
    assert is_automatic("mailer-daemon@x.test") and is_automatic("bounces+123@x.test")
    assert not is_automatic("noah@x.test") and not is_automatic("replyguy@x.test")


def test_outgoing_mail_involves_recipients_only() -> None:
    raw = msg("From: Alice <alice@example.test>", "To: Bob <bob@partner.test>", "Bcc: boss@partner.test")
    parsed = parse(raw)
    assert is_own(sender(parsed), OWN)
    assert [(p.address, p.role) for p in participants(parsed, OWN, OUT)] == [
        ("bob@partner.test", "to"),
        ("boss@partner.test", "bcc"),
    ]


def test_subaddress_of_own_is_own() -> None:
    raw = msg("From: alice+news@example.test", "To: bob@partner.test")
    assert is_own(sender(parse(raw)), OWN)


def test_normalize() -> None:
    assert normalize(" <Bob@Example.COM.> ") == "bob@example.com"
    assert normalize("bob") == ""
    assert normalize("@x.test") == ""
    # a control character (ESC, DEL, C1's CSI, BEL) is in no address the CRM keeps: it would reach a terminal
    # through `contacts list` (from a header or an imported file)
    for text in ("\x1bcd@a.example", "\x9b2J@a.example", "a\x7f@a.example", "a@b\x07.example"):
        assert normalize(text) == "", text


def test_idn_addresses_are_one_address_and_own_in_either_form() -> None:
    # an account is stored with A-labels: its address in Unicode (or NFD) form is still its own, and a
    # correspondent writing in either form is one contact
    own = frozenset({"jo@xn--bcher-kva.example"})
    raw = msg(
        "From: J\u00f6rg <J\u00f6rg@B\u00fccher.example>",
        "To: Jo <jo@B\u00fccher.example>, jo+tag@xn--bcher-kva.example",
        "Cc: jo\u0308rg@xn--bcher-kva.example, x@bad\u2025name.example",
    )
    assert people(raw, own=own) == [("j\u00f6rg@xn--bcher-kva.example", "J\u00f6rg", "from", PERSON)]
    assert normalize("Jo@B\u00dcCHER.example.") == "jo@xn--bcher-kva.example"


def test_display_names_are_one_line() -> None:
    raw = msg(
        "From: =?utf-8?q?Bad=0D=0AName=00=09here?= <bad@x.test>",
        "To: alice@example.test",
        'Cc: "  Spaced   Out  " <s@x.test>',
    )
    assert [p[1] for p in people(raw)] == ["Bad Name here", "Spaced Out"]


def test_a_huge_recipient_list_is_cut_to_the_first_correspondents() -> None:
    # 200,000 Cc addresses once made 200,000 contacts and companies in one delivery (seconds of the writer), then
    # failed it with "too many SQL variables"
    cc = ", ".join(f"u{i}@d{i}.example" for i in range(MAX_PARTICIPANTS + 100))
    found = people(msg("From: Bob <bob@x.test>", "To: alice@example.test", f"Cc: {cc}"))
    assert len(found) == MAX_PARTICIPANTS and found[0][0] == "bob@x.test" and found[-1][0] == "u498@d498.example"
    sent = participants(parse(msg("From: alice@example.test", f"To: {cc}")), OWN, OUT)
    assert blind_copies(sent, ["boss@y.test"], OWN) == []
