"""The three-view model: which view a token belongs to, the product-of-experts arithmetic, training per view."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from relentad.spam.classifier import MemoryCounts, Params, score, train_ensemble
from relentad.spam.tokenize import tokenize
from relentad.spam.views import (
    BODY_MARK,
    EPSILON,
    HEAD_MARK,
    ViewModels,
    combine_views,
    is_body_token,
    split_views,
    strongest_clues,
)


def test_tokens_fall_into_the_header_or_the_body_view_by_their_prefix() -> None:
    body = ["viagra", "skip:a 20", "url:example.com", "attr:font", "proto:https", "email:example.com", "10:30"]
    head = ["subj:free", "rcvd:example.com", "hn:X-Mailer", "from:dom:example.com", "hdr:count:5", "ct:text/html"]
    assert all(is_body_token(t) for t in body)
    assert not any(is_body_token(t) for t in head)
    assert split_views(body + head) == (frozenset(head), frozenset(body))


def test_a_real_message_has_both_views_and_they_partition_its_tokens() -> None:
    raw = (
        b"From: Ann <ann@example.org>\r\nSubject: Lunch on Friday\r\nContent-Type: text/html\r\n\r\n"
        b'<p>See <a href="https://example.org/menu">the menu</a> at 12:30.</p>\r\n'
    )
    tokens = tokenize(raw)
    head, body = split_views(tokens)
    assert head and body and not head & body and head | body == tokens
    assert {"subj:lunch", "url:example.org"} <= tokens
    assert "subj:lunch" in head and "url:example.org" in body


@given(st.binary(max_size=2000))
def test_no_token_starts_with_a_view_mark(raw: bytes) -> None:
    message = b"Subject: \t\th x\r\nX-Odd:\t\tb y\r\n\r\n" + raw + b"\t\thword \x01\tbword"
    assert not any(t.startswith("\t") for t in tokenize(message))


def test_combining_is_the_mean_of_log_odds() -> None:
    assert combine_views([]) == 0.5
    assert combine_views([0.5, 0.5, 0.5]) == 0.5
    assert math.isclose(combine_views([0.9, 0.9, 0.9]), 0.9)
    # odds 9, 1 and 1/9 average to odds 1 in log space
    assert math.isclose(combine_views([0.9, 0.5, 0.1]), 0.5)
    # a certain model cannot veto the others: its log-odds are clipped
    assert 0.0 < combine_views([0.0, 0.99, 0.99]) < 0.5 < combine_views([1.0, 0.01, 0.99]) < 1.0
    assert math.isclose(combine_views([1.0]), 1.0 - EPSILON)


@given(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=5))
def test_combining_is_bounded_and_mirrors_spam_and_ham(scores: list[float]) -> None:
    combined = combine_views(scores)
    assert 0.0 <= combined <= 1.0
    assert math.isclose(combine_views([1.0 - s for s in scores]), 1.0 - combined, abs_tol=1e-9)


def corpus() -> list[tuple[frozenset[str], bool]]:
    spam = [frozenset({"subj:offer", "rcvd:bulk.test", "cheap", "pills", f"s{i}"}) for i in range(20)]
    ham = [frozenset({"subj:minutes", "rcvd:corp.test", "meeting", "agenda", f"h{i}"}) for i in range(20)]
    return [(t, True) for t in spam] + [(t, False) for t in ham]


def test_each_view_is_trained_like_the_single_model_on_its_own_tokens() -> None:
    messages = corpus()
    models = ViewModels()
    learned = models.train(messages, seed=4)
    for view, index in ((models.full, 0), (models.head, 1), (models.body, 2)):
        alone = MemoryCounts()
        tokens = [(t if index == 0 else split_views(t)[index - 1], s) for t, s in messages]
        assert learned[index] == train_ensemble(tokens, alone, seed=4)
        assert (view.nspam, view.nham) == (alone.nspam, alone.nham)
    assert models.head.lookup({"cheap"}) == {} and models.body.lookup({"subj:offer"}) == {}
    for tokens, spam in messages:
        assert (models.score(tokens) > 0.9) if spam else (models.score(tokens) < 0.1)


def test_learning_one_message_is_reversed_exactly() -> None:
    models = ViewModels()
    models.train(corpus())
    universe = set().union(*(t for t, _ in corpus())) | {"subj:new", "novel"}

    def state() -> list[object]:
        return [(m.nspam, m.nham, m.lookup(universe)) for m in (models.full, models.head, models.body)]

    before = state()
    message = frozenset({"subj:new", "novel", "cheap"})
    models.learn(message, spam=False)
    assert state() != before
    models.unlearn(message, spam=False)
    assert state() == before


def test_the_score_is_the_three_models_scores_combined() -> None:
    models = ViewModels()
    models.train(corpus())
    tokens = frozenset({"subj:offer", "rcvd:corp.test", "meeting", "cheap"})
    head, body = split_views(tokens)
    expected = combine_views([score(tokens, models.full), score(head, models.head), score(body, models.body)])
    assert models.score(tokens) == expected


def test_the_frozen_scorer_gives_the_same_scores_to_the_bit() -> None:
    """``ViewModels.scorer`` (bulk scoring) against ``score``; untrained views are left out by both, and parameters
    under which unseen tokens count fall back to ``score`` itself."""
    models = ViewModels()
    models.train(corpus())
    samples = [t for t, _ in corpus()] + [
        frozenset({"subj:offer", "rcvd:corp.test", "meeting", "cheap", "novel", "subj:novel"}),
        frozenset(),
        tokenize(b"Subject: cheap pills\r\nFrom: a@b.test\r\n\r\nmeeting agenda cheap\r\n"),
    ]
    for params in (Params(), Params(s=1.0, max_tokens=3), Params(x=0.3)):
        scorer = models.scorer(params)
        assert [scorer(t) for t in samples] == [models.score(t, params) for t in samples]
    full_only = ViewModels(full=models.full)
    assert [full_only.scorer()(t) for t in samples] == [full_only.score(t) for t in samples]


def test_the_strongest_clues_name_their_model_and_come_most_extreme_first() -> None:
    clues = [("cheap", 0.93), (HEAD_MARK + "subj:offer", 0.99), (BODY_MARK + "agenda", 0.02), ("meeting", 0.3)]
    clues += [(f"w{i}", 0.8) for i in range(10)]
    strongest = strongest_clues(clues, each=3)
    assert strongest == [
        ("head", "subj:offer", 0.99),
        ("all", "cheap", 0.93),
        ("all", "w0", 0.8),
        ("body", "agenda", 0.02),
        ("all", "meeting", 0.3),
    ]
