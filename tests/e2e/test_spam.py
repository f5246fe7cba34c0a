"""The spam filter on the real daemon: corpus training with the CLI, SMTP delivery into Junk, and learning from
IMAP (MOVE out of Junk, the $Junk keyword) that changes the next verdict."""

from __future__ import annotations

import json
import re
import shutil
import smtplib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon import Daemon
from tests.support.dnsmasq import Dnsmasq
from tests.support.imap import client, imap_daemon

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "spamassassin" / "train"
ALICE = "alice@example.test"
FORGED_VERDICT = b"X-Spam-Flag: NO\r\nX-Spam-Status: No, score=-5.0\r\n  required=5.0\r\nX-Spam-Score: 0.0001\r\n"


def corpus_files(folder: str, count: int) -> list[Path]:
    files = sorted(p for p in (CORPUS / folder).iterdir() if p.is_file() and not p.name.startswith("."))
    return files[:count]


def as_smtp(raw: bytes) -> bytes:
    """A corpus file as it would arrive over SMTP: without the mbox ``From `` line."""
    return raw.split(b"\n", 1)[1] if raw.startswith(b"From ") else raw


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, dns_server: Dnsmasq) -> Iterator[tuple[Daemon, bytes]]:
    """A daemon whose alice has a model trained on 200 ham and 200 spam from the corpus (``[spam] min_trained``,
    the fewest of each that files mail); yields it and a spam not among them (without its mbox line)."""
    if not CORPUS.is_dir():
        pytest.skip("no spam corpus")
    root = tmp_path_factory.mktemp("spam")
    ham, spam = root / "ham", root / "spam"
    ham.mkdir()
    spam.mkdir()
    for path in corpus_files("ham/easy-ham-1", 175) + corpus_files("ham/hard-ham-1", 25):
        shutil.copy(path, ham / path.name)
    spams = corpus_files("spam/spam-1", 200)
    for path in spams:
        (spam / path.name).write_bytes(as_smtp(path.read_bytes()))
    daemon = imap_daemon(root / "mx", dns_server.nameserver)
    result = daemon.cli("spam", "train", ALICE, "--ham", str(ham), "--spam", str(spam))
    assert "400 messages" in result.stdout
    again = daemon.cli("spam", "train", ALICE, "--ham", str(ham), "--spam", str(spam))
    assert "0 learned, 400 already trained" in again.stdout
    yield daemon, as_smtp(corpus_files("spam/spam-1", 201)[200].read_bytes())  # a spam it was not trained on
    daemon.stop()


def deliver(daemon: Daemon, raw: bytes) -> None:
    with smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=30) as smtp:
        smtp.sendmail("sender@elsewhere.test", [ALICE], raw)


def spam_score(stored: bytes) -> float:
    match = re.search(rb"^X-Spam-Score: ([0-9.]+)\r$", stored, re.MULTILINE)
    assert match, stored[:400]
    return float(match.group(1))


def wait_trained(daemon: Daemon, klass: str, count: int) -> None:
    """Training runs in the background after the IMAP reply: poll its record."""
    for _ in range(200):
        rows = daemon.query(
            "SELECT count(*) AS n FROM spam_trained t JOIN accounts a ON a.id = t.scope "
            "WHERE a.email = ? AND t.source LIKE 'imap-%' AND t.class = ?",
            ALICE,
            klass,
        )
        if rows[0]["n"] >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"no {klass} training recorded")


def test_spam_goes_to_junk_and_moving_it_out_changes_the_next_verdict(trained: tuple[Daemon, bytes]) -> None:
    daemon, spam = trained
    deliver(daemon, FORGED_VERDICT + spam)
    [junked] = daemon.messages(ALICE, "Junk")
    first = spam_score(junked)
    assert first > 0.99 and b"X-Spam-Status: Yes, verdict=spam" in junked
    # the sender's own verdict fields are gone; ours say Junk, with SpamAssassin's flag for clients' junk rules
    assert junked.count(b"X-Spam-Status:") == junked.count(b"X-Spam-Score:") == 1, junked[:600]
    assert b"\r\nX-Spam-Flag: YES\r\n" in junked and b"X-Spam-Flag: NO" not in junked
    assert b"ham_below=0.2, spam_above=0.99\r\n" in junked  # a model of 400 messages: the raised cut-off
    keywords = daemon.query("SELECT keywords FROM messages m JOIN mailboxes x ON x.id = m.mailbox_id "
                            "WHERE x.name = 'Junk'")[0]["keywords"]  # fmt: skip
    assert "$Junk" in keywords.split()

    imap = client(daemon)
    imap.select("Junk")
    assert imap.uid("MOVE", "1", "INBOX")[0] == "OK"
    wait_trained(daemon, "ham", 1)
    imap.select("INBOX")
    flags = imap.uid("FETCH", "1", "(FLAGS)")[1][0]
    assert b"$NotJunk" in flags and b"$Junk" not in flags, flags  # clients show the user's decision

    deliver(daemon, spam)
    assert len(daemon.messages(ALICE, "Junk")) == 0
    inbox = daemon.messages(ALICE, "INBOX")
    assert len(inbox) == 2
    assert spam_score(inbox[1]) < 0.9 < first and b"X-Spam-Status: No" in inbox[1]
    assert b"X-Spam-Flag" not in inbox[1]

    # Setting $Junk on it teaches spam again: the message goes back to Junk next time.
    imap.select("INBOX")
    assert imap.uid("STORE", "2", "+FLAGS", "($Junk)")[0] == "OK"
    wait_trained(daemon, "spam", 1)
    imap.logout()
    deliver(daemon, spam)
    assert len(daemon.messages(ALICE, "Junk")) == 1


