"""The CRM end to end: the real daemon files mail received over SMTP and sent over submission against contacts
and threads, runs filing rules, and the CLI lists, edits and exports contacts (vCard 4.0, CSV)."""

from __future__ import annotations

import csv
import functools
import imaplib
import io
import json
import smtplib
import ssl

import pytest

from tests.e2e.conftest import MakeDaemon, provision
from tests.support.daemon import PASSWORD, Daemon

# Remote recipients stay queued: no DNS answers (the port is closed), nothing leaves the machine.
SETTINGS = {"dns": {"nameservers": ["127.0.0.1:9"], "timeout": 0.5}, "mailauth": {"verify": False}}


@pytest.fixture
def relentad(make_daemon: MakeDaemon) -> Daemon:
    return provision(make_daemon(submission=True, settings=SETTINGS)).start()


CRM_KEYWORDS = ("$Unassigned", "$Customer")


def message(
    from_: str, to: str, subject: str, msgid: str, in_reply_to: str = "", extra: str = "", body: str = "Hello.\r\n"
) -> bytes:
    headers = [f"From: {from_}", f"To: {to}", f"Subject: {subject}", f"Message-ID: <{msgid}>"]
    if in_reply_to:
        headers += [f"In-Reply-To: <{in_reply_to}>", f"References: <{in_reply_to}>"]
    if extra:
        headers.append(extra)
    return ("\r\n".join(headers) + "\r\n\r\n" + body).encode()


def receive(daemon: Daemon, raw: bytes, sender: str, rcpt: str = "alice@example.test") -> None:
    with smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=10) as client:
        assert client.sendmail(sender, [rcpt], raw) == {}


def send(daemon: Daemon, raw: bytes, rcpts: list[str], user: str = "alice@example.test") -> None:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with smtplib.SMTP(daemon.host, daemon.submission_port, timeout=10) as client:
        client.starttls(context=context)
        client.login(user, PASSWORD)
        assert client.sendmail(user, rcpts, raw) == {}


def contacts_json(daemon: Daemon, *args: str) -> list[dict[str, object]]:
    return json.loads(daemon.cli("contacts", "list", "alice@example.test", "--json", *args).stdout)  # type: ignore[no-any-return]


def keywords(daemon: Daemon, email: str, mailbox: str = "INBOX") -> list[str]:
    rows = daemon.query(
        """SELECT m.keywords FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id
           JOIN accounts a ON a.id = b.account_id WHERE a.email = ? AND b.name = ? ORDER BY m.uid""",
        email,
        mailbox,
    )
    # only the CRM's keywords: the spam filter (another step) may add its own ($Unsure, $Junk)
    return [" ".join(k for k in r["keywords"].split() if k in CRM_KEYWORDS) for r in rows]


def test_mail_in_and_out_builds_contacts_and_threads(relentad: Daemon) -> None:
    first = message("=?utf-8?q?J=C3=BCrgen_Schmidt?= <juergen@acme.example>", "Alice <alice@example.test>",
                    "Offer", "m1@acme.example", extra="Cc: Petra <petra@acme.example>")  # fmt: skip
    receive(relentad, first, "juergen@acme.example")
    [juergen] = [c for c in contacts_json(relentad) if "juergen@acme.example" in c["addresses"]]  # type: ignore[operator]
    assert juergen["name"] == "Jürgen Schmidt" and juergen["company"] == "Acme"
    assert (juergen["count_in"], juergen["count_out"], juergen["confirmed"]) == (1, 0, False)
    assert keywords(relentad, "alice@example.test") == ["$Unassigned"]
    unassigned = relentad.cli("contacts", "unassigned", "alice@example.test", "--json")
    assert [row["sender"] for row in json.loads(unassigned.stdout)] == ["juergen@acme.example"]

    # Alice answers over submission: the Sent copy counts "out", confirms Jürgen and joins the thread.
    reply = message("Alice <alice@example.test>", "=?utf-8?q?J=C3=BCrgen?= <juergen@acme.example>", "Re: Offer",
                    "m2@example.test", in_reply_to="m1@acme.example")  # fmt: skip
    send(relentad, reply, ["juergen@acme.example"])
    assert len(relentad.messages("alice@example.test", "Sent")) == 1
    [juergen] = [c for c in contacts_json(relentad) if "juergen@acme.example" in c["addresses"]]  # type: ignore[operator]
    assert (juergen["count_in"], juergen["count_out"], juergen["confirmed"]) == (1, 1, True)
    assert json.loads(relentad.cli("contacts", "unassigned", "alice@example.test", "--json").stdout) == []

    # His answer arrives: same thread, not unassigned any more.
    receive(relentad, message("juergen@acme.example", "alice@example.test", "Re: Offer", "m3@acme.example",
                              in_reply_to="m2@example.test"), "juergen@acme.example")  # fmt: skip
    assert keywords(relentad, "alice@example.test") == ["$Unassigned", ""]
    card = json.loads(relentad.cli("contacts", "show", "alice@example.test", "juergen@acme.example", "--json").stdout)
    assert (card["count_in"], card["count_out"]) == (2, 1)
    assert [(t["subject"], t["messages"]) for t in card["threads"]] == [("Offer", 3)]
    assert [(m["direction"], m["folder"]) for m in card["messages"]] == [
        ("in", "INBOX"),
        ("out", "Sent"),
        ("in", "INBOX"),
    ]
    text = relentad.cli("contacts", "show", "alice@example.test", "juergen@acme.example").stdout
    assert "Offer" in text and "in=2 out=1" in text
    acme = contacts_json(relentad, "--company", "Acme")
    assert sorted(a for c in acme for a in c["addresses"]) == ["juergen@acme.example", "petra@acme.example"]  # type: ignore[attr-defined]


