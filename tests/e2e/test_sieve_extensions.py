"""Sieve extensions end to end: a Roundcube-style script uploaded with sievelib's ManageSieve client sorts mail
delivered over SMTP (folders and flags checked over IMAP); a pathological ``:regex`` does not stall delivery;
errors carry a line number; ``rules add`` takes the same extensions and ``rules test`` shows what they do."""

from __future__ import annotations

import imaplib
import smtplib
from pathlib import Path

import pytest

from tests.e2e.conftest import MakeDaemon, provision
from tests.e2e.test_managesieve import ALICE, SETTINGS, imap_folder, sievelib
from tests.support.daemon import PASSWORD, Daemon, wait_for
from tests.support.imap import tls_client_context

ROUNDCUBE = """require ["fileinto","envelope","body","variables","relational","regex","date","subaddress","imap4flags",\
"comparator-i;ascii-numeric","index"];
# rule:[lists]
if header :matches "subject" "[*] *"
{
\tset :lower "list" "${1}";
\tfileinto "Lists/${list}";
\tstop;
}
# rule:[shop]
if envelope :detail "to" "shop"
{
\taddflag "$Shop";
\tfileinto "Shopping";
\tstop;
}
# rule:[urgent]
if allof (body :text :contains "urgent", header :value "le" :comparator "i;ascii-numeric" "x-priority" "2")
{
\taddflag "\\\\Flagged";
}
# rule:[backtrack]
if header :regex "subject" "^(a|aa)*(b|c)+x$"
{
\tfileinto "Regex";
\tstop;
}
# rule:[old]
if date :value "lt" :originalzone "date" "year" "2000"
{
\tfileinto "Old";
}
"""


@pytest.fixture
def relentad(make_daemon: MakeDaemon) -> Daemon:
    return provision(make_daemon(imap=True, managesieve=True, settings=SETTINGS)).start()


def send(daemon: Daemon, subject: str, *, to: str = ALICE, extra: str = "", body: str = "Hello.") -> None:
    raw = f"From: Shop <shop@elsewhere.test>\r\nTo: {to}\r\nSubject: {subject}\r\n{extra}\r\n{body}\r\n".encode()
    with smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=10) as client:
        assert client.sendmail("shop@elsewhere.test", [to], raw) == {}