def test_an_account_short_of_min_trained_files_nothing_by_score(trained: tuple[Daemon, bytes], tmp_path: Path) -> None:
    """bob has no model of his own and there is no global one: his first move into Junk teaches one spam, after
    which every message scored as spam (before the minimum, his next ham went to Junk). The score is still
    recorded; the verdict says why nothing was filed."""
    daemon, spam = trained
    bob = "bob@example.test"
    with smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=30) as smtp:
        smtp.sendmail("sender@elsewhere.test", [bob], spam)
    [first] = daemon.messages(bob, "INBOX")
    assert b"X-Spam-Status: No, verdict=untrained, trained=0 spam/0 ham, min_trained=200," in first
    imap = client(daemon, bob)
    imap.select("INBOX")
    assert imap.uid("MOVE", "1", "Junk")[0] == "OK"
    imap.logout()
    for _ in range(200):
        if daemon.query("SELECT count(*) AS n FROM spam_trained t JOIN accounts a ON a.id = t.scope "
                        "WHERE a.email = ?", bob)[0]["n"]:  # fmt: skip
            break
        time.sleep(0.05)
    ham_dir, spam_dir = tmp_path / "ham", tmp_path / "spam"
    ham_dir.mkdir()
    spam_dir.mkdir()
    for path in corpus_files("ham/easy-ham-2", 2):
        shutil.copy(path, ham_dir / path.name)
    ham = as_smtp(corpus_files("ham/easy-ham-1", 1)[0].read_bytes())
    with smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=30) as smtp:
        smtp.sendmail("sender@elsewhere.test", [bob], ham)
    [second] = daemon.messages(bob, "INBOX")
    assert spam_score(second) > 0.79  # the lone spam learned makes everything look like it
    assert b"X-Spam-Status: No, verdict=untrained, trained=1 spam/0 ham, min_trained=200," in second
    keywords = daemon.query(
        "SELECT keywords FROM messages m JOIN mailboxes x ON x.id = m.mailbox_id "
        "JOIN accounts a ON a.id = x.account_id WHERE a.email = ? AND x.name = 'INBOX'",
        bob,
    )
    assert keywords[0]["keywords"] == ""  # fmt: skip
    taught = daemon.cli("spam", "train", bob, "--ham", str(ham_dir), "--spam", str(spam_dir))
    assert "fewer than [spam] min_trained (200) of each: the daemon files nothing by its verdicts yet" in taught.stderr
    scored = daemon.cli("spam", "score", "--json", "--user", bob, *map(str, ham_dir.iterdir()))
    assert json.loads(scored.stdout)[0]["verdict"] == "untrained" and "2 ham, fewer than" in scored.stderr


