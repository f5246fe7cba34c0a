"""Spam token counts in SQLite: per-account models with a global fallback, training records and pruning.

Tables (migration ``005_spam_tokens``): ``spam_tokens`` (scope, token → spam, ham, seen day), ``spam_totals``
(scope → messages trained as spam / ham, token rows) and ``spam_trained`` (scope, SHA-256 of the message →
class, times learned, the exact tokens learned). A scope is an account id, or :data:`GLOBAL` (0) for the model
every account falls back on: :class:`StoredCounts` sums an account's counts and the global ones, token by
token and in the totals, as the classifier's ``TokenCounts`` protocol expects.

Invariants:
- Every function takes a connection and runs inside the caller's transaction (the store's writer thread, or a
  CLI ``transaction``); nothing here commits.
- Training a message is idempotent per scope: the same message trained as the same class again changes
  nothing; trained as the other class, its earlier learning is unlearned exactly (the recorded tokens, as many
  times as recorded) before it is learned anew. :func:`forget` undoes it completely.
- ``spam_totals.tokens`` always equals the scope's row count in ``spam_tokens`` (kept in step by every write
  here), so the pruning check is one row read.
- Pruning removes the least recently used tokens (by ``seen`` day: last learned, or last used as a clue while
  scoring, refreshed at most once a week per token) and tokens older than the age limit; it never picks
  tokens by their counts (dropping singletons measurably hurt accuracy). Counts never go below zero.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
import zlib
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass

from . import parallel
from .classifier import DEFAULT_PARAMS, ENSEMBLE_ROUNDS, MemoryCounts, Params, needs_training, score
from .tokenize import TOKENIZER_VERSION
from .views import BODY_MARK, HEAD_MARK, MARK, ViewModels, marked_views, split_views, view_counts

GLOBAL = 0
"""Scope of the global model (account ids start at 1)."""
TOUCH_AFTER_DAYS = 7
"""A token used while scoring gets its ``seen`` day refreshed when it is older than this (few writes)."""
FEEDBACK_MAX = ENSEMBLE_ROUNDS
"""A user's correction is learned up to this many times, until the message scores clearly in its class: once per
order bulk training sums, so that a correction can weigh as much as a message bulk training learned in every order."""
PRUNE_TO = 0.9
"""Pruning for size leaves this fraction of ``max_tokens``, so it does not run again on the next message."""
_CHUNK = 900  # tokens per IN (...) list


def day(now: float | None = None) -> int:
    """Unix day number (the unit of ``seen``)."""
    return int((time.time() if now is None else now) // 86400)


def digest(raw: bytes) -> bytes:
    """The key a message is recorded under: SHA-256 of its bytes as trained."""
    return hashlib.sha256(raw).digest()


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _clean(tokens: Iterable[str]) -> list[str]:
    """Tokens SQLite can store as TEXT (lone surrogates cannot be encoded and are dropped), sorted."""
    out = []
    for token in set(tokens):
        if token.startswith(MARK):  # only the view models' own token strings start with it (spam/views.py)
            continue
        try:
            token.encode("utf-8")
        except UnicodeEncodeError:
            continue
        out.append(token)
    out.sort()
    return out


class StoredCounts:
    """``TokenCounts`` over the database: an account's counts plus the global ones (or one scope alone).

    Totals are read once, at construction. ``lookup`` asks each scope that has any training (usually one or
    two short queries: a JSON array of the tokens joined on the primary key, which measured about twice as
    fast as a long ``IN (?, ?, …)`` list or one grouped query over both scopes) and sums in Python. It
    remembers which found tokens have a ``seen`` day older than :data:`TOUCH_AFTER_DAYS` in :attr:`stale`, for
    :func:`touch` to refresh in a later write.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        account_id: int,
        *,
        with_global: bool = True,
        cache: CountCache | None = None,
    ) -> None:
        self.conn = conn
        self.cache = cache
        scopes = {account_id, GLOBAL} if with_global else {account_id}
        self.scopes: list[int] = []
        self.versions: dict[int, tuple[object, ...]] = {}
        self._nspam = self._nham = 0
        head, body = [0, 0], [0, 0]
        for scope, nspam, nham, tokens, updated, *views in conn.execute(
            "SELECT scope, nspam, nham, tokens, updated, head_spam, head_ham, body_spam, body_ham FROM spam_totals "
            "WHERE scope IN (?, ?)",
            (account_id, min(scopes)),
        ):
            if scope in scopes and (nspam or nham or any(views)):
                self.scopes.append(int(scope))
                self.versions[int(scope)] = (nspam, nham, tokens, updated, *views)
                self._nspam += int(nspam)
                self._nham += int(nham)
                head = [head[0] + int(views[0]), head[1] + int(views[1])]
                body = [body[0] + int(views[2]), body[1] + int(views[3])]
        self.head_totals = (head[0], head[1])
        self.body_totals = (body[0], body[1])
        self.stale: set[str] = set()
        self.today = day()

    @property
    def nspam(self) -> int:
        return self._nspam

    @property
    def nham(self) -> int:
        return self._nham

    def recorded(self) -> tuple[int, int]:
        """Distinct messages trained as (spam, ham) in the scopes summed: what ``[spam] min_trained`` counts. From
        the cache while the scopes' totals are unchanged (every training changes them)."""
        spam = ham = 0
        for scope in self.scopes:
            if self.cache is not None:
                counts = self.cache.recorded(self.conn, scope, self.versions[scope])
            else:
                counts = recorded(self.conn, scope)
            spam, ham = spam + counts[0], ham + counts[1]
        return spam, ham

    def lookup(self, tokens: Collection[str]) -> dict[str, tuple[int, int]]:
        found: dict[str, tuple[int, int]] = {}
        old = self.today - TOUCH_AFTER_DAYS
        for scope in self.scopes:
            rows = self._rows(scope, tokens)
            if not found:  # the first (often the only) scope with rows: nothing to add to
                found = {token: (spam, ham) for token, spam, ham, _ in rows}
            else:
                for token, spam, ham, _ in rows:
                    have = found.get(token)
                    found[token] = (spam, ham) if have is None else (have[0] + spam, have[1] + ham)
            stale = [token for token, _, _, seen in rows if seen < old]
            if stale:
                self.stale.update(stale)
                if self.cache is not None:  # the caller's touch() refreshes them: don't report them again
                    self.cache.seen(scope, stale, self.today)
        return found

    def _rows(self, scope: int, tokens: Collection[str]) -> list[tuple[str, int, int, int]]:
        """(token, spam, ham, seen) of the ``tokens`` the scope knows: from the cache where it has them."""
        known = self.cache.scope(scope, self.versions[scope]) if self.cache is not None else None
        wanted = list(tokens) if known is None else [t for t in tokens if t not in known]
        rows: list[tuple[str, int, int, int]] = []
        if wanted:
            cursor = self.conn.cursor()
            cursor.row_factory = None  # plain tuples: sqlite3.Row objects cost a third of the lookup
            rows = cursor.execute(
                "SELECT token, spam, ham, seen FROM spam_tokens WHERE scope = ? "
                "AND token IN (SELECT value FROM json_each(?))",
                (scope, json.dumps(wanted)),  # ASCII-escaped; tokens SQLite could not store simply match nothing
            ).fetchall()
        if known is None:
            return rows
        assert self.cache is not None
        self.cache.keep(scope, wanted, rows)
        return [row for row in (known.get(t) for t in tokens) if row is not None]


