"""SQLite token counts: idempotent training, exact unlearning, pruning bounds, per-account vs global scopes."""

from __future__ import annotations

import functools
import sqlite3
from pathlib import Path

import pytest

from relentad import doctor
from relentad.config import SpamConfig
from relentad.spam import storage, training, verdicts
from relentad.spam.classifier import MemoryCounts, Thresholds, score
from relentad.spam.storage import GLOBAL, StoredCounts
from relentad.spam.tokenize import TOKENIZER_VERSION
from relentad.spam.views import BODY_MARK, HEAD_MARK, score_stored
from relentad.store import db

SPAMMY = frozenset({"viagra", "cheap", "winner", "subj:free", "hdr:x-mailer-bulk"})
HAMMY = frozenset({"meeting", "agenda", "tuesday", "subj:minutes", "from:colleague"})


def snapshot(conn: sqlite3.Connection) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    tokens = conn.execute("SELECT scope, token, spam, ham FROM spam_tokens ORDER BY scope, token").fetchall()
    totals = conn.execute(
        "SELECT scope, nspam, nham, tokens, head_spam, head_ham, body_spam, body_ham FROM spam_totals ORDER BY scope"
    ).fetchall()
    return [tuple(r) for r in tokens], [tuple(r) for r in totals]


def rows(conn: sqlite3.Connection, scope: int) -> int:
    return int(conn.execute("SELECT count(*) FROM spam_tokens WHERE scope = ?", (scope,)).fetchone()[0])


def base_model(conn: sqlite3.Connection, scope: int = GLOBAL) -> None:
    items = []
    for i in range(20):
        items.append((storage.digest(b"spam%d" % i), SPAMMY | {f"s{i}"}, True))
        items.append((storage.digest(b"ham%d" % i), HAMMY | {f"h{i}"}, False))
    storage.train_corpus(conn, scope, items)


def test_retraining_a_message_is_idempotent(conn: sqlite3.Connection) -> None:
    base_model(conn)
    key = storage.digest(b"message")
    assert storage.train_message(conn, 1, key, SPAMMY | {"odd"}, True, "test") >= 1
    after_first = snapshot(conn)
    assert storage.train_message(conn, 1, key, SPAMMY | {"odd"}, True, "test") == 0
    assert snapshot(conn) == after_first


def test_bulk_training_twice_changes_nothing(conn: sqlite3.Connection) -> None:
    base_model(conn)
    first = snapshot(conn)
    result = storage.train_corpus(
        conn,
        GLOBAL,
        [(storage.digest(b"spam%d" % i), SPAMMY | {f"s{i}"}, True) for i in range(20)],
    )
    assert result.unchanged == 20 and result.learned == 0
    assert snapshot(conn) == first


def test_model_of_an_older_tokenizer_is_flagged_and_retrained(conn: sqlite3.Connection, tmp_path: Path) -> None:
    base_model(conn)
    assert storage.tokenizer_version(conn, GLOBAL) == TOKENIZER_VERSION
    assert not storage.stats(conn)[0]["stale"]
    current = snapshot(conn)
    conn.execute("UPDATE spam_totals SET tokenizer = 1 WHERE scope = ?", (GLOBAL,))  # as migrated from before
    assert storage.stats(conn)[0]["stale"]
    items = [(storage.digest(b"spam%d" % i), SPAMMY | {f"s{i}", "new"}, True) for i in range(20)]
    items += [(storage.digest(b"ham%d" % i), HAMMY | {f"h{i}"}, False) for i in range(20)]
    result = storage.train_corpus(conn, GLOBAL, items)  # the same files, tokenized anew: relearned, not skipped
    assert result.refreshed == 40 and result.unchanged == 0 and result.flipped == 0
    assert storage.tokenizer_version(conn, GLOBAL) == TOKENIZER_VERSION and not storage.stats(conn)[0]["stale"]
    assert conn.execute("SELECT spam FROM spam_tokens WHERE scope = ? AND token = 'new'", (GLOBAL,)).fetchone()
    fresh = db.open_database(tmp_path / "fresh.db")
    storage.train_corpus(fresh, GLOBAL, items)  # a fresh model of the new tokens: the retrained one equals it
    assert snapshot(conn)[0] == snapshot(fresh)[0] != current[0]
    fresh.close()
    assert storage.train_corpus(conn, GLOBAL, items).unchanged == 40  # current again: idempotent as before