def test_threads_join_across_unknown_parents_and_out_of_order_delivery(relentad: Daemon) -> None:
    bob = "Bob <bob@acme.example>"
    # a reply naming only a message alice never got, but with "Re:", joins the thread of its subject
    receive(relentad, message(bob, "alice@example.test", "Quote", "q1@acme.example"), "bob@acme.example")
    receive(relentad, message(bob, "alice@example.test", "Re: Quote", "q2@acme.example",
                              in_reply_to="unknown@phone.example"), "bob@acme.example")  # fmt: skip
    # C answers B, B answers A; they arrive C, A, B: B links C's thread and A's, which become one
    receive(relentad, message(bob, "alice@example.test", "Re: Re: Plan", "c@acme.example",
                              in_reply_to="b@acme.example"), "bob@acme.example")  # fmt: skip
    receive(relentad, message(bob, "alice@example.test", "Plan", "a@acme.example"), "bob@acme.example")
    receive(relentad, message(bob, "alice@example.test", "Re: Plan", "b@acme.example",
                              in_reply_to="a@acme.example"), "bob@acme.example")  # fmt: skip
    rows = relentad.query("SELECT subject, thread_id FROM crm_messages ORDER BY id")
    quote, plan = rows[0]["thread_id"], rows[2]["thread_id"]
    assert [r["thread_id"] for r in rows] == [quote, quote, plan, plan, plan]
    card = json.loads(relentad.cli("contacts", "show", "alice@example.test", "bob@acme.example", "--json").stdout)
    assert sorted((t["subject"], t["messages"]) for t in card["threads"]) == [("Plan", 3), ("Quote", 2)]


def test_local_mail_counts_out_for_the_sender_and_in_for_the_recipient(relentad: Daemon) -> None:
    send(relentad, message("Alice <alice@example.test>", "Bob <bob@example.test>", "Lunch?", "l1@example.test"),
         ["bob@example.test"])  # fmt: skip
    [bob] = contacts_json(relentad)
    assert bob["addresses"] == ["bob@example.test"] and (bob["count_in"], bob["count_out"]) == (0, 1)
    bobs = json.loads(relentad.cli("contacts", "list", "bob@example.test", "--json").stdout)
    assert [(c["addresses"], c["count_in"], c["count_out"]) for c in bobs] == [(["alice@example.test"], 1, 0)]


