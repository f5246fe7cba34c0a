"""The long-run fuzz targets (scripts/fuzz/) stay runnable: each passes its seeds and a short, seeded run of the
pure-Python engine. The long runs themselves are `scripts/fuzz/fuzz.py TARGET` (README, Operations)."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

FUZZ_DIR = Path(__file__).resolve().parents[2] / "scripts" / "fuzz"
sys.path.insert(0, str(FUZZ_DIR))

import fuzz  # noqa: E402
import targets  # noqa: E402


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_target_passes_its_seeds_and_a_short_seeded_run(name: str, tmp_path: Path) -> None:
    target = targets.TARGETS[name]
    for seed in targets.SEEDS[name]:
        target(seed)
    rng = random.Random(1)
    pool = list(targets.SEEDS[name])
    for _ in range(300):
        target(fuzz.mutate(rng, rng.choice(pool), pool, targets.DICTIONARY))


def test_a_crash_is_saved_and_reported(tmp_path: Path) -> None:
    def broken(data: bytes) -> None:
        if b"boom" in data:
            raise ValueError("boom")

    assert fuzz.run_random("broken", broken, [b"ok", b"boom"], 1.0, 1, tmp_path) == 1
    saved = list(tmp_path.iterdir())
    assert len(saved) == 1 and saved[0].read_bytes() == b"boom"


def test_the_sieve_target_fails_a_slow_input(monkeypatch: pytest.MonkeyPatch) -> None:
    """A runaway shows as a slow input: the target times each one (matching is documented linear)."""
    monkeypatch.setattr(targets, "SIEVE_SECONDS", 0.0)
    with pytest.raises(AssertionError, match="runaway"):
        targets.target_sieve(targets.SEEDS["sieve"][0])


def test_the_pop3_target_catches_a_body_sent_unstuffed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The oracle is a client's un-stuffing: a line of "." left as it is ends the body early."""
    from relentad.pop3 import parser

    monkeypatch.setattr(parser, "stuff", lambda data: data if data.endswith(b"\r\n") else data + b"\r\n")
    targets.target_pop3(b"Subject: x\r\n\r\nno dot here\r\n")
    with pytest.raises(AssertionError, match="terminator before the end"):
        targets.target_pop3(b"Subject: x\r\n\r\n.\r\nmore\r\n")


def test_the_managesieve_target_frames_literals_as_the_session_does() -> None:
    assert targets._framed(b'PUTSCRIPT "a" {3+}\r\nx\r\n\r\nNOOP\r\n') == b'PUTSCRIPT "a" {3+}\r\nx\r\n\r\n'
    assert targets._framed(b"CHECKSCRIPT {9}\r\nab") == b"CHECKSCRIPT {9}\r\nab"


def test_atheris_keeps_its_corpus_and_crashes_in_the_target_folder(tmp_path: Path) -> None:
    """libFuzzer adds new inputs to the first corpus folder: a temporary one lost a long run's corpus (and crash files
    landed in the current folder); the seeds come last, the user's folders and artifact path win."""
    args = fuzz.atheris_args("pop3", ["-max_total_time=5"], tmp_path)
    assert args[-2:] == [str(tmp_path / "corpus"), str(tmp_path / "seeds")]
    assert f"-artifact_prefix={tmp_path}/" in args and "-max_total_time=5" in args
    assert len(list((tmp_path / "seeds").iterdir())) == len(targets.SEEDS["pop3"])
    assert (tmp_path / "dictionary").read_text().count("\n") == len(targets.DICTIONARY)
    mine = fuzz.atheris_args("pop3", ["-artifact_prefix=x/", "mine"], tmp_path)
    assert mine[-2:] == ["mine", str(tmp_path / "seeds")] and not any(a.startswith("-artifact_prefix=/") for a in mine)