def test_flipping_a_message_unlearns_it_exactly(conn: sqlite3.Connection) -> None:
    base_model(conn)
    before = snapshot(conn)
    key = storage.digest(b"newsletter")
    tokens = HAMMY | {"unsubscribe", "offer"}
    storage.train_message(conn, 1, key, tokens, True, "imap-move")
    assert storage.trained_as(conn, 1, key) is not None
    storage.train_message(conn, 1, key, tokens, False, "imap-move")
    assert storage.trained_as(conn, 1, key) == ("ham", storage.trained_as(conn, 1, key)[1])  # type: ignore[index]
    assert storage.forget(conn, 1, key)
    assert snapshot(conn)[0] == before[0]  # every token count back where it was
    assert [t for t in snapshot(conn)[1] if t[0] == GLOBAL] == [t for t in before[1] if t[0] == GLOBAL]
    totals = "SELECT nspam, nham, tokens, head_spam, head_ham, body_spam, body_ham FROM spam_totals WHERE scope = 1"
    assert tuple(conn.execute(totals).fetchone()) == (0,) * 7


def test_storage_matches_memory_counts(conn: sqlite3.Connection) -> None:
    memory = MemoryCounts()
    for tokens, spam in ((SPAMMY, True), (HAMMY, False), (SPAMMY | {"x"}, True)):
        memory.learn(tokens, spam)
        storage._learn(conn, GLOBAL, sorted(tokens), spam, 1)
    stored = StoredCounts(conn, GLOBAL)
    assert (stored.nspam, stored.nham) == (memory.nspam, memory.nham)
    probe = SPAMMY | HAMMY | {"x", "unknown"}
    assert stored.lookup(probe) == memory.lookup(probe)
    assert score(probe, stored) == score(probe, memory)


def test_account_counts_are_summed_with_global(conn: sqlite3.Connection) -> None:
    base_model(conn)
    mine = StoredCounts(conn, 1)
    assert (mine.nspam, mine.nham) == (StoredCounts(conn, GLOBAL).nspam, StoredCounts(conn, GLOBAL).nham)
    key = storage.digest(b"x")
    storage.train_message(conn, 1, key, frozenset({"viagra", "own-token"}), False, "test")
    one, two = StoredCounts(conn, 1), StoredCounts(conn, 2)
    assert one.nham > two.nham
    assert one.lookup({"viagra"})["viagra"][1] >= 1 and two.lookup({"viagra"})["viagra"][1] == 0
    assert "own-token" not in two.lookup({"own-token"})
    assert "own-token" in one.lookup({"own-token"})
    alone = StoredCounts(conn, 1, with_global=False)
    assert alone.nspam == 0 and alone.lookup({"viagra"})["viagra"] == (0, alone.nham)


def test_user_correction_changes_the_verdict(conn: sqlite3.Connection) -> None:
    base_model(conn)
    tokens = SPAMMY | {"really", "from:friend"}
    assert score(tokens, StoredCounts(conn, 1)) > 0.9
    storage.train_message(conn, 1, storage.digest(b"m"), tokens, False, "imap-move")
    assert score(tokens, StoredCounts(conn, 1)) < 0.9
    assert score(tokens, StoredCounts(conn, 2)) > 0.9  # the other account keeps its verdict


