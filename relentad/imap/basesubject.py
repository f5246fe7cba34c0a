"""Base subject (RFC 5256 §2.1) and the i;unicode-casemap comparator (RFC 5051) that SORT and THREAD use.

The subject given is already RFC 2047-decoded (the stored structure's decoded Subject), so step 1 only turns
tabs and line breaks into spaces and runs of spaces into one. The comparator key is ``casefold()`` followed by
NFKD: full Unicode case folding (ß → ss) stands in for RFC 5051's titlecase mapping (they differ only on a few
characters such as the Cherokee letters), and compatibility decomposition is what RFC 5051 asks for. Python
compares the resulting strings by code point, which is the order of their UTF-8 octets.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["MAX_SUBJECT", "base_subject", "casemap"]

_WSP_RUN = re.compile(r"[ \t\r\n]+")
_BLOB = r"\[[^\[\]]*\][ \t]*"
_LEADER = re.compile(rf"(?:{_BLOB})*(?:re|fwd?)[ \t]*(?:{_BLOB})?:", re.IGNORECASE)
"""subj-leader's *subj-blob subj-refwd (a lone WSP is stripped apart)."""
_LEADING_BLOB = re.compile(_BLOB)
MAX_SUBJECT = 2000
"""Characters of a subject looked at: the steps rescan the text, so a hostile megabyte subject must not be
their input; no two real subjects differ only after this many characters."""


def casemap(text: str) -> str:
    """The sort key of ``text`` under i;unicode-casemap (see the module docstring for what is approximated)."""
    if text.isascii():
        return text.lower()
    return unicodedata.normalize("NFKD", text.casefold())


def base_subject(subject: str | None) -> tuple[str, bool]:
    """(base subject, whether the subject marks a reply or forward): the text SORT SUBJECT compares and
    THREAD groups by. A reply or forward is a subject that lost a "Re:"/"Fw:"/"Fwd:" leader, a "(fwd)" trailer
    or a "[fwd: ...]" wrapper (what THREAD=REFERENCES step 5 asks of the subject table)."""
    text = _WSP_RUN.sub(" ", (subject or "")[:MAX_SUBJECT])
    reply = False
    while True:
        # (2) trailers: "(fwd)" and white space, repeatedly
        while True:
            if text.endswith(" "):
                text = text[:-1]
            elif text[-5:].lower() == "(fwd)":
                text, reply = text[:-5], True
            else:
                break
        # (3)-(5) leaders and blobs, until neither matches
        while True:
            if text.startswith(" "):
                text = text[1:]
                continue
            leader = _LEADER.match(text)
            if leader is not None:
                text, reply = text[leader.end() :], True
                continue
            blob = _LEADING_BLOB.match(text)
            if blob is not None and text[blob.end() :].strip(" "):
                text = text[blob.end() :]
                continue
            break
        # (6) "[fwd: ...]" wrapper: unwrap and start again at (2)
        if text[:5].lower() == "[fwd:" and text.endswith("]"):
            text, reply = text[5:-1], True
            continue
        return text, reply