def load_models(conn: sqlite3.Connection, account_id: int, *, with_global: bool = True) -> ViewModels:
    """The account's three models (with the global ones summed in, as :class:`StoredCounts` sums them) in memory.

    For scoring many messages at once (``spam score`` of a folder): reading every row once (about 0.2 s for a
    100,000-row model) and scoring in memory costs 0.55-0.9 ms of CPU per message against 1.5-2 ms through
    per-message lookups, which build the marked view tokens and sum the scopes each time. Scores are the same as
    :func:`~relentad.spam.views.score_stored` gives (``ViewModels.score`` leaves out untrained views alike)."""
    stored = StoredCounts(conn, account_id, with_global=with_global)
    tables: dict[str, dict[str, tuple[int, int]]] = {"": {}, HEAD_MARK: {}, BODY_MARK: {}}
    cursor = conn.cursor()
    cursor.row_factory = None
    for scope in stored.scopes:
        for token, spam, ham in cursor.execute("SELECT token, spam, ham FROM spam_tokens WHERE scope = ?", (scope,)):
            mark = token[:2] if token.startswith(MARK) else ""
            table, key = tables.get(mark), token[len(mark) :]
            if table is None:  # not a token of any of the three models
                continue
            have = table.get(key)
            table[key] = (spam, ham) if have is None else (have[0] + spam, have[1] + ham)
    return ViewModels(
        MemoryCounts.of(stored.nspam, stored.nham, tables[""]),
        MemoryCounts.of(*stored.head_totals, tables[HEAD_MARK]),
        MemoryCounts.of(*stored.body_totals, tables[BODY_MARK]),
    )