def test_pruning_keeps_the_table_bounded_by_recency(conn: sqlite3.Connection) -> None:
    for n in range(30):
        tokens = {f"t{n}-{i}" for i in range(100)}
        storage.add_counts(conn, 1, dict.fromkeys(tokens, (1, 0)), now=86400.0 * (1000 + n))
    assert rows(conn, 1) == 3000
    removed = storage.prune(conn, 1, max_tokens=1000, now=86400.0 * 1030)
    assert removed == 3000 - 900 and rows(conn, 1) == 900
    assert conn.execute("SELECT tokens FROM spam_totals WHERE scope = 1").fetchone()[0] == 900
    kept = {r[0] for r in conn.execute("SELECT DISTINCT seen FROM spam_tokens WHERE scope = 1")}
    assert min(kept) >= 1021  # the most recently used survive, whatever their counts
    assert storage.prune(conn, 1, max_tokens=1000, now=86400.0 * 1030) == 0
    removed = storage.prune(conn, 1, max_tokens=1000, max_age_days=5, now=86400.0 * 1030)
    assert rows(conn, 1) == 500 and removed == 400


def test_touch_refreshes_seen_for_pruning(conn: sqlite3.Connection) -> None:
    storage.add_counts(conn, GLOBAL, {"old": (1, 0), "other": (0, 1)}, now=0.0)
    storage._totals(conn, GLOBAL, 1, 1, 0)
    counts = StoredCounts(conn, 1)
    counts.lookup({"old", "other"})
    assert counts.stale == {"old", "other"}
    storage.touch(conn, 1, {"old"})
    assert storage.prune(conn, GLOBAL, max_tokens=10**6, max_age_days=30) == 1
    assert [r[0] for r in conn.execute("SELECT token FROM spam_tokens")] == ["old"]


def test_lessons_of_imap_actions() -> None:
    inbox, junk, trash = (
        training._Folder("INBOX", ""),
        training._Folder("Junk", "\\Junk"),
        training._Folder("Trash", ""),
    )
    assert training.lesson_of_copy(inbox, junk) == "spam"
    assert training.lesson_of_copy(junk, inbox) == "ham"
    assert training.lesson_of_copy(junk, trash) is None
    assert training.lesson_of_copy(inbox, trash) is None
    assert training.lesson_of_store("add", ["$Junk"]) == "spam"
    assert training.lesson_of_store("add", ["$NotJunk"]) == "ham"
    assert training.lesson_of_store("remove", ["$junk"]) == "ham"
    assert training.lesson_of_store("remove", ["$NotJunk"]) == "forget"
    assert training.lesson_of_store("add", ["\\Seen"]) is None
    # a STORE teaches what it changed on the message, whatever its mode (FLAGS replaces the list)
    assert training.lesson_of_change("$Junk", "") == "ham"
    assert training.lesson_of_change("", "$junk") == "spam"
    assert training.lesson_of_change("$NotJunk custom", "$Junk custom") == "spam"
    assert training.lesson_of_change("$Junk", "$NotJunk") == "ham"
    assert training.lesson_of_change("$NotJunk", "") == "forget"
    assert training.lesson_of_change("$Junk", "$Junk custom") is None
    assert training.lesson_of_change("$Junk $NotJunk", "") is None


def test_a_copy_crossing_junks_border_gets_the_keyword_of_the_decision() -> None:
    to_junk, out_of_junk = training.relabel("spam"), training.relabel("ham")
    assert to_junk is not None and out_of_junk is not None and training.relabel(None) is None
    assert to_junk("\\Seen $notjunk custom") == "\\Seen custom $Junk"
    assert to_junk("$JUNK") == "$Junk"
    assert out_of_junk("$Junk $label1") == "$label1 $NotJunk"
    assert out_of_junk("") == "$NotJunk"


