#!/usr/bin/env python3
"""Long-run fuzzing of relentad's parsers (issue 8, hostile input). The short forms run in the test suite
(hypothesis in tests/unit, fuzzed sessions over sockets in tests/e2e/test_hostile.py); this runs for as long as
you let it and keeps every crash.

In-process targets (see targets.py), coverage-guided with atheris when it is installed
(``pip install -e '.[fuzz]'``), else with the pure-Python mutational engine below (same targets, no coverage):

    imap       IMAP command parser, literal framing, modified UTF-7
    message    MIME tree, ENVELOPE/BODYSTRUCTURE, sections, text extraction, spam tokenizer
    address    addr-spec normalisation, address lists (fast path vs general parser), header decoding
    smtp-args  MAIL/RCPT/VRFY paths and parameters as the SMTP server parses them (fast path vs aiosmtpd's)
    contacts   the contact file reader of ``contacts import`` (vCard 2.1-4.0, CSV)
    sieve      Sieve scripts as PUTSCRIPT / ``rules add`` check them, run on a fixed message; a 2 s input fails
    vcard      a CardDAV PUT body: parse, fold anew and parse back, merge with the CRM's values
    pop3       POP3 command lines, byte-stuffing (un-stuffed, RETR gives the body back) and TOP
    managesieve  ManageSieve commands with their literals, script names, strings the server sends read back

Targets over a socket against the real daemon (started here on loopback, with its own dnsmasq); these always use
the pure-Python engine (the daemon is another process, out of atheris's sight). Every reply must be well formed,
the daemon must stay up and answer a well-behaved client, and its log must never show a traceback:

    smtp       SMTP command sessions on the MX (25) and submission (587) listeners
    imap-wire  IMAP sessions with literals, before and after LOGIN

Usage:

    .venv/bin/python scripts/fuzz/fuzz.py imap                         # atheris if installed, until Ctrl-C
    .venv/bin/python scripts/fuzz/fuzz.py message -max_total_time=600  # extra arguments go to libFuzzer
    .venv/bin/python scripts/fuzz/fuzz.py address --engine random --seconds 300 --seed 7
    .venv/bin/python scripts/fuzz/fuzz.py smtp --seconds 600

Crashing inputs are written to ``--crashes`` (default ``var/fuzz/<target>/``, atheris's too unless
``-artifact_prefix=`` says otherwise) and the run exits 1. Replay one with ``--replay FILE``. Atheris keeps its
corpus in ``var/fuzz/<target>/corpus`` (or the folder given after the target), so a run goes on from the last.
"""

from __future__ import annotations

import argparse
import importlib
import random
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import targets  # the folder is on sys.path now

# -- the pure-Python engine ----------------------------------------------------------------------------------