def has_global(conn: sqlite3.Connection) -> bool:
    """Whether the global model has learned anything (``spam train --global``)."""
    row = conn.execute("SELECT 1 FROM spam_totals WHERE scope = ? AND nspam + nham > 0", (GLOBAL,)).fetchone()
    return row is not None


def models_below(conn: sqlite3.Connection, scope: int) -> list[MemoryCounts] | None:
    """The global model's three views, for training ``scope`` to judge each message with them under its own counts, as
    scoring sums the two (``classifier.order_times`` ``below``); None for the global scope itself or while the global
    model is empty. Why: an account's model learns what the global one does not already know; learned standalone, a
    user's lessons rebuilt over a global model missed 5.70 % of the spam at FP <= 0.1 % against 3.80 % judged with it
    (scripts/bench/spam_lessons.py ``--global-share 0.5``, one fold seed)."""
    if scope == GLOBAL or not has_global(conn):
        return None
    models = load_models(conn, GLOBAL, with_global=False)
    return [models.full, models.head, models.body]


class CountCache:
    """The daemon's copy of token rows it has read, per scope, valid while that scope's totals are unchanged.

    Scoring a message looked up ~150 tokens per model in SQLite (a JSON-array join, 0.5–0.8 ms on the delivery
    path); a busy MX sees the same tokens all day. Every write that changes a token's counts also changes its
    scope's ``spam_totals`` row (training, unlearning, pruning — see the invariants above), and every
    :class:`StoredCounts` reads those totals anyway, so a changed row — from this process or another (the CLI) —
    drops the scope's cache before anything stale is used. Absent tokens are remembered too (as None). Only the
    ``seen`` day can change without the totals (:func:`touch`); tokens reported stale are marked seen today
    here, since the caller touches them. Bounded: past ``max_rows`` rows in all, everything is dropped.
    """

    def __init__(self, max_rows: int = 300_000) -> None:
        self.max_rows = max_rows
        self._versions: dict[int, tuple[object, ...]] = {}
        self._rows: dict[int, dict[str, tuple[str, int, int, int] | None]] = {}
        self._recorded: dict[int, tuple[tuple[object, ...], tuple[int, int]]] = {}
        self._size = 0

    def scope(self, scope: int, version: tuple[object, ...]) -> dict[str, tuple[str, int, int, int] | None]:
        """The cached rows of ``scope`` (token → row, or None when the scope lacks it) at totals ``version``."""
        if self._versions.get(scope) != version:
            self._size -= len(self._rows.get(scope, ()))
            self._versions[scope] = version
            self._rows[scope] = {}
        return self._rows[scope]

    def keep(self, scope: int, asked: Sequence[str], rows: Sequence[tuple[str, int, int, int]]) -> None:
        """Record the answer to a lookup of ``asked`` in ``scope``: ``rows`` found, the rest absent."""
        if self._size + len(asked) > self.max_rows:
            version = self._versions[scope]
            self._versions.clear()
            self._rows.clear()
            self._size = 0
            self.scope(scope, version)
        cached = self._rows[scope]
        for token in asked:
            cached[token] = None
        for row in rows:
            cached[row[0]] = tuple(row)  # type: ignore[assignment]
        self._size += len(asked)

    def recorded(self, conn: sqlite3.Connection, scope: int, version: tuple[object, ...]) -> tuple[int, int]:
        """The scope's :func:`recorded` counts, counted again only when its totals ``version`` moved."""
        kept = self._recorded.get(scope)
        if kept is None or kept[0] != version:
            kept = self._recorded[scope] = (version, recorded(conn, scope))
        return kept[1]

    def seen(self, scope: int, tokens: Iterable[str], today: int) -> None:
        cached = self._rows.get(scope, {})
        for token in tokens:
            row = cached.get(token)
            if row is not None:
                cached[token] = (row[0], row[1], row[2], today)