def test_contact_written_to_is_never_junked_on_content(conn: sqlite3.Connection) -> None:
    base_model(conn)
    for address, count_out in (("friend@b.test", 2), ("stranger@b.test", 0)):
        cursor = conn.execute(
            "INSERT INTO crm_contacts (account_id, name, count_out, created) VALUES (1, '', ?, 0)", (count_out,)
        )
        conn.execute(
            "INSERT INTO crm_addresses (account_id, address, contact_id) VALUES (1, ?, ?)", (address, cursor.lastrowid)
        )
    judge = functools.partial(verdicts.judge, conn, spam=SpamConfig(min_trained=20, confident_after=0), tokens=SPAMMY)
    friend = judge(account_id=1, sender="friend@b.test")
    assert friend.verdict == "spam" and friend.allowlisted and not friend.to_junk
    assert friend.reason().startswith("spam-allowlisted-contact score=")
    assert b"X-Spam-Status: No, verdict=spam, allowlisted" in friend.header()
    assert judge(account_id=1, sender="stranger@b.test").to_junk
    assert judge(account_id=1, sender="friend@b.test", sender_trusted=False).to_junk
    assert judge(account_id=2, sender="friend@b.test").to_junk  # another account's contact


def test_a_model_short_of_min_trained_files_nothing(conn: sqlite3.Connection) -> None:
    """Until the summed model has recorded min_trained messages of each class the verdict is ``untrained``: the
    score is kept and shown, but nothing goes to Junk (one Junk move on an empty account once junked all mail)."""
    cut = Thresholds()
    storage.train_message(conn, 1, storage.digest(b"first junk"), SPAMMY, True, "imap-move")
    lone = verdicts.judge(conn, 1, SPAMMY | HAMMY, SpamConfig())
    assert lone.score > cut.spam_above  # the lone spam taught makes everything look like it
    assert lone.verdict == "untrained" and not lone.to_junk and lone.recorded == (1, 0)
    assert lone.reason().startswith("spam-untrained score=")
    assert b"verdict=untrained, trained=1 spam/0 ham, min_trained=200, score=" in lone.header()
    base_model(conn)  # the global model: 20 of each
    assert verdicts.judge(conn, 1, SPAMMY, SpamConfig(min_trained=21)).verdict == "untrained"
    assert verdicts.judge(conn, 1, SPAMMY, SpamConfig(min_trained=20)).recorded == (21, 20)
    assert verdicts.judge(conn, 1, SPAMMY, SpamConfig(min_trained=20, confident_after=0)).to_junk
    assert verdicts.judge(conn, 1, SPAMMY, SpamConfig(min_trained=0, confident_after=0)).to_junk  # 0: no minimum
    assert verdicts.gated_verdict(0.99, cut, (5, 199), 200) == "untrained"
    assert verdicts.gated_verdict(0.99, cut, (200, 200), 200) == "spam"


def test_the_spam_cut_off_follows_the_models_size() -> None:
    """Below ``confident_after`` recorded messages the spam cut-off rises 0.15 per halving, up to 0.99; above it, it
    falls 0.15 per doubling, down to ``lowest`` (never below ham_below, never raised by it); ham_below untouched,
    and 0 turns the scaling off."""
    cut = Thresholds(0.2, 0.79)
    scaled = functools.partial(verdicts.scaled_thresholds, cut)
    assert scaled(1500, 1500) == scaled(10, 0) == scaled(40_000, 0) == cut
    assert scaled(750, 1500).ham_below == 0.2 and scaled(750, 1500).spam_above == pytest.approx(0.94)
    assert scaled(1000, 1500).spam_above == pytest.approx(0.79 + 0.15 * 0.5849625)
    assert scaled(100, 1500) == scaled(0, 1500) == Thresholds(0.2, 0.99)
    assert verdicts.scaled_thresholds(Thresholds(0.2, 0.995), 10, 1500).spam_above == 0.995
    assert scaled(2000, 1500).spam_above == pytest.approx(0.79 - 0.15 * 0.4150375)
    assert scaled(3000, 1500) == scaled(40_000, 1500) == Thresholds(0.2, 0.7)  # 0.64 by the slope: the floor
    assert scaled(40_000, 1500, 0.6) == Thresholds(0.2, 0.6)
    assert scaled(40_000, 1500, 0.79) == scaled(40_000, 1500, 0.9) == cut  # a floor at or above: never lowered
    assert verdicts.scaled_thresholds(Thresholds(0.75, 0.79), 40_000, 1500).spam_above == 0.75
    sizes = [0, 1, 10, 100, 300, 700, 1000, 1400, 1499, 1500, 1501, 2000, 2500, 3000, 10_000]
    cuts = [scaled(n, 1500).spam_above for n in sizes]
    assert cuts == sorted(cuts, reverse=True)  # more learned, never stricter


