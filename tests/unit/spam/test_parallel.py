"""Scoring a folder on several cores gives the scores one process gives, in the files' order."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from relentad.errors import RelentadError
from relentad.spam import parallel
from relentad.spam.classifier import ensemble_times
from relentad.spam.tokenize import tokenize
from relentad.spam.views import ViewModels

SPAM = b"Subject: cheap meds\r\nFrom: a@spam.example\r\n\r\nbuy cheap pills now click here {n}\r\n"
HAM = b"Subject: meeting notes\r\nFrom: b@work.example\r\n\r\nthe agenda for tuesday is attached {n}\r\n"


def trained() -> ViewModels:
    models = ViewModels()
    models.train([(tokenize(m.replace(b"{n}", str(n).encode())), m is SPAM) for n in range(20) for m in (SPAM, HAM)])
    return models


def files(tmp_path: Path, count: int) -> list[str]:
    names = []
    for n in range(count):
        path = tmp_path / f"{n}.eml"
        message = (SPAM if n % 3 else HAM).replace(b"{n}", f"x{n}".encode())
        path.write_bytes(b"List-Post: <mailto:talk@lists.example>\r\n" + message if n % 5 == 0 else message)
        names.append(str(path))
    return names


def test_workers_score_like_one_process_in_order(tmp_path: Path) -> None:
    models, names = trained(), files(tmp_path, 90)
    alone = parallel.score_files(names, models, ("mx.example",), workers=1)
    assert parallel.score_files(names, models, ("mx.example",), workers=2) == alone
    assert [v > 0.5 for v, _ in alone] == [bool(n % 3) for n in range(90)]
    assert [list_mail for _, list_mail in alone] == [n % 5 == 0 for n in range(90)]  # its cut-off is lower
    assert parallel._job is None  # the model is not kept alive after the call


def test_an_unreadable_file_is_an_os_error_naming_it(tmp_path: Path) -> None:
    names = files(tmp_path, 40)
    names[25] = str(tmp_path / "gone.eml")
    for workers in (1, 2):
        with pytest.raises(OSError) as raised:
            parallel.score_files(names, trained(), (), workers=workers)
        assert raised.value.filename == names[25]


def test_a_worker_that_dies_is_an_error_not_a_hang(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    names = files(tmp_path, 40)
    monkeypatch.setattr(parallel, "tokenize", lambda raw, own_hosts: os._exit(9))
    with pytest.raises(RelentadError, match="worker process died"):
        parallel.score_files(names, trained(), (), workers=2)


def test_training_orders_on_several_cores_count_like_one_process() -> None:
    corpora = [[(tokenize(m.replace(b"{n}", str(n).encode())), m is SPAM) for n in range(30) for m in (SPAM, HAM)]]
    corpora.append([(frozenset(t for t in tokens if not t.startswith("subj")), s) for tokens, s in corpora[0]])
    together = parallel.ensemble_times(corpora, rounds=3, seed=7, workers=2)
    assert together == [ensemble_times(corpus, rounds=3, seed=7) for corpus in corpora]
    assert together == parallel.ensemble_times(corpora, rounds=3, seed=7, workers=1)
    assert all(sum(times) > 0 for times in together)


def test_view_models_trained_on_several_cores_are_the_same_models() -> None:
    messages = [(tokenize(m.replace(b"{n}", str(n).encode())), m is SPAM) for n in range(30) for m in (SPAM, HAM)]
    alone, spread = ViewModels(), ViewModels()
    assert alone.train(messages, seed=2) == spread.train(messages, seed=2, workers=2)
    for one, other in ((alone.full, spread.full), (alone.head, spread.head), (alone.body, spread.body)):
        assert (one.nspam, one.nham, one._counts) == (other.nspam, other.nham, other._counts)