MODELS = ("full", "head", "body")
"""The three models a scope holds (relentad.spam.views); their message totals are columns of ``spam_totals``."""
_TOTALS = {"full": ("nspam", "nham"), "head": ("head_spam", "head_ham"), "body": ("body_spam", "body_ham")}


def _totals(conn: sqlite3.Connection, scope: int, nspam: int, nham: int, tokens: int, model: str = "full") -> None:
    """Add to a scope's totals (messages of ``model``, token rows); a scope's first row records the current tokenizer
    version (later writes keep it)."""
    spam_column, ham_column = _TOTALS[model]
    conn.execute(
        f"""INSERT INTO spam_totals (scope, {spam_column}, {ham_column}, tokens, updated, tokenizer)
            VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT (scope) DO UPDATE SET {spam_column} = max({spam_column} + excluded.{spam_column}, 0),
                {ham_column} = max({ham_column} + excluded.{ham_column}, 0),
                tokens = max(tokens + excluded.tokens, 0), updated = excluded.updated""",
        (scope, nspam, nham, tokens, time.time(), TOKENIZER_VERSION),
    )


def model_tokens(tokens: Collection[str], model: str) -> list[str]:
    """The token strings ``model`` stores for a message's (clean) tokens, sorted."""
    if model == "full":
        return sorted(tokens)
    head, body = marked_views(tokens)
    return sorted(head if model == "head" else body)


def tokenizer_version(conn: sqlite3.Connection, scope: int) -> int | None:
    """The tokenizer version ``scope``'s model was (bulk) trained with; None when it has no model yet."""
    row = conn.execute("SELECT tokenizer FROM spam_totals WHERE scope = ?", (scope,)).fetchone()
    return None if row is None else int(row[0])


def _existing(conn: sqlite3.Connection, scope: int, tokens: Sequence[str]) -> int:
    total = 0
    for chunk in _chunks(tokens):
        marks = ",".join("?" * len(chunk))
        total += conn.execute(
            f"SELECT count(*) FROM spam_tokens WHERE scope = ? AND token IN ({marks})", (scope, *chunk)
        ).fetchone()[0]
    return int(total)


def add_counts(
    conn: sqlite3.Connection, scope: int, deltas: dict[str, tuple[int, int]], now: float | None = None
) -> None:
    """Add (spam, ham) to each token's counts: all-positive deltas learn (rows made as needed), any negative one
    unlearns (counts stop at zero; rows left empty are deleted). Keeps ``spam_totals.tokens`` in step."""
    today = day(now)
    grow = sorted(t for t, (s, h) in deltas.items() if s >= 0 and h >= 0 and (s or h))
    shrink = sorted(t for t, (s, h) in deltas.items() if s < 0 or h < 0)
    rows = len(grow) - _existing(conn, scope, grow)
    conn.executemany(
        """INSERT INTO spam_tokens (scope, token, spam, ham, seen) VALUES (?, ?, ?, ?, ?)
           ON CONFLICT (scope, token) DO UPDATE SET spam = spam + excluded.spam, ham = ham + excluded.ham,
               seen = excluded.seen""",
        [(scope, t, *deltas[t], today) for t in grow],
    )
    conn.executemany(
        "UPDATE spam_tokens SET spam = max(spam + ?, 0), ham = max(ham + ?, 0) WHERE scope = ? AND token = ?",
        [(*deltas[t], scope, t) for t in shrink],
    )
    for chunk in _chunks(shrink):
        marks = ",".join("?" * len(chunk))
        rows -= conn.execute(
            f"DELETE FROM spam_tokens WHERE scope = ? AND spam = 0 AND ham = 0 AND token IN ({marks})", (scope, *chunk)
        ).rowcount
    if rows:
        _totals(conn, scope, 0, 0, rows)


def _learn(
    conn: sqlite3.Connection, scope: int, tokens: Sequence[str], spam: bool, times: int, model: str = "full"
) -> None:
    """Learn (``times`` > 0) or unlearn (``times`` < 0) one message's tokens ``abs(times)`` times into ``model``."""
    if not times:
        return
    delta = (times, 0) if spam else (0, times)
    add_counts(conn, scope, dict.fromkeys(model_tokens(tokens, model), delta))
    _totals(conn, scope, times if spam else 0, 0 if spam else times, 0, model)