def test_a_lopsided_model_counts_as_four_times_its_smaller_class() -> None:
    """The cut-off curve was measured on models with the corpus's mix (31 % spam); one that learned few ham is not
    lowered as if it had met the hard ham a model of that size has."""
    assert verdicts.model_size((948, 2075)) == 3023  # the corpus's mix: every message counts
    assert verdicts.model_size((3000, 300)) == verdicts.model_size((300, 3000)) == 1200
    assert verdicts.model_size((0, 0)) == 0
    spam = SpamConfig()
    assert verdicts.cut_offs(spam, (1250, 1250)).spam_above == pytest.approx(0.79 - 0.15 * 0.3219281)
    assert verdicts.cut_offs(spam, (3000, 300)).spam_above == pytest.approx(0.79 + 0.15 * 0.7369656)
    note = verdicts.size_note(spam, (3000, 300))
    assert note == (
        "3300 messages recorded, counted as 1200 (4 times its 300 ham), fewer than [spam] confident_after (2000): "
        "its spam cut-off is 0.90 instead of 0.79"
    )
    assert verdicts.size_note(spam, (1000, 1000)) == "" and "counted" not in verdicts.size_note(spam, (948, 2075))


def test_the_verdict_and_its_header_use_the_scaled_cut_off(conn: sqlite3.Connection) -> None:
    base_model(conn)  # 40 messages recorded: the cut-off is at its highest
    cut = Thresholds()
    mostly_spammy = SPAMMY | {sorted(HAMMY)[0]}  # scores 0.96
    small = verdicts.judge(conn, 1, mostly_spammy, SpamConfig(min_trained=20))
    assert cut.spam_above < small.score <= 0.99 and small.verdict == "unsure" and not small.to_junk
    assert small.thresholds == Thresholds(cut.ham_below, 0.99)
    assert b"ham_below=0.2, spam_above=0.99\r\n" in small.header()
    assert verdicts.judge(conn, 1, SPAMMY, SpamConfig(min_trained=20)).to_junk  # 0.998: sure enough even so
    trusted = verdicts.judge(conn, 1, mostly_spammy, SpamConfig(min_trained=20, confident_after=40))
    assert trusted.verdict == "spam" and trusted.to_junk and trusted.thresholds == cut
    assert b"spam_above=0.79\r\n" in trusted.header()
    large = verdicts.judge(
        conn, 1, mostly_spammy, SpamConfig(min_trained=20, confident_after=20)
    )  # twice as many learned
    assert large.to_junk and large.thresholds == Thresholds(cut.ham_below, 0.7)  # 0.64 by the slope: the floor
    assert b"spam_above=0.7\r\n" in large.header()
    kept = verdicts.judge(conn, 1, mostly_spammy, SpamConfig(min_trained=20, confident_after=20, spam_above_min=0.79))
    assert kept.thresholds == cut
    between = SPAMMY | {"agenda", "subj:minutes"}  # scores 0.74: unsure at 0.79, spam once the cut-off is 0.7
    assert verdicts.judge(conn, 1, between, SpamConfig(min_trained=20, confident_after=40)).verdict == "unsure"
    assert verdicts.judge(conn, 1, between, SpamConfig(min_trained=20, confident_after=20)).to_junk
    storage.train_corpus(conn, GLOBAL, [(storage.digest(b"more%d" % i), SPAMMY, True) for i in range(60)])
    lopsided = verdicts.judge(
        conn, 1, between, SpamConfig(min_trained=20, confident_after=90)
    )  # 80 spam, 20 ham recorded
    assert lopsided.recorded == (80, 20) and lopsided.thresholds.spam_above > cut.spam_above  # counted as 80, not 100