def mutate(rng: random.Random, data: bytes, pool: list[bytes], dictionary: list[bytes]) -> bytes:
    """One to eight random edits: flip, insert, delete, repeat, splice another input, insert a token."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        choice = rng.randrange(8)
        pos = rng.randint(0, len(buf))
        if choice == 0 and buf:
            buf[min(pos, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif choice == 1:
            buf[pos:pos] = bytes([rng.randrange(256)])
        elif choice == 2 and buf:
            del buf[pos : pos + rng.randint(1, 16)]
        elif choice == 3 and buf:
            start = rng.randrange(len(buf))
            chunk = buf[start : start + rng.randint(1, 32)]
            buf[pos:pos] = chunk * rng.randint(1, 50)
        elif choice == 4 and pool:
            other = rng.choice(pool)
            cut = rng.randint(0, len(other))
            buf = buf[:pos] + other[cut:]
        elif choice == 5:
            buf[pos:pos] = rng.choice(dictionary)
        elif choice == 6 and buf:
            buf[min(pos, len(buf) - 1)] = rng.choice(b'\x00\r\n "()[]{}<>@\\\xff')
        elif choice == 7 and buf:
            end = min(len(buf), pos + rng.randint(1, 16))
            buf[pos:end] = rng.choice(dictionary)
    return bytes(buf[: 1 << 16])


def run_random(
    name: str, target: Callable[[bytes], None], seeds: list[bytes], seconds: float, seed: int, crashes: Path
) -> int:
    """Mutate seeds (and inputs that got through) until ``seconds`` pass; 1 at the first crash."""
    rng = random.Random(seed)
    pool = list(seeds)
    deadline = time.monotonic() + seconds
    runs = 0
    for data in seeds:
        if _try(name, target, data, crashes):
            return 1
    while time.monotonic() < deadline:
        data = mutate(rng, rng.choice(pool), pool, targets.DICTIONARY)
        runs += 1
        if _try(name, target, data, crashes):
            print(f"{name}: crash after {runs} inputs (seed {seed})", file=sys.stderr)
            return 1
        if len(pool) < 5000 and rng.random() < 0.02:  # keep some mutants as new starting points
            pool.append(data)
        if runs % 20000 == 0:
            print(f"{name}: {runs} inputs, no crash", flush=True)
    print(f"{name}: {runs} inputs in {seconds:g}s, no crash (seed {seed})")
    return 0


def _try(name: str, target: Callable[[bytes], None], data: bytes, crashes: Path) -> bool:
    try:
        target(data)
    except Exception:
        crashes.mkdir(parents=True, exist_ok=True)
        path = crashes / f"crash-{int(time.time() * 1000)}"
        path.write_bytes(data)
        traceback.print_exc()
        print(f"{name}: crashing input saved to {path}: {data[:200]!r}", file=sys.stderr)
        return True
    return False


# -- atheris --------------------------------------------------------------------------------------------------

# What atheris instruments (imported inside instrument_imports): everything the in-process targets reach.
INSTRUMENTED = [
    "relentad.addresses",
    "relentad.addrspec",
    "relentad.bodytext",
    "relentad.carddav.vcard",
    "relentad.crm.contactfile",
    "relentad.crm.rules",
    "relentad.crm.sieve",
    "relentad.crm.sieveregex",
    "relentad.crm.userscripts",
    "relentad.envelope",
    "relentad.headers",
    "relentad.imap.mutf7",
    "relentad.imap.parser",
    "relentad.imap.responses",
    "relentad.managesieve.parser",
    "relentad.message",
    "relentad.mimetree",
    "relentad.pop3.parser",
    "relentad.sections",
    "relentad.smtp.server",
    "relentad.spam.tokenize",
]


def run_atheris(name: str, extra: list[str], crashes: Path) -> int:
    import atheris

    with atheris.instrument_imports(include=["relentad", "aiosmtpd", "sievelib"]):
        for module in INSTRUMENTED:
            importlib.import_module(module)
    atheris.Setup([sys.argv[0], *atheris_args(name, extra, crashes)], targets.TARGETS[name])
    atheris.Fuzz()
    return 0


def atheris_args(name: str, extra: list[str], crashes: Path) -> list[str]:
    """libFuzzer's arguments: ours, then ``extra``. Without a corpus folder in ``extra`` the corpus is kept in
    ``crashes/corpus`` (libFuzzer adds what it finds to the first folder: a temporary one lost it at each run), and
    crash files go to ``crashes`` unless an artifact path is given; the seeds and the dictionary are written there."""
    seeds, dictionary = crashes / "seeds", crashes / "dictionary"
    seeds.mkdir(parents=True, exist_ok=True)
    for number, data in enumerate(targets.SEEDS[name]):
        (seeds / f"seed-{number}").write_bytes(data)
    dictionary.write_text("".join(f'"{_escape(token)}"\n' for token in targets.DICTIONARY))
    args = [f"-dict={dictionary}", "-max_len=65536", "-timeout=10"]
    if not any(arg.startswith(("-artifact_prefix=", "-exact_artifact_path=")) for arg in extra):
        args.append(f"-artifact_prefix={crashes}/")
    corpora = [] if any(not arg.startswith("-") for arg in extra) else [str(crashes / "corpus")]
    for folder in corpora:
        Path(folder).mkdir(parents=True, exist_ok=True)
    return [*args, *extra, *corpora, str(seeds)]


def _escape(token: bytes) -> str:
    return "".join(chr(b) if 0x20 <= b < 0x7F and b not in b'"\\' else f"\\x{b:02x}" for b in token)


# -- main -----------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", choices=[*targets.TARGETS, "smtp", "imap-wire"])
    parser.add_argument("--engine", choices=["auto", "atheris", "random"], default="auto")
    parser.add_argument("--seconds", type=float, default=60.0, help="random engine: how long (default 60)")
    parser.add_argument("--seed", type=int, default=None, help="random engine: RNG seed (default: random)")
    parser.add_argument("--crashes", type=Path, default=None, help="where crashing inputs go")
    parser.add_argument("--replay", type=Path, default=None, help="run one saved input and show what it does")
    args, extra = parser.parse_known_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    crashes = args.crashes or ROOT / "var" / "fuzz" / args.target
    targets.install_log_trap()

    if args.target in ("smtp", "imap-wire"):
        import wire

        return wire.run(args.target, args.seconds, seed, crashes)
    target = targets.TARGETS[args.target]
    if args.replay is not None:
        target(args.replay.read_bytes())
        print("no crash")
        return 0
    engine = args.engine
    if engine == "auto":
        try:
            import atheris  # noqa: F401
        except ImportError:
            engine = "random"
            print("atheris is not installed (pip install -e '.[fuzz]'): pure-Python engine", file=sys.stderr)
        else:
            engine = "atheris"
    if engine == "atheris":
        return run_atheris(args.target, extra, crashes)
    if extra:
        parser.error(f"unknown arguments for the random engine: {extra}")
    return run_random(args.target, target, targets.SEEDS[args.target], args.seconds, seed, crashes)


if __name__ == "__main__":
    sys.exit(main())