def _pack(tokens: Sequence[str]) -> bytes:
    return zlib.compress(json.dumps(list(tokens), ensure_ascii=False).encode("utf-8"))


def unpack(data: bytes) -> list[str]:
    return [str(t) for t in json.loads(zlib.decompress(data).decode("utf-8"))]


def _record(
    conn: sqlite3.Connection,
    scope: int,
    key: bytes,
    spam: bool,
    times: Sequence[int],
    tokens: Sequence[str],
    source: str,
) -> None:
    """Record a message as trained: its class, the times each model (``MODELS`` order) learned it, its tokens."""
    conn.execute(
        """INSERT INTO spam_trained (scope, sha256, class, times, head_times, body_times, tokens, source, trained)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (scope, sha256) DO UPDATE SET class = excluded.class, times = excluded.times,
               head_times = excluded.head_times, body_times = excluded.body_times,
               tokens = excluded.tokens, source = excluded.source, trained = excluded.trained""",
        (scope, key, "spam" if spam else "ham", *times, _pack(tokens), source, time.time()),
    )


def recorded(conn: sqlite3.Connection, scope: int) -> tuple[int, int]:
    """Distinct messages recorded as trained in ``scope``, as (spam, ham): bulk-trained files (learned or not, as
    train-on-error chose) and users' corrections alike."""
    counts = dict(conn.execute("SELECT class, count(*) FROM spam_trained WHERE scope = ? GROUP BY class", (scope,)))
    return int(counts.get("spam", 0)), int(counts.get("ham", 0))


def trained_as(conn: sqlite3.Connection, scope: int, key: bytes) -> tuple[str, int] | None:
    """(class, times) a message was trained as in ``scope``, or None."""
    row = conn.execute("SELECT class, times FROM spam_trained WHERE scope = ? AND sha256 = ?", (scope, key)).fetchone()
    return None if row is None else (str(row[0]), int(row[1]))


def forget(conn: sqlite3.Connection, scope: int, key: bytes) -> bool:
    """Unlearn everything recorded for message ``key`` in ``scope`` exactly; False when nothing was recorded."""
    row = conn.execute(
        "SELECT class, tokens, times, head_times, body_times FROM spam_trained WHERE scope = ? AND sha256 = ?",
        (scope, key),
    ).fetchone()
    if row is None:
        return False
    tokens = unpack(row[1])
    for model, times in zip(MODELS, row[2:], strict=True):
        _learn(conn, scope, tokens, row[0] == "spam", -int(times), model)
    conn.execute("DELETE FROM spam_trained WHERE scope = ? AND sha256 = ?", (scope, key))
    return True


def train_message(
    conn: sqlite3.Connection,
    account_id: int,
    key: bytes,
    tokens: Collection[str],
    spam: bool,
    source: str,
    params: Params = DEFAULT_PARAMS,
) -> int:
    """A user's verdict on one message (Junk moves, $Junk/$NotJunk): learn it into the account's model.

    Idempotent: already trained as this class → nothing (returns 0). Trained as the other class → unlearned
    exactly first. Then each of the three models (``MODELS``) learns it at least once, and again (up to
    :data:`FEEDBACK_MAX`) while that model does not yet score it clearly in its class, so one correction is felt.
    Returns how many times the full model learned it.
    """
    previous = trained_as(conn, account_id, key)
    if previous is not None and previous[0] == ("spam" if spam else "ham"):
        return 0
    forget(conn, account_id, key)
    clean = _clean(tokens)
    learned = []
    for model in MODELS:
        scored = model_tokens(clean, model)
        times = 0
        while times < FEEDBACK_MAX:
            _learn(conn, account_id, clean, spam, 1, model)
            times += 1
            model_score = score(scored, view_counts(StoredCounts(conn, account_id), model, scored), params)
            if not needs_training(model_score, spam):
                break
        learned.append(times)
    _record(conn, account_id, key, spam, learned, clean, source)
    return learned[0]