def test_discussion_list_mail_gets_a_lower_spam_cut_off(conn: sqlite3.Connection) -> None:
    """A list's own header fields are ham clues on everything it forwards: mail through a discussion list is judged
    against a cut-off ``list_mail_shift`` log-odds lower, shown in its header; other mail, or a shift of 0, is not."""
    cut = Thresholds(0.2, 0.7)
    assert verdicts.lowered(cut, 1.0).spam_above == pytest.approx(0.4619, abs=1e-4)
    assert verdicts.lowered(Thresholds(0.2, 0.79), 1.0).spam_above == pytest.approx(0.5805, abs=1e-4)
    assert verdicts.lowered(Thresholds(0.5, 0.7), 1.0) == Thresholds(0.5, 0.5)  # never below ham_below
    assert verdicts.lowered(Thresholds(0.2, 1.0), 1.0) == Thresholds(0.2, 1.0)  # "never spam" stays
    assert verdicts.for_message(cut, True, 0.0) == verdicts.for_message(cut, False, 1.0) == cut
    base_model(conn)
    posted = SPAMMY - {"subj:free", "hdr:x-mailer-bulk"} | {"agenda", "meeting", "hdr:list-post"}  # 0.57: unsure
    config = SpamConfig(min_trained=20, confident_after=20)  # 0.7 for this model
    listed = verdicts.judge(conn, 1, posted, config)
    assert listed.verdict == "spam" and listed.to_junk and listed.list_mail
    assert listed.thresholds.spam_above == pytest.approx(0.4619, abs=1e-4)
    assert listed.thresholds.spam_above < listed.score < 0.7
    assert b", list-mail, score=" in listed.header() and b"spam_above=0.461898\r\n" in listed.header()
    unlisted = verdicts.judge(conn, 1, posted - {"hdr:list-post"}, config)
    assert unlisted.verdict == "unsure" and not unlisted.list_mail and b"list-mail" not in unlisted.header()
    assert unlisted.thresholds == Thresholds(0.2, 0.7)
    off = verdicts.judge(conn, 1, posted, SpamConfig(min_trained=20, confident_after=20, list_mail_shift=0))
    assert off.verdict == "unsure" and not off.list_mail
    small = verdicts.judge(conn, 1, posted, SpamConfig(min_trained=20, confident_after=41))  # 40 learned: too few
    assert small.verdict == "unsure" and not small.list_mail and not verdicts.lowers_list_mail(config, (9, 10))


def test_recorded_counts_follow_training_through_the_cache(conn: sqlite3.Connection) -> None:
    """The daemon's CountCache keeps the recorded counts per totals version; every training changes that."""
    cache = storage.CountCache()
    base_model(conn)
    assert StoredCounts(conn, 1, cache=cache).recorded() == (20, 20)
    assert StoredCounts(conn, 1, cache=cache).recorded() == (20, 20)  # from the cache
    storage.train_message(conn, 1, storage.digest(b"mine"), HAMMY | {"new"}, False, "imap-move")
    assert StoredCounts(conn, 1, cache=cache).recorded() == (20, 21)
    storage.forget(conn, 1, storage.digest(b"mine"))
    assert StoredCounts(conn, 1, cache=cache).recorded() == (20, 20)
    assert StoredCounts(conn, 1, cache=cache, with_global=False).recorded() == (0, 0)
    [row] = [row for row in storage.stats(conn) if row["scope"] == "global"]
    assert (row["recorded"], row["recorded_spam"], row["recorded_ham"]) == (40, 20, 20)
    assert row["sources"] == {"cli": 40}


