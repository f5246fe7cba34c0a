"""Random and mutated IMAP and SMTP sessions over a real socket, with the checks every reply must pass.

Shared by the short, seeded fuzz tests in tests/e2e/test_hostile.py and the long-run ``scripts/fuzz/fuzz.py smtp``
and ``imap-wire``. A command is a list of segments: every segment but the last ends with a literal announcement
(``{n}`` or ``{n+}``) whose octets start the next segment, so the client honours the framing it announced and a
reply that never comes is the server's fault (a hang), never the client's.

What the server must do with each IMAP command, whatever the bytes: answer with the command's tag (OK, NO or BAD)
or say ``* BYE`` and close; never ``[SERVERBUG]``, never silence.
"""

from __future__ import annotations

import random
import socket
from dataclasses import dataclass, field

from relentad.imap.parser import pending_literal

# -- IMAP --------------------------------------------------------------------------------------------------

# Command templates; "{lit}" is replaced by a literal (announce + data), "{tag}" never appears: tags are ours.
IMAP_TEMPLATES = [
    "CAPABILITY",
    "NOOP",
    'ID ("name" "fuzz" "version" NIL)',
    "ENABLE UTF8=ACCEPT CONDSTORE QRESYNC",
    "LOGIN {lit} {lit}",
    "LOGIN alice@example.test wrong",
    "AUTHENTICATE PLAIN",
    "AUTHENTICATE PLAIN =",
    "SELECT INBOX",
    "SELECT {lit} (CONDSTORE)",
    'EXAMINE "INBOX" (QRESYNC (1 1 1:5))',
    "CREATE {lit}",
    'DELETE "Fuzz"',
    "RENAME {lit} {lit}",
    "SUBSCRIBE Fuzz",
    'LIST "" {lit} RETURN (SUBSCRIBED CHILDREN STATUS (MESSAGES UNSEEN))',
    'LSUB "" *',
    "STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ SIZE)",
    'APPEND INBOX (\\Seen) "25-Nov-2026 08:00:00 +0000" {lit}',
    "APPEND INBOX {lit} {lit}",
    "FETCH 1:* (FLAGS UID RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (SUBJECT)]<0.50>)",
    "UID FETCH 1:* (BODY.PEEK[1.MIME] BINARY.PEEK[1] BODY[TEXT]<2.3>) (CHANGEDSINCE 1)",
    "SEARCH CHARSET UTF-8 OR SUBJECT {lit} FROM x SINCE 1-Jan-2020",
    "UID SEARCH RETURN (MIN MAX COUNT SAVE) NOT DELETED",
    "STORE $ +FLAGS.SILENT (\\Flagged $Fuzz)",
    "UID STORE 1:* -FLAGS (\\Seen) (UNCHANGEDSINCE 99)",
    "COPY 1:2 {lit}",
    "UID MOVE 1 Trash",
    "EXPUNGE",
    "UID EXPUNGE 1:*",
    "CHECK",
    "UNSELECT",
    "CLOSE",
    "GETQUOTAROOT INBOX",
    "NAMESPACE",
]
_LITERAL_WORDS = [b"INBOX", b"Fuzz", b"alice@example.test", b"", b"&AOQ-", b"a\x00b", b"\xc3\xa9t\xc3\xa9", b"%"]
# Verbs that change the byte stream itself (a TLS handshake, deflate): the generator never lets them through.
_STREAM_VERBS = (b"STARTTLS", b"COMPRESS")
_MESSAGE = b"From: fuzz@elsewhere.test\r\nSubject: fuzz\r\n\r\nbody\r\n"


def _mutate(rng: random.Random, text: bytes) -> bytes:
    buf = bytearray(text)
    for _ in range(rng.randint(1, 4)):
        pos = rng.randint(0, len(buf))
        action = rng.randrange(5)
        if action == 0 and buf:
            del buf[pos : pos + rng.randint(1, 8)]
        elif action == 1:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 6)))
        elif action == 2:
            buf[pos:pos] = rng.choice([b"(", b")", b"[", b"]", b'"', b"\\", b"*", b"{", b"}", b"NIL", b" ", b"$"])
        elif action == 3 and buf:
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        else:
            start = rng.randrange(len(buf) or 1)
            buf[pos:pos] = buf[start : start + rng.randint(1, 10)] * rng.randint(1, 20)
    return bytes(buf)