def test_bcc_recipients_of_sent_mail_are_contacts_of_the_sender_only(relentad: Daemon) -> None:
    """Submission removes the Bcc field before the Sent copy is stored, so the CRM never saw Bcc recipients (the
    README promised them): they come from the envelope now, for the sender alone — the copies others get name no
    Bcc, and their CRM learns nothing of them."""
    sent = message("Alice <alice@example.test>", "Carol <carol@example.test>", "Plan", "b1@example.test",
                   extra="Bcc: Bob <bob@example.test>, Boss <boss@partner.example>")  # fmt: skip
    send(relentad, sent, ["carol@example.test", "bob@example.test", "boss@partner.example"])
    found = {c["addresses"][0]: c for c in contacts_json(relentad)}  # type: ignore[index]
    assert sorted(found) == ["bob@example.test", "boss@partner.example", "carol@example.test"]
    assert all((c["count_out"], c["confirmed"]) == (1, True) for c in found.values())
    roles = relentad.query("SELECT l.role FROM crm_message_contacts l ORDER BY l.role")
    assert [r["role"] for r in roles] == ["bcc", "bcc", "from", "from", "to", "to"]  # alice: 3, carol: 1, bob: 2
    expected = {
        "carol@example.test": ["alice@example.test"],
        "bob@example.test": ["alice@example.test", "carol@example.test"],
    }
    for user, addresses in expected.items():
        theirs = json.loads(relentad.cli("contacts", "list", user, "--json").stdout)
        assert sorted(a for c in theirs for a in c["addresses"]) == addresses
        assert b"Bcc" not in relentad.messages(user)[0]


def test_a_subaddress_joins_the_contact_of_its_mailbox(relentad: Daemon) -> None:
    """bob+news@ is bob@'s mailbox: it was a second, unconfirmed contact and his mail from it was $Unassigned."""
    receive(
        relentad, message("Bob <bob@acme.example>", "alice@example.test", "Hi", "sa1@acme.example"), "bob@acme.example"
    )
    relentad.cli("contacts", "tag", "alice@example.test", "bob@acme.example", "customer")
    news = message("Bob <Bob+News@acme.example>", "alice@example.test", "News", "sa2@acme.example")
    receive(relentad, news, "bob+news@acme.example")
    [bob] = contacts_json(relentad)
    assert bob["addresses"] == ["bob+news@acme.example", "bob@acme.example"] and bob["count_in"] == 2
    assert keywords(relentad, "alice@example.test") == ["$Unassigned", ""]


def test_a_person_first_seen_by_an_automatic_reply_becomes_a_person(relentad: Daemon) -> None:
    """An out-of-office reply made Bob a "bulk" contact for ever: his own mail was never $Unassigned and, even
    confirmed, he got no Contacts/ folder."""
    ooo = message("Bob <bob@acme.example>", "alice@example.test", "Out of office", "o1@acme.example",
                  extra="Auto-Submitted: auto-replied")  # fmt: skip
    receive(relentad, ooo, "bob@acme.example")
    receive(
        relentad, message("Bob <bob@acme.example>", "alice@example.test", "Hi", "o2@acme.example"), "bob@acme.example"
    )
    [bob] = contacts_json(relentad)
    assert (bob["kind"], bob["company"]) == ("person", "Acme")
    assert keywords(relentad, "alice@example.test") == ["", "$Unassigned"]


def test_a_forged_own_from_on_the_mx_confirms_no_one(relentad: Daemon) -> None:
    # Anyone can put the account's own address in From: on the MX such mail is received mail, so its Cc does
    # not become a confirmed contact written to (count_out allow-lists a sender past the spam filter).
    forged = message("Alice <alice@example.test>", "alice@example.test", "note to self", "f1@pills.test",
                     extra="Cc: Deals <deals@pills.test>")  # fmt: skip
    receive(relentad, forged, "bounce@pills.test")
    [deals] = contacts_json(relentad)
    assert deals["addresses"] == ["deals@pills.test"]
    assert (deals["count_in"], deals["count_out"], deals["confirmed"]) == (1, 0, False)
    assert [r["direction"] for r in relentad.query("SELECT direction FROM crm_messages")] == ["in"]
    # the same message really sent by alice (submission, Sent copy) does count out
    send(relentad, message("Alice <alice@example.test>", "Deals <deals@pills.test>", "Re: note", "f2@example.test"),
         ["deals@pills.test"])  # fmt: skip
    [deals] = contacts_json(relentad)
    assert (deals["count_in"], deals["count_out"], deals["confirmed"]) == (1, 1, True)


def test_lists_and_automatic_senders_are_marked_not_unassigned(relentad: Daemon) -> None:
    listed = "List-Id: Developers <dev.lists.example.org>"
    post = message("Poster <poster@else.example>", "dev@lists.example.org", "[dev] release", "l@x", extra=listed)
    receive(relentad, post, "bounce@lists.example.org")
    receive(relentad, message("Shop <no-reply@shop.example>", "alice@example.test", "Your order", "o@x"),
            "bounce@shop.example")  # fmt: skip
    kinds = {c["addresses"][0]: c["kind"] for c in contacts_json(relentad)}  # type: ignore[index]
    assert kinds == {"dev@lists.example.org": "list", "no-reply@shop.example": "bulk"}
    assert keywords(relentad, "alice@example.test") == ["", ""]