def test_count_cache_answers_like_the_database_and_follows_every_change(conn: sqlite3.Connection) -> None:
    """The daemon's CountCache: same counts as reading SQLite, dropped whenever a scope's totals change."""
    base_model(conn)
    cache = storage.CountCache()
    probe = SPAMMY | HAMMY | {"own-token", "unknown"}

    def both() -> tuple[dict[str, tuple[int, int]], dict[str, tuple[int, int]]]:
        return StoredCounts(conn, 1, cache=cache).lookup(probe), StoredCounts(conn, 1).lookup(probe)

    cached, fresh = both()
    assert cached == fresh
    conn.execute("UPDATE spam_tokens SET spam = spam + 100 WHERE token = 'viagra'")  # behind the totals' back
    assert both()[0] == cached  # answered from the cache: nothing was asked
    conn.execute("UPDATE spam_tokens SET spam = spam - 100 WHERE token = 'viagra'")
    storage.train_message(conn, 1, storage.digest(b"x"), frozenset({"viagra", "own-token"}), False, "test")
    cached, fresh = both()  # the account's totals changed: its rows are read again
    assert cached == fresh and cached["own-token"][1] >= 1
    storage.train_message(conn, GLOBAL, storage.digest(b"y"), frozenset({"unknown"}), True, "test")
    cached, fresh = both()  # so did the global model's
    assert cached == fresh and "unknown" in cached


def test_count_cache_reports_stale_tokens_once(conn: sqlite3.Connection) -> None:
    base_model(conn)
    conn.execute("UPDATE spam_tokens SET seen = seen - 30")
    cache = storage.CountCache()
    first = StoredCounts(conn, 1, cache=cache)
    first.lookup(SPAMMY)
    assert first.stale == set(SPAMMY)
    again = StoredCounts(conn, 1, cache=cache)  # the caller touches them: no need to report them again
    again.lookup(SPAMMY)
    assert again.stale == set()


def test_count_cache_stays_bounded(conn: sqlite3.Connection) -> None:
    base_model(conn)
    cache = storage.CountCache(max_rows=8)
    for n in range(5):
        counts = StoredCounts(conn, 1, cache=cache)
        assert counts.lookup(SPAMMY | {f"n{n}"}) == StoredCounts(conn, 1).lookup(SPAMMY | {f"n{n}"})
        assert cache._size <= 8


def test_each_model_learns_its_own_view(conn: sqlite3.Connection) -> None:
    base_model(conn)
    stored = StoredCounts(conn, GLOBAL)
    assert stored.head_totals[0] > 0 and stored.head_totals[1] > 0 and stored.body_totals[0] > 0
    probe = {HEAD_MARK + "subj:free", BODY_MARK + "viagra", HEAD_MARK + "viagra", BODY_MARK + "subj:free"}
    found = stored.lookup(probe)
    assert set(found) == {HEAD_MARK + "subj:free", BODY_MARK + "viagra"}  # each token in its one view
    key = storage.digest(b"feedback")
    storage.train_message(conn, 1, key, SPAMMY | {"odd"}, False, "test")
    times = conn.execute("SELECT times, head_times, body_times FROM spam_trained WHERE sha256 = ?", (key,)).fetchone()
    assert all(1 <= t <= storage.FEEDBACK_MAX for t in times)


def test_a_model_trained_before_views_scores_as_the_full_model_alone(conn: sqlite3.Connection) -> None:
    for i in range(10):  # the full model only, as `spam train` wrote it before migration 014
        storage._learn(conn, GLOBAL, sorted(SPAMMY | {f"s{i}"}), True, 1)
        storage._learn(conn, GLOBAL, sorted(HAMMY | {f"h{i}"}), False, 1)
    stored = StoredCounts(conn, GLOBAL)
    assert stored.head_totals == stored.body_totals == (0, 0)
    for tokens in (SPAMMY, HAMMY, SPAMMY | HAMMY, frozenset({"unknown"})):
        assert score_stored(tokens, stored).score == pytest.approx(score(tokens, stored), abs=1e-9)