def imap_command(rng: random.Random) -> list[bytes]:
    """One command's segments (without tag): a template, maybe mutated, with honest literals."""
    template = rng.choice(IMAP_TEMPLATES).encode()
    pieces = template.split(b"{lit}")
    if rng.random() < 0.7:
        pieces = [_mutate(rng, piece) if rng.random() < 0.6 else piece for piece in pieces]
    pieces = [piece.replace(b"\r", b"").replace(b"\n", b"") for piece in pieces]
    segments: list[bytes] = []
    current = pieces[0]
    for piece in pieces[1:]:
        data = _MESSAGE if b"APPEND" in template and rng.random() < 0.5 else rng.choice(_LITERAL_WORDS)
        if rng.random() < 0.3:
            data = _mutate(rng, data)
        plus = b"+" if rng.random() < 0.5 else b""
        binary = b"~" if rng.random() < 0.05 else b""
        segments.append(current + b" " + binary + b"{%d%s}\r\n" % (len(data), plus))
        current = data + piece
    if pending_literal(current + b"\r\n") is not None:  # a mutation announced a literal we would not send
        current += b" x"
    segments.append(current + b"\r\n")
    verb = segments[0].lstrip().split(b" ", 1)[0].upper()
    if verb in _STREAM_VERBS or verb.startswith(b"COMPRESS"):
        return [b"NOOP\r\n"]
    return segments


def special_imap_commands() -> list[list[bytes]]:
    """Framing edge cases every run includes: huge, zero, unfinished and odd literal announcements."""
    return [
        [b"APPEND INBOX {99999999999}\r\n"],  # synchronizing, far too big: NO [TOOBIG] at once
        [b"LOGIN {0}\r\n", b" {0}\r\n", b"\r\n"],
        [b"LOGIN {20000+}\r\n", b"x" * 20000 + b" y\r\n"],  # non-synchronizing, over the pre-login limit
        [b"SELECT ~{5}\r\n", b"INBOX\r\n"],
        [b"FETCH 1:* (BODY[" + b"1." * 200 + b"])\r\n"],
        [b"SEARCH " + b"(" * 300 + b"ALL" + b")" * 300 + b"\r\n"],
        [b"SEARCH " + b"NOT " * 2000 + b"ALL\r\n"],
        [b"STORE 1:* FLAGS (" + b"\\Seen " * 500 + b")\r\n"],
        [b"\x00\xff\xfe\r\n"],
        [b"UID\r\n"],
        [b"IDLE\r\n"],
    ]


@dataclass
class ImapOutcome:
    replies: list[bytes] = field(default_factory=list)
    closed: bool = False  # the server said BYE (or closed) and the connection is gone


