"""Parse speed of relentad.message.parse: µs per typical 4 KB message and mean over the real corpus.

Usage: .venv/bin/python scripts/bench/parse_speed.py [CORPUS_DIR ...]
Prints figures only (no pass/fail); the stdlib email parser runs on the same input as the baseline ratio.
"""

from __future__ import annotations

import email
import email.policy
import sys
import time
from collections.abc import Callable
from pathlib import Path

from relentad.message import parse

DEFAULT_CORPUS = [
    Path("/work/shared/corpus/spamassassin/train/ham"),
    Path("/work/shared/corpus/spamassassin/train/spam"),
]


def typical_message() -> bytes:
    """A ~4 KB plain-text message with the header block a real MTA chain leaves (CRLF)."""
    header = (
        "Return-Path: <alice@example.org>\r\n"
        "Received: from mail.example.org (mail.example.org [192.0.2.10])\r\n"
        "\tby mx.example.test (relentad) with ESMTPS id 4A1B2C3D\r\n"
        "\tfor <bob@example.test>; Tue, 24 Nov 2026 10:11:12 +0000\r\n"
        "Received: from [10.0.0.5] (unknown [198.51.100.7])\r\n"
        "\tby mail.example.org (Postfix) with ESMTPSA id 1234567\r\n"
        "\tfor <bob@example.test>; Tue, 24 Nov 2026 10:11:10 +0000 (UTC)\r\n"
        "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=sel;\r\n"
        "\th=from:to:subject:date:message-id; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n"
        "\tb=dGVzdHRlc3R0ZXN0dGVzdHRlc3R0ZXN0dGVzdHRlc3R0ZXN0dGVzdHRlc3R0ZXN0dGVzdA==\r\n"
        "Message-ID: <20261124101110.GA1234@mail.example.org>\r\n"
        "Date: Tue, 24 Nov 2026 11:11:10 +0100\r\n"
        'From: "Alice Example" <alice@example.org>\r\n'
        "To: Bob <bob@example.test>, carol@example.test\r\n"
        "Cc: =?utf-8?q?J=C3=B6rg_M=C3=BCller?= <joerg@example.de>\r\n"
        "Subject: Re: quarterly numbers and the plan for next week\r\n"
        "In-Reply-To: <abc@example.test>\r\n"
        "References: <xyz@example.test> <abc@example.test>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
    )
    line = "The numbers look fine; let us go through them on Monday, line by line.\r\n"
    body = line * ((4096 - len(header)) // len(line))
    return (header + body).encode()


def per_call_us(fn: Callable[[bytes], object], messages: list[bytes], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for raw in messages:
            fn(raw)
        best = min(best, time.perf_counter() - start)
    return best / len(messages) * 1e6


def stdlib(raw: bytes) -> object:
    """Baseline 1: the stdlib's lazy compat32 parse (headers split, bodies left as strings)."""
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def stdlib_full(raw: bytes) -> object:
    """Baseline 2: what parse() answers, done with the stdlib's modern API (policy.default)."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    for name in ("date", "subject", "from", "to", "cc", "message-id"):
        message.get(name)
    return [part.get_content_type() for part in message.walk()]


def main(argv: list[str]) -> None:
    folders = [Path(arg) for arg in argv] or DEFAULT_CORPUS
    typical = typical_message()
    ours = per_call_us(parse, [typical] * 2000, 5)
    base = per_call_us(stdlib, [typical] * 2000, 5)
    full = per_call_us(stdlib_full, [typical] * 500, 3)
    print(
        f"typical {len(typical)} B message: parse {ours:.1f} µs  (stdlib compat32 {base:.1f} µs, x{base / ours:.1f}; "
        f"stdlib policy.default with headers {full:.1f} µs, x{full / ours:.1f})"
    )

    corpus = [p.read_bytes() for folder in folders if folder.is_dir() for p in sorted(folder.rglob("*")) if p.is_file()]
    if not corpus:
        print("no corpus found")
        return
    mean_size = sum(map(len, corpus)) / len(corpus)
    ours = per_call_us(parse, corpus, 3)
    base = per_call_us(stdlib, corpus, 1)
    crlf = [raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") for raw in corpus]
    ours_crlf = per_call_us(parse, crlf, 3)
    print(
        f"corpus {len(corpus)} messages, mean {mean_size:.0f} B: parse {ours:.1f} µs/msg as stored (bare LF), "
        f"{ours_crlf:.1f} µs/msg as CRLF  (stdlib email {base:.1f} µs, x{base / ours:.1f})"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