def test_a_rule_files_into_a_new_folder(relentad: Daemon) -> None:
    script = (
        'require ["fileinto", "imap4flags"];\n'
        'if address :domain :is "from" "acme.example" { addflag "$Customer"; fileinto "Customers/Acme"; stop; }\n'
    )
    relentad.cli("rules", "add", "alice@example.test", "acme", input=script)
    bad = relentad.cli("rules", "add", "alice@example.test", "bad", input="discard;", check=False)
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1 and "never drops mail" in bad.stderr
    listed = json.loads(relentad.cli("rules", "list", "alice@example.test", "--json").stdout)
    assert [r["name"] for r in listed] == ["acme"]
    receive(relentad, message("bob@acme.example", "alice@example.test", "Order", "r1@x"), "bob@acme.example")
    receive(relentad, message("eve@other.example", "alice@example.test", "Hi", "r2@x"), "eve@other.example")
    assert len(relentad.messages("alice@example.test", "Customers/Acme")) == 1
    assert keywords(relentad, "alice@example.test", "Customers/Acme") == ["$Unassigned $Customer"]
    assert len(relentad.messages("alice@example.test")) == 1
    names = {r["name"] for r in relentad.query("SELECT name FROM mailboxes WHERE account_id = 1")}
    assert {"Customers", "Customers/Acme"} <= names


def test_a_rule_tags_the_contact(relentad: Daemon) -> None:
    script = (
        'require ["vnd.relentad.tagcontact", "imap4flags"];\n'
        'if header :contains "subject" "invoice" { tagcontact ["billing", "acme"]; }\n'
        'if header :is "X-Relentad-Contact-Tag" "billing" { addflag "$Billing"; }\n'
    )
    relentad.cli("rules", "add", "alice@example.test", "billing", input=script)
    path = relentad.root / "invoice.eml"
    path.write_bytes(message("Jo <jo@acme.example>", "alice@example.test", "Invoice 7", "t0@x"))
    preview = json.loads(relentad.cli("rules", "test", "alice@example.test", str(path), "--json").stdout)
    assert preview["tags"] == ["billing", "acme"]
    assert "tag the contact: billing acme" in relentad.cli("rules", "test", "alice@example.test", str(path)).stdout
    assert contacts_json(relentad) == []  # the preview changed nothing
    receive(relentad, message("Jo <jo@acme.example>", "alice@example.test", "Invoice 7", "t1@x"), "jo@acme.example")
    [jo] = contacts_json(relentad, "--tag", "billing")
    assert jo["addresses"] == ["jo@acme.example"] and jo["tags"] == ["acme", "billing"]
    assert jo["confirmed"] is False  # a rule's tag is not the owner confirming the contact
    # the next message sees the tag through X-Relentad-Contact-Tag
    receive(relentad, message("Jo <jo@acme.example>", "alice@example.test", "Hello", "t2@x"), "jo@acme.example")
    assert keywords(relentad, "alice@example.test") == ["$Unassigned", "$Unassigned"]
    flagged = relentad.query("SELECT keywords FROM messages WHERE keywords LIKE '%$Billing%'")
    assert len(flagged) == 1


def test_rules_test_previews_without_changing_anything(relentad: Daemon, tmp_path: object) -> None:
    relentad.cli(
        "rules", "add", "alice@example.test", "big", input='require "fileinto"; if size :over 1K { fileinto "Big"; }'
    )
    path = relentad.root / "big.eml"
    path.write_bytes(message("x@y.example", "alice@example.test", "large", "b@x", body="y" * 3000 + "\r\n"))
    result = json.loads(relentad.cli("rules", "test", "alice@example.test", str(path), "--json").stdout)
    assert [c["folder"] for c in result["copies"]] == ["Big"] and result["unassigned"] is True
    assert "file into Big" in relentad.cli("rules", "test", "alice@example.test", str(path)).stdout
    relentad.cli("rules", "remove", "alice@example.test", "big")
    assert json.loads(relentad.cli("rules", "list", "alice@example.test", "--json").stdout) == []