@dataclass
class BulkResult:
    """What :func:`train_corpus` did."""

    messages: int = 0
    learned: int = 0  # the full model's learn operations (a message may be learned several times, or not at all)
    unchanged: int = 0  # already trained as the same class
    flipped: int = 0  # trained before as the other class, unlearned first
    refreshed: int = 0  # trained before by an older tokenizer, unlearned and learned again
    pruned: int = 0


def train_corpus(
    conn: sqlite3.Connection,
    scope: int,
    messages: Sequence[tuple[bytes, Collection[str], bool]],
    params: Params = DEFAULT_PARAMS,
    workers: int | None = None,
    source: str = "cli",
) -> BulkResult:
    """Bulk training (``relentad spam train``): (key, tokens, is_spam) triples into ``scope``.

    Messages already recorded as the same class are skipped (running the same training twice changes
    nothing); ones recorded as the other class are unlearned first. The rest go through ``train_ensemble``'s
    orders (train-on-error, orders summed: the method cross-validation chose) once per model (``MODELS``: the
    full, header and body views), an account's judged with the global model under it (:func:`models_below`), the
    24 orders spread over the usable cores (``spam.parallel``), and each is
    recorded with how many times each model learned it (zeros for messages no model needed, so a second run
    skips them too).

    A model trained by an older tokenizer (:func:`tokenizer_version` below ``TOKENIZER_VERSION``) is retrained:
    every given message recorded before is unlearned (its recorded tokens, exactly) and learned again with its
    new tokens, and the model is then marked current. Retrain from the whole corpus the model was built from.
    """
    result = BulkResult(messages=len(messages))
    version = tokenizer_version(conn, scope)
    stale = version is not None and version < TOKENIZER_VERSION
    todo: list[tuple[bytes, list[str], bool]] = []
    for key, tokens, spam in messages:
        previous = trained_as(conn, scope, key)
        if previous is not None:
            same_class = previous[0] == ("spam" if spam else "ham")
            if same_class and not stale:
                result.unchanged += 1
                continue
            forget(conn, scope, key)
            if same_class:
                result.refreshed += 1
            else:
                result.flipped += 1
        todo.append((key, _clean(tokens), spam))
    times = ensemble_times(todo, params, workers, models_below(conn, scope) if todo else None)
    deltas, totals = ensemble_counts(todo, times)
    for model, (nspam, nham) in zip(MODELS, totals, strict=True):
        _totals(conn, scope, nspam, nham, 0, model)
    for position, (key, tokens, spam) in enumerate(todo):
        learned = [max(times[index][position], 0) for index in range(len(MODELS))]
        result.learned += learned[0]
        # a message no model needed is recorded all the same (without tokens), so training again skips it
        _record(conn, scope, key, spam, learned, tokens if any(learned) else (), source)
    add_counts(conn, scope, deltas)
    if stale:
        conn.execute("UPDATE spam_totals SET tokenizer = ? WHERE scope = ?", (TOKENIZER_VERSION, scope))
    return result


def ensemble_times(
    messages: Sequence[tuple[bytes, Sequence[str], bool]],
    params: Params = DEFAULT_PARAMS,
    workers: int | None = None,
    below: Sequence[MemoryCounts] | None = None,
) -> list[list[int]]:
    """How many times each of the three models (``MODELS``) learns each (key, clean tokens, is_spam) message when
    they are built together by ``train_ensemble``'s orders, on ``workers`` cores (``spam.parallel``); ``below``:
    the three models the counts will be scored with (:func:`load_models` of the global scope under an account's).
    The orders see each view's tokens unmarked, as ``load_models`` keys them: names only break ties in order, and
    one mark on every token of a view keeps that order."""
    # tuples, not sets: the orders only iterate and look up, and a rebuild holds thousands of lessons at once
    views = [(tuple(tokens), *map(tuple, split_views(tokens))) for _, tokens, _ in messages]
    corpora = [[(view[index], spam) for view, (_, _, spam) in zip(views, messages, strict=True)] for index in range(3)]
    return parallel.ensemble_times(corpora, params, workers=workers, below=below)