def test_a_token_that_looks_marked_is_never_stored(conn: sqlite3.Connection) -> None:
    storage.train_message(conn, 1, storage.digest(b"m"), frozenset({"word", HEAD_MARK + "subj:x"}), True, "test")
    stored = [r[0] for r in conn.execute("SELECT token FROM spam_tokens")]
    assert sorted(stored) == sorted(["word", BODY_MARK + "word"])


def test_a_model_loaded_into_memory_scores_like_the_database(conn: sqlite3.Connection) -> None:
    """`spam score` of a folder scores with load_models: the account's and the global rows summed, views kept apart."""
    base_model(conn)
    storage.train_message(conn, 1, storage.digest(b"m"), frozenset({"own-token", "viagra", "subj:minutes"}), False, "x")
    stored, loaded = StoredCounts(conn, 1), storage.load_models(conn, 1)
    assert (loaded.full.nspam, loaded.full.nham) == (stored.nspam, stored.nham)
    assert (loaded.head.nspam, loaded.head.nham) == stored.head_totals
    probes = [SPAMMY, HAMMY, SPAMMY | HAMMY | {"own-token", "unknown"}, frozenset({"viagra", "subj:minutes"})]
    for probe in probes:
        assert loaded.score(probe) == score_stored(probe, stored).score
    assert loaded.head.lookup({"subj:minutes"}) == {
        "subj:minutes": stored.lookup({HEAD_MARK + "subj:minutes"})[HEAD_MARK + "subj:minutes"]
    }


def test_a_model_trained_before_views_loads_and_scores_as_the_full_model_alone(conn: sqlite3.Connection) -> None:
    for i in range(10):
        storage._learn(conn, GLOBAL, sorted(SPAMMY | {f"s{i}"}), True, 1)
        storage._learn(conn, GLOBAL, sorted(HAMMY | {f"h{i}"}), False, 1)
    loaded = storage.load_models(conn, GLOBAL)
    for tokens in (SPAMMY, HAMMY, SPAMMY | HAMMY):
        assert loaded.score(tokens) == score_stored(tokens, StoredCounts(conn, GLOBAL)).score


def test_doctor_warns_of_a_missing_or_older_global_model(conn: sqlite3.Connection) -> None:
    """`relentad doctor` reads these stats: untrained and stale models are warnings with the command to run."""
    (missing,) = doctor.check_spam_model(storage.stats(conn))
    assert missing.status == "warn" and "no global model" in missing.message
    assert missing.fix.startswith("relentad spam train --global --ham DIR --spam DIR")
    base_model(conn, scope=1)  # an account's model is not the global one
    assert doctor.check_spam_model(storage.stats(conn))[0].status == "warn"
    base_model(conn)  # 20 messages of each class
    (small,) = doctor.check_spam_model(storage.stats(conn))
    assert small.status == "warn"
    assert "recorded 20 spam and 20 ham, fewer than [spam] min_trained (200)" in small.message
    (current,) = doctor.check_spam_model(storage.stats(conn), SpamConfig(min_trained=20))
    assert current.status == "ok" and f"version {TOKENIZER_VERSION}" in current.message
    assert "40 messages recorded, fewer than [spam] confident_after (2000): its spam cut-off is 0.99" in current.message
    (confident,) = doctor.check_spam_model(storage.stats(conn), SpamConfig(min_trained=20, confident_after=40))
    assert confident.status == "ok" and "cut-off" not in confident.message
    (large,) = doctor.check_spam_model(storage.stats(conn), SpamConfig(min_trained=20, confident_after=30))
    assert "40 messages recorded, more than [spam] confident_after (30): its spam cut-off is 0.73" in large.message
    conn.execute("UPDATE spam_totals SET tokenizer = ? WHERE scope = ?", (TOKENIZER_VERSION - 1, GLOBAL))
    (stale,) = doctor.check_spam_model(storage.stats(conn), SpamConfig(min_trained=20))
    assert stale.status == "warn" and f"version {TOKENIZER_VERSION - 1}, older than" in stale.message
    assert "folders it was trained from" in stale.fix