def test_edits_and_exports(relentad: Daemon) -> None:
    receive(relentad, message('"Smith, Bob" <bob@acme.example>', "alice@example.test", "a", "e1@x"), "bob@acme.example")
    receive(relentad, message("Bob <bobby@gmail.com>", "alice@example.test", "b", "e2@x"), "bobby@gmail.com")
    cli = relentad.cli
    cli("contacts", "tag", "alice@example.test", "bob@acme.example", "vip", "eu")
    cli("contacts", "untag", "alice@example.test", "bob@acme.example", "eu")
    cli("contacts", "note", "alice@example.test", "bob@acme.example", "Prefers phone; call after 10")
    cli("contacts", "merge", "alice@example.test", "bob@acme.example", "bobby@gmail.com")
    cli("contacts", "add-address", "alice@example.test", "bob@acme.example", "robert@acme.example")
    missing = cli("contacts", "show", "alice@example.test", "nobody@x.example", check=False)
    assert missing.returncode == 1 and missing.stderr.strip() == "Error: no contact with the address nobody@x.example"
    [bob] = contacts_json(relentad, "--tag", "vip")
    assert bob["addresses"] == ["bob@acme.example", "bobby@gmail.com", "robert@acme.example"]
    assert (bob["count_in"], bob["tags"], bob["name"]) == (2, ["vip"], "Smith, Bob")

    vcard = cli("contacts", "export", "alice@example.test", "--format", "vcard").stdout
    unfolded = vcard.replace("\n ", "").splitlines()
    assert unfolded[:2] == ["BEGIN:VCARD", "VERSION:4.0"] and unfolded[-1] == "END:VCARD"
    assert "FN:Smith\\, Bob" in unfolded and "CATEGORIES:vip" in unfolded and "ORG:Acme" in unfolded
    assert any(line.startswith("NOTE:") and "Prefers phone\\; call after 10" in line for line in unfolded)
    out = relentad.root / "contacts.csv"
    cli("contacts", "export", "alice@example.test", "--format", "csv", "--output", str(out))
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert [(r["name"], r["tags"], r["count_in"]) for r in rows] == [("Smith, Bob", "vip", "2")]


def test_junk_makes_no_contacts_or_companies(relentad: Daemon) -> None:
    """Mail filed into Junk (here by the block list) is stored and threaded but makes no contacts: spam filled the
    CRM with contacts and companies for every spammer and every address it named."""
    relentad.cli("spam", "block", "alice@example.test", "@spammy.example")
    spam = message("Win <win@spammy.example>", "alice@example.test", "WIN", "s1@spammy.example",
                   extra="Cc: victim@other.example")  # fmt: skip
    receive(relentad, spam, "win@spammy.example")
    receive(
        relentad, message("Bob <bob@acme.example>", "alice@example.test", "Hi", "h1@acme.example"), "bob@acme.example"
    )
    assert len(relentad.messages("alice@example.test", "Junk")) == 1
    assert keywords(relentad, "alice@example.test", "Junk") == [""]  # nothing to review in `contacts unassigned`
    assert [c["addresses"] for c in contacts_json(relentad)] == [["bob@acme.example"]]
    assert [r["domain"] for r in relentad.query("SELECT domain FROM crm_companies")] == ["acme.example"]
    assert relentad.query("SELECT count(*) AS n FROM crm_messages")[0]["n"] == 2


def test_crm_off_stores_mail_unsorted(make_daemon: MakeDaemon) -> None:
    daemon = provision(make_daemon(settings={**SETTINGS, "crm": {"enabled": False}})).start()
    receive(daemon, message("bob@acme.example", "alice@example.test", "x", "off@x"), "bob@acme.example")
    assert len(daemon.messages("alice@example.test")) == 1
    assert daemon.query("SELECT count(*) AS n FROM crm_contacts")[0]["n"] == 0