class ImapWire:
    """A raw IMAP connection that sends one fuzzed command at a time and checks its outcome."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.file = self.sock.makefile("rb")
        self.greeting = self.file.readline()
        self.count = 0
        self.closed = False

    def close(self) -> None:
        try:
            self.file.close()
            self.sock.close()
        except OSError:
            pass

    def readline(self) -> bytes:
        try:
            return self.file.readline()
        except ConnectionResetError:
            return b""

    def _send_through(self, pending: list[bytes]) -> None:
        """Send segments up to and including the first that waits for a ``+`` (a synchronizing literal)."""
        while pending:
            segment = pending.pop(0)
            self.sock.sendall(segment)
            spec = pending_literal(segment)
            if spec is None or spec.synchronizing:
                return

    def run(self, segments: list[bytes]) -> ImapOutcome:
        """Send ``segments`` under a new tag; read until the tagged reply or BYE. Raises AssertionError on a
        malformed outcome; TimeoutError (a hang) propagates."""
        self.count += 1
        tag = b"f%d" % self.count
        outcome = ImapOutcome()
        extra = 0  # continuations after the last segment
        pending = [tag + b" " + segments[0], *segments[1:]]
        try:
            self._send_through(pending)
        except OSError:
            outcome.closed = self.closed = True
            return outcome
        while True:
            line = self.readline()
            if not line:
                assert any(r.startswith(b"* BYE") for r in outcome.replies), (
                    f"connection closed without BYE after {segments!r}: {outcome.replies!r}"
                )
                outcome.closed = self.closed = True
                return outcome
            outcome.replies.append(line)
            assert line.endswith(b"\r\n"), line
            assert b"SERVERBUG" not in line, f"{segments!r} → {line!r}"
            if line.startswith(b"+"):
                # The server waits for literal data, an IDLE's DONE or an AUTHENTICATE response.
                if pending:
                    self._send_through(pending)
                    continue
                extra += 1
                assert extra < 4, f"endless continuations for {segments!r}"
                self.sock.sendall(b"DONE\r\n" if extra == 1 else b"*\r\n")
                continue
            if line.startswith(tag + b" "):
                status = line[len(tag) + 1 :].split(b" ", 1)[0]
                assert status in (b"OK", b"NO", b"BAD"), line
                return outcome
            # Untagged data (* 3 EXISTS, * OK [..], * SEARCH, * BYE before the close): keep reading.


# -- SMTP --------------------------------------------------------------------------------------------------

SMTP_VERBS = [b"HELO", b"EHLO", b"MAIL FROM:", b"RCPT TO:", b"RSET", b"NOOP", b"VRFY", b"EXPN", b"HELP", b"DATA",
              b"BDAT", b"AUTH", b"QUIT", b"XCLIENT", b"mail from:<", b"RCPT TO:<", b""]  # fmt: skip
SMTP_ARGUMENTS = [b"<>", b"<a@example.test>", b"<alice@example.test>", b"<alice@example.test> SIZE=9999999999999",
                  b"<alice@example.test> BODY=8BITMIME SMTPUTF8", b"<\"a b\"@example.test>", b"<@x:y@z>",
                  b"client.example.test", b"PLAIN", b"LOGIN", b"\xc0\xaf", b"%s%n", b"<" + b"a" * 300 + b">",
                  b"\x00", b""]  # fmt: skip


# Replies after which the server closes: QUIT's, shutdown or timeout, and aiosmtpd's limit on unknown commands.
_SMTP_CLOSING = (b"221", b"421", b"502 5.5.1 Too many unrecognized commands")


def smtp_session(rng: random.Random) -> list[bytes]:
    """Up to eight command lines (no CR/LF inside): verbs with random, mutated or crafted arguments."""
    lines = []
    for _ in range(rng.randint(1, 8)):
        verb = rng.choice(SMTP_VERBS)
        argument = rng.choice(SMTP_ARGUMENTS)
        if rng.random() < 0.5:
            argument = _mutate(rng, argument)
        line = verb + (b" " if verb[-1:].isalpha() else b"") + argument
        lines.append(line.replace(b"\r", b"").replace(b"\n", b""))
    return lines


def smtp_exchange(host: str, port: int, lines: list[bytes], timeout: float = 10.0) -> list[bytes]:
    """Send the lines one by one after the greeting and QUIT at the end; every reply line must be well formed.
    DATA, BDAT and AUTH are sent behind NOOP (the message parsers and the AUTH throttle have their own tests)."""
    replies: list[bytes] = []
    with socket.create_connection((host, port), timeout=timeout) as sock:
        stream = sock.makefile("rb")
        replies.append(stream.readline())
        for line in [*lines, b"QUIT"]:
            held = line.upper().lstrip().startswith((b"DATA", b"BDAT", b"STARTTLS", b"AUTH"))
            try:
                sock.sendall((b"NOOP " if held else b"") + line + b"\r\n")
            except OSError:
                break
            while True:
                try:
                    reply = stream.readline()
                except ConnectionResetError:
                    reply = b""
                if not reply:
                    break
                replies.append(reply)
                if reply[3:4] != b"-":
                    break
            if not reply or reply.startswith(_SMTP_CLOSING):
                break
    for reply in replies:
        assert reply[:3].isdigit() and reply[3:4] in (b" ", b"-") and reply.endswith(b"\r\n"), (lines, reply)
        assert b"Error: (" not in reply, (lines, reply)  # aiosmtpd's answer to an exception in a handler
    assert replies[0].startswith(b"220 "), replies[0]
    assert replies[-1].startswith(_SMTP_CLOSING), (lines, replies[-1])
    return replies