def test_a_roundcube_script_sorts_mail_delivered_over_smtp(relentad: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    client = sievelib(relentad, monkeypatch)
    capabilities = client.get_sieve_capabilities()
    for name in ("body", "variables", "relational", "regex", "date", "index", "subaddress", "spamtest"):
        assert name in capabilities
    assert client.putscript("roundcube", ROUNDCUBE), client.errmsg
    assert client.setactive("roundcube")
    # an error names its line (RFC 5804 §2.6: a human-readable reason)
    broken = ROUNDCUBE.replace('"^(a|aa)*(b|c)+x$"', '"(a|b"')
    assert not client.checkscript(broken) and client.errmsg.startswith(b"sieve: line 22: :regex")
    assert not client.putscript("broken", 'require "variables";\nset "1x" "y";') and b"line 2: set" in client.errmsg

    send(relentad, "[Acme-Dev] build failed")
    send(relentad, "your order", to="alice+shop@example.test")
    send(relentad, "please", extra="X-Priority: 1\r\n", body="This is URGENT.")
    send(relentad, "a" * 900 + "x")  # exponential for a backtracking engine; must not match (no b/c)
    send(relentad, "aab" + "c" * 50 + "x")
    send(relentad, "party", extra="Date: Fri, 31 Dec 1999 23:59:59 +0000\r\n")

    assert wait_for("the list mail", lambda: imap_folder(relentad, "Lists/acme-dev"))[0].startswith(
        b"Subject: [Acme-Dev] build failed"
    )
    [shop] = wait_for("the shop mail", lambda: imap_folder(relentad, "Shopping"))
    assert b"$Shop" in shop
    [regex] = wait_for("the regex mail", lambda: imap_folder(relentad, "Regex"))
    assert regex.startswith(b"Subject: aabccc")
    assert wait_for("the old mail", lambda: imap_folder(relentad, "Old"))[0].startswith(b"Subject: party")
    inbox = wait_for("INBOX", lambda: len(imap_folder(relentad, "INBOX")) >= 2 and imap_folder(relentad, "INBOX"))
    urgent = [m for m in inbox if m.startswith(b"Subject: please")]
    assert urgent and b"\\Flagged" in urgent[0]
    assert any(m.startswith(b"Subject: aaaa") for m in inbox), "the pathological subject was delivered and kept"
    client.logout()


def test_rules_add_and_test_show_the_new_actions(relentad: Daemon, tmp_path: Path) -> None:
    relentad.cli("rules", "add", ALICE, "lists", "-", input=ROUNDCUBE)
    script = 'require "regex";\n\nif header :regex "s" "\\\\1" {keep;}\n'
    refused = relentad.cli("rules", "add", ALICE, "bad", "-", input=script, check=False)
    assert refused.returncode != 0
    assert refused.stderr.strip().endswith("sieve: line 3: :regex '\\\\1': back-references are not supported")
    assert len(refused.stderr.strip().splitlines()) == 1
    sample = tmp_path / "m.eml"
    sample.write_bytes(b"From: x@elsewhere.test\r\nTo: alice@example.test\r\nSubject: [Ops] disk full\r\n\r\nhi\r\n")
    shown = relentad.cli("rules", "test", ALICE, str(sample)).stdout
    assert "file into Lists/ops" in shown and "lists: fileinto Lists/ops" in shown


def test_reject_refuses_at_smtp_time_only_when_every_copy_rejects(relentad: Daemon, tmp_path: Path) -> None:
    script = 'require "reject";\nif header :contains "subject" "lottery" {\n'
    script += " reject text:\nI do not want\nthis. ünï\n.\n;\n}\n"
    relentad.cli("rules", "add", ALICE, "no-lottery", "-", input=script)
    raw = b"From: x@elsewhere.test\r\nTo: alice@example.test\r\nSubject: lottery win\r\n\r\nhi\r\n"
    with smtplib.SMTP(relentad.host, relentad.smtp_port, timeout=10) as client:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail("x@elsewhere.test", [ALICE], raw)
        assert refused.value.smtp_code == 550
        assert refused.value.smtp_error == b"5.7.1 I do not want this. ?n?"
        # alice and bob: bob takes it, so alice's copy is kept (no bounce after the 250)
        assert client.sendmail("x@elsewhere.test", [ALICE, "bob@example.test"], raw) == {}
    [kept] = wait_for("alice's kept copy", lambda: imap_folder(relentad, "INBOX"))
    assert kept.startswith(b"Subject: lottery win")
    sample = tmp_path / "m.eml"
    sample.write_bytes(raw)
    shown = relentad.cli("rules", "test", ALICE, str(sample)).stdout
    assert "reject (550 5.7.1 at SMTP time when it is the only recipient): I do not want" in shown


def test_a_hostile_regex_is_cut_off_and_the_message_kept(relentad: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pattern whose DFA thrashes its cache, on a body of 200 KiB of a random a/b mix, would hold the event loop
    (SMTP and IMAP for everyone) for seconds per message: the work limit ends the script, the message is kept."""
    import random

    client = sievelib(relentad, monkeypatch)
    script = 'require ["body", "regex", "imap4flags"];\naddflag "$Tried";\n'
    script += 'if body :regex "(a|b)*a(a|b){20}c" { addflag "$Hit"; }\n'
    assert client.putscript("hostile", script), client.errmsg
    assert client.setactive("hostile")
    client.logout()
    mix = "".join(random.Random(1).choices("ab", k=200_000))
    send(relentad, "big", body="\r\n".join(mix[i : i + 76] for i in range(0, len(mix), 76)))
    [kept] = wait_for("the kept message", lambda: imap_folder(relentad, "INBOX"))
    assert kept.startswith(b"Subject: big") and b"$Tried" not in kept, "the failed script's actions are dropped"


def bob_inbox(daemon: Daemon) -> list[bytes]:
    with imaplib.IMAP4(daemon.host, daemon.imap_port, timeout=15) as conn:
        conn.starttls(tls_client_context())
        conn.login("bob@example.test", PASSWORD)
        conn.select("INBOX", readonly=True)
        _, data = conn.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        return [part[1].strip() for part in data if isinstance(part, tuple)]


def test_reject_with_vacation_answers_the_sender_once(relentad: Daemon) -> None:
    """RFC 5429 §2.2: reject and vacation are incompatible (both answer the sender). Refused at SMTP time, the
    vacation reply is not sent; when the reject cannot be done (another recipient took the message), the copy is
    kept and the vacation goes."""
    script = 'require ["reject", "vacation"];\nif header :contains "subject" "lottery" {\n'
    script += ' vacation :handle "h" :subject "Away" "Back soon.";\n reject "No lotteries.";\n}\n'
    relentad.cli("rules", "add", ALICE, "away", "-", input=script)
    raw = b"From: bob@example.test\r\nTo: alice@example.test\r\nSubject: lottery\r\n\r\nhi\r\n"
    with smtplib.SMTP(relentad.host, relentad.smtp_port, timeout=10) as client:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail("bob@example.test", [ALICE], raw)
        assert refused.value.smtp_code == 550
        assert bob_inbox(relentad) == [], "no vacation reply to a refused message (it would be filed before the 550)"
        assert client.sendmail("bob@example.test", [ALICE, "carol@example.test"], raw) == {}
    assert wait_for("the vacation reply", lambda: bob_inbox(relentad)) == [b"Subject: Away"]
    assert imap_folder(relentad, "INBOX")[0].startswith(b"Subject: lottery")