def test_rule_folders_are_ones_imap_can_open(make_daemon: MakeDaemon) -> None:
    """A rule's folder that is a \\Noselect level (left by DELETE of a parent with children) becomes a real mailbox
    again, and "inbox/Sub" is INBOX/Sub as IMAP reads it: before, each message was stored in a mailbox no client
    could SELECT. Local mail through submission is filed by the same rules as mail from the MX."""
    daemon = provision(make_daemon(submission=True, imap=True, settings=SETTINGS)).start()
    imap = imaplib.IMAP4(daemon.host, daemon.imap_port, timeout=15)
    imap.starttls(ssl._create_unverified_context())
    imap.login("alice@example.test", PASSWORD)
    assert imap.create("Par/Child")[0] == "OK" and imap.delete("Par")[0] == "OK"
    script = (
        'require "fileinto";\n'
        'if header :is "subject" "one" { fileinto "Par"; }\n'
        'elsif header :is "subject" "two" { fileinto "inbox/Sub"; }\n'
    )
    daemon.cli("rules", "add", "alice@example.test", "r", input=script)
    receive(daemon, message("jo@acme.example", "alice@example.test", "one", "n1@x"), "jo@acme.example")
    send(
        daemon,
        message("bob@example.test", "alice@example.test", "two", "n2@x"),
        ["alice@example.test"],
        "bob@example.test",
    )
    assert imap.select("Par", readonly=True) == ("OK", [b"1"])
    assert imap.select("INBOX/Sub", readonly=True) == ("OK", [b"1"])
    assert imap.select("inbox", readonly=True) == ("OK", [b"0"])
    listed = [line.decode() for line in imap.list()[1] if isinstance(line, bytes)]
    assert not any(line.endswith(('"/" inbox', '"/" inbox/Sub')) for line in listed), listed
    imap.logout()


def test_renaming_contacts_and_companies_renames_their_folders(make_daemon: MakeDaemon) -> None:
    """`contacts rename` / `companies rename`: the owner's name for a contact or company (there was no way to
    fix one made from a header, or an "Xn Bcher Kva"); the IMAP folder follows with a new UIDVALIDITY."""
    daemon = provision(make_daemon(imap=True, settings={**SETTINGS, "auth": {"plaintext_loopback": True}})).start()
    receive(daemon, message('"Doe, J." <jd@mail.acme.example>', "alice@example.test", "Hi", "r1@acme.example"),
            "jd@mail.acme.example")  # fmt: skip
    cli = functools.partial(daemon.cli, check=False)
    assert cli("contacts", "rename", "alice@example.test", "jd@mail.acme.example", " John\tDoe ").stdout == (
        "jd@mail.acme.example: renamed John Doe\n"
    )
    assert cli("companies", "rename", "alice@example.test", "Mail.ACME.example", "ACME Corp").returncode == 0
    [company] = json.loads(cli("companies", "list", "alice@example.test", "--json").stdout)
    assert (company["name"], company["domain"], company["contacts"], company["confirmed"]) == (
        "ACME Corp", "acme.example", 1, 1
    )  # fmt: skip
    [john] = contacts_json(daemon)
    assert (john["name"], john["company"], john["confirmed"]) == ("John Doe", "ACME Corp", True)
    receive(daemon, message('"Johnny" <jd@mail.acme.example>', "alice@example.test", "Again", "r2@acme.example"),
            "jd@mail.acme.example")  # fmt: skip
    assert contacts_json(daemon)[0]["name"] == "John Doe"  # mail never replaces the owner's name
    imap = imaplib.IMAP4(daemon.host, daemon.imap_port, timeout=15)
    imap.login("alice@example.test", PASSWORD)
    names = [line.decode().split(' "/" ')[1] for line in imap.list()[1] if isinstance(line, bytes)]
    assert '"Contacts/John Doe"' in names and '"Companies/ACME Corp"' in names
    status = imap.status('"Contacts/John Doe"', "(MESSAGES UIDVALIDITY)")[1][0]
    assert b"MESSAGES 2" in status and b"UIDVALIDITY 1)" not in status
    imap.logout()
    for args, error in [
        (
            ("contacts", "rename", "alice@example.test", "#1", " \x01 "),
            "Error: not a name: ' \\x01 ' (1-200 characters)",
        ),
        (("contacts", "rename", "alice@example.test", "nobody@x.example", "N"), "Error: no contact with the address"),
        (("companies", "rename", "alice@example.test", "other.example", "N"), "Error: no company 'other.example'"),
        (("companies", "rename", "alice@example.test", "#9", "N"), "Error: no company #9"),
        (("companies", "rename", "alice@example.test", "", "N"), "Error: name a company by domain, #id or name"),
        (("companies", "list", "nobody@example.test"), "Error: no such account: nobody@example.test"),
    ]:
        result = cli(*args)
        assert result.returncode == 1 and result.stderr.startswith(error) and result.stderr.count("\n") == 1, result