def test_cli_score_and_stats(trained: tuple[Daemon, bytes], tmp_path: Path) -> None:
    daemon, spam = trained
    ham = corpus_files("ham/easy-ham-1", 1)[0]
    spam_file = tmp_path / "spam.eml"
    spam_file.write_bytes(spam)
    result = daemon.cli("spam", "score", "--json", "--user", ALICE, str(spam_file), str(ham))
    scores = json.loads(result.stdout)
    assert [s["file"] for s in scores] == [str(spam_file), str(ham)]
    assert scores[0]["verdict"] == "spam" and scores[1]["verdict"] == "ham"
    assert [s["list_mail"] for s in scores] == [False, False]  # the ham came through a list, but 400 learned: too few
    # About 400 messages learned, under [spam] confident_after (2000): the cut-off is raised, and the CLI says so.
    assert "fewer than [spam] confident_after (2000): its spam cut-off is 0.99 instead of 0.79\n" in result.stderr
    assert 0.0 <= scores[1]["score"] < scores[0]["score"] <= 1.0
    explained = json.loads(daemon.cli("spam", "score", "--json", "--explain", "--user", ALICE, str(spam_file)).stdout)
    [clues] = [entry.pop("clues") for entry in explained]
    assert explained == scores[:1] and {c["model"] for c in clues} <= {"all", "head", "body"}
    assert clues[0]["f"] > 0.9 and any(c["model"] == "head" for c in clues) and any(c["model"] == "body" for c in clues)
    text = daemon.cli("spam", "score", "--explain", "--user", ALICE, str(spam_file)).stdout.splitlines()
    assert text[0].endswith("\tspam") and text[1].startswith("\t0.9") and len(text) == 1 + len(clues)
    # More than PRELOAD_FILES: the model is loaded into memory first; 402 files are scored on every core.
    for copies in (26, 201):
        many = [str(spam_file), str(ham)] * copies
        loaded = json.loads(daemon.cli("spam", "score", "--json", "--user", ALICE, *many).stdout)
        assert loaded == scores * copies
    stats = json.loads(daemon.cli("spam", "stats", "--json").stdout)
    [mine] = [row for row in stats if row["scope"] == ALICE]
    assert mine["nspam"] > 0 and mine["nham"] > 0 and mine["tokens"] > 0
    assert mine["spam_above"] == 0.99  # about 400 messages, no global model: the raised cut-off
    assert "; spam cut-off 0.99" in daemon.cli("spam", "stats").stdout
    # The same model past confident_after (100 here) is given a lowered cut-off, down to spam_above_min (0.7).
    large = daemon.root / "large.toml"
    large.write_text(daemon.config_path.read_text().replace("confident_after = 2000", "confident_after = 100"))
    lowered = daemon.cli("spam", "score", "--json", "--user", ALICE, str(spam_file), config=large)
    assert json.loads(lowered.stdout) == scores[:1]
    assert "more than [spam] confident_after (100): its spam cut-off is 0.70 instead of 0.79\n" in lowered.stderr
    restated = json.loads(daemon.cli("spam", "stats", "--json", config=large).stdout)
    assert [row["spam_above"] for row in restated if row["scope"] == ALICE] == [0.7]
    failed = daemon.cli(
        "spam", "train", "--global", ALICE, "--ham", str(tmp_path), "--spam", str(tmp_path), check=False
    )
    assert failed.returncode != 0 and failed.stderr.count("\n") == 1


def test_mail_through_a_discussion_list_is_judged_against_the_lower_cut_off(
    trained: tuple[Daemon, bytes], tmp_path: Path
) -> None:
    """A model past confident_after lowers the spam cut-off one log-odds for mail a discussion list forwarded, and
    says so; a smaller one (alice's 400 messages, under the default 2,000) keeps its own cut-off for it."""
    daemon, spam = trained
    listed_spam = b"List-Post: <mailto:talk@lists.elsewhere.test>\r\nX-Probe: listed\r\n" + spam
    deliver(daemon, listed_spam)
    copies = daemon.messages(ALICE, "Junk") + daemon.messages(ALICE, "INBOX")
    [listed] = [m for m in copies if b"X-Probe: listed" in m]
    assert b"list-mail" not in listed and b"spam_above=0.99\r\n" in listed  # too small a model: not lowered
    path = tmp_path / "listed.eml"
    path.write_bytes(listed_spam)
    large = daemon.root / "large-list.toml"
    large.write_text(daemon.config_path.read_text().replace("confident_after = 2000", "confident_after = 100"))
    scored = json.loads(daemon.cli("spam", "score", "--json", "--user", ALICE, str(path), config=large).stdout)
    assert scored[0]["list_mail"] is True  # past confident_after: judged against 0.46 instead of 0.7
    [small] = json.loads(daemon.cli("spam", "score", "--json", "--user", ALICE, str(path)).stdout)
    assert small["list_mail"] is False and small["score"] == scored[0]["score"]
    off = daemon.root / "large-list-off.toml"
    off.write_text(large.read_text().replace("list_mail_shift = 1\n", "list_mail_shift = 0\n"))
    [unshifted] = json.loads(daemon.cli("spam", "score", "--json", "--user", ALICE, str(path), config=off).stdout)
    assert unshifted["list_mail"] is False  # list_mail says the cut-off was lowered, which a shift of 0 never does
