"""Modified UTF-7 mailbox names (RFC 3501 §5.1.3), used on the wire unless UTF8=ACCEPT is enabled.

Printable US-ASCII (0x20-0x7e) stands for itself except "&", which is written "&-"; every other run of
characters is UTF-16BE, base64 with "," for "/" and no padding, between "&" and "-".

Invariants: `encode` always produces the one canonical form, and `decode` accepts only that form (it decodes,
re-encodes and compares), so two spellings of one name can never reach the store. Both raise `MUTF7Error`, a
`ValueError`, and nothing else.
"""

from __future__ import annotations

import base64
import binascii

__all__ = ["MUTF7Error", "decode", "encode"]


class MUTF7Error(ValueError):
    """A mailbox name that is not canonical modified UTF-7, or a str that cannot be encoded."""


def _printable(char: str) -> bool:
    return " " <= char <= "~"


def _encode_run(run: str) -> str:
    try:
        raw = run.encode("utf-16-be")
    except UnicodeEncodeError as exc:  # lone surrogates, e.g. from surrogateescape
        raise MUTF7Error("mailbox name contains an unpaired surrogate") from exc
    return "&" + base64.b64encode(raw).rstrip(b"=").replace(b"/", b",").decode("ascii") + "-"


def encode(name: str) -> str:
    """Encode a Unicode mailbox name to its canonical modified UTF-7 form."""
    out: list[str] = []
    run_start = -1
    for index, char in enumerate(name):
        if _printable(char):
            if run_start >= 0:
                out.append(_encode_run(name[run_start:index]))
                run_start = -1
            out.append("&-" if char == "&" else char)
        elif run_start < 0:
            run_start = index
    if run_start >= 0:
        out.append(_encode_run(name[run_start:]))
    return "".join(out)


_B64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,")


def _decode_run(chunk: str) -> str:
    if not set(chunk) <= _B64_CHARS:
        raise MUTF7Error("invalid character in modified base64 run")
    padded = chunk.replace(",", "/") + "=" * (-len(chunk) % 4)
    try:
        raw = base64.b64decode(padded, validate=True)
        if len(raw) % 2:
            raise MUTF7Error("modified base64 run is not whole UTF-16 code units")
        return raw.decode("utf-16-be")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise MUTF7Error("invalid modified base64 run") from exc


def decode(name: str) -> str:
    """Decode a modified UTF-7 mailbox name, rejecting anything that is not the canonical encoding."""
    out: list[str] = []
    index = 0
    while index < len(name):
        char = name[index]
        if not _printable(char):
            raise MUTF7Error("mailbox name contains a character outside printable US-ASCII")
        if char != "&":
            out.append(char)
            index += 1
            continue
        end = name.find("-", index + 1)
        if end < 0:
            raise MUTF7Error('unterminated "&" run in mailbox name')
        chunk = name[index + 1 : end]
        out.append(_decode_run(chunk) if chunk else "&")
        index = end + 1
    decoded = "".join(out)
    if encode(decoded) != name:
        raise MUTF7Error("mailbox name is not in canonical modified UTF-7")
    return decoded