def ensemble_counts(
    messages: Sequence[tuple[bytes, Sequence[str], bool]], times: Sequence[Sequence[int]]
) -> tuple[dict[str, tuple[int, int]], list[tuple[int, int]]]:
    """The counts learning ``messages`` that many ``times`` adds: (spam, ham) per stored token string of every model,
    and each model's (spam, ham) message totals in ``MODELS`` order."""
    deltas: dict[str, list[int]] = {}
    totals = []
    for index, model in enumerate(MODELS):
        nspam = nham = 0
        for (_, tokens, spam), count in zip(messages, times[index], strict=True):
            if count <= 0:
                continue
            if spam:
                nspam += count
            else:
                nham += count
            for token in model_tokens(tokens, model):
                pair = deltas.setdefault(token, [0, 0])
                pair[0 if spam else 1] += count
        totals.append((nspam, nham))
    return {token: (pair[0], pair[1]) for token, pair in deltas.items()}, totals


def touch(conn: sqlite3.Connection, account_id: int, tokens: Collection[str], now: float | None = None) -> None:
    """Mark ``tokens`` as used today in the account's and the global scope (pruning keeps recently used ones)."""
    today = day(now)
    for chunk in _chunks(_clean(tokens)):
        marks = ",".join("?" * len(chunk))
        conn.execute(
            f"UPDATE spam_tokens SET seen = ? WHERE scope IN (?, ?) AND token IN ({marks}) AND seen < ?",
            (today, GLOBAL, account_id, *chunk, today),
        )


def prune(
    conn: sqlite3.Connection, scope: int, max_tokens: int, max_age_days: int = 0, now: float | None = None
) -> int:
    """Keep ``scope`` bounded: drop tokens unseen for ``max_age_days`` (0 = no age limit), and when more than
    ``max_tokens`` rows remain, the least recently seen down to :data:`PRUNE_TO` of it. Returns rows removed."""
    removed = 0
    if max_age_days > 0:
        removed += conn.execute(
            "DELETE FROM spam_tokens WHERE scope = ? AND seen < ?", (scope, day(now) - max_age_days)
        ).rowcount
    row = conn.execute("SELECT tokens FROM spam_totals WHERE scope = ?", (scope,)).fetchone()
    count = (int(row[0]) if row is not None else 0) - removed
    if count > max_tokens:
        excess = count - int(max_tokens * PRUNE_TO)
        removed += conn.execute(
            """DELETE FROM spam_tokens WHERE scope = ?1 AND token IN
                   (SELECT token FROM spam_tokens WHERE scope = ?1 ORDER BY seen, token LIMIT ?2)""",
            (scope, excess),
        ).rowcount
    if removed:
        _totals(conn, scope, 0, 0, -removed)
    return removed


def stats(conn: sqlite3.Connection) -> list[dict[str, object]]:
    """One row per scope: scope name, messages learned as spam/ham (learn calls: train-on-error learns some
    messages several times, others never), token rows, distinct messages recorded (in all, as spam, as ham, and
    per source: ``cli`` and ``mailboxes`` for ``spam train``, ``imap-move``, ``imap-flag``, ``reply``), the
    tokenizer version it was trained with and whether that is older than the current one (``stale``: retraining
    advised), and when it was last rebuilt from its lessons (``rebuilt``, 0: never; spam/rebuild.py)."""
    rows = conn.execute(
        """SELECT t.scope, coalesce(a.email, ''), t.nspam, t.nham, t.tokens, t.updated, t.tokenizer, t.rebuilt
           FROM spam_totals t LEFT JOIN accounts a ON a.id = t.scope ORDER BY t.scope"""
    ).fetchall()
    out: list[dict[str, object]] = []
    for scope, email, nspam, nham, tokens, updated, tokenizer, rebuilt in rows:
        recorded_spam, recorded_ham = recorded(conn, scope)
        sources = conn.execute(
            "SELECT source, count(*) FROM spam_trained WHERE scope = ? GROUP BY source ORDER BY source", (scope,)
        )
        out.append(
            {
                "scope": "global" if scope == GLOBAL else email,
                "nspam": int(nspam),
                "nham": int(nham),
                "tokens": int(tokens),
                "recorded": recorded_spam + recorded_ham,
                "recorded_spam": recorded_spam,
                "recorded_ham": recorded_ham,
                "sources": {str(source): int(count) for source, count in sources},
                "updated": float(updated),
                "tokenizer": int(tokenizer),
                "stale": int(tokenizer) < TOKENIZER_VERSION,
                "rebuilt": float(rebuilt),
            }
        )
    return out
