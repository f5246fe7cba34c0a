"""Turn one raw message into the set of tokens the spam classifier counts.

The tokenizer reads what a person or a filter would look at: decoded headers (subject, addresses,
Received hops and their hygiene, content types, mailer, authentication results, which header names are
present and how they are spelled, how many fields and Received hops there are, the shapes of the Message-ID,
Date and MIME boundary, a few words of any other header), whether the From domain agrees with
the Message-ID, Received, Reply-To and link domains, the text of text/plain and text/html parts (tags
stripped; URL, comment and attribute-value features kept), and the shape of the MIME tree (content types,
charsets, encodings, attachment file types). Single-part messages are decoded directly; multipart ones
go through the stdlib parser (``compat32``, every decode guarded).

Invariants:
- Total and pure: any bytes in, a frozenset of str out. Malformed MIME, unknown charsets, broken base64
  or quoted-printable, bad encoded-words and truncated messages are tokenized as far as they make sense;
  nothing here raises.
- A token counts once per message (set semantics, as in SpamBayes and bogofilter): the classifier's counts
  are "messages containing w", never occurrences.
- Header evidence is prefixed with where it came from (``subj:``, ``from:``, ``rcvd:``, ``hdr:`` ...);
  body words carry no prefix. The same word in a subject and in a body is two different clues.
- Headers our own MTA adds are ignored (``ignore_headers``, default ``OWN_HEADERS``), and so is every
  Received hop stamped ``by`` one of ``own_hosts``, so that training learns the sender's message and not our
  stamp on it. Authentication-Results is kept on purpose: it is written before the classifier runs and is
  kept as ``auth:<method>=<result>`` only (no host names), so it is the same at delivery and at retraining.
- Bounded work: at most ``MAX_BYTES`` of the message, ``MAX_PARTS`` MIME parts and ``MAX_TEXT``
  characters per text part are read, so a huge message costs no more than a large one.
"""

from __future__ import annotations

import binascii
import email.parser
import functools
import html
import quopri
import re
from collections.abc import Collection, Iterator
from email.message import Message
from email.policy import compat32
from itertools import islice

MAX_BYTES = 512 * 1024
MAX_PARTS = 40
MAX_TEXT = 64 * 1024
MIN_WORD = 3
MAX_WORD = 12
GENERIC_WORDS = 8  # words kept from a header with no dedicated rule
MAX_NAME = 40  # header names are cut here in tokens (spam invents long ones)
TOKENIZER_VERSION = 4
"""Bumped whenever what is learned for the same message changes: counts learned by an older version are
partly stale (recorded with each model in ``spam_totals.tokenizer``; ``spam stats`` says when to retrain).
2: header shape tokens (counts of header fields and Received hops, Message-ID / Date / MIME boundary shapes,
subject length, "from unknown" hops, undisclosed recipients). 3: the header and body view models
(``relentad.spam.views``) are learned beside the full one; a version-2 model scores as before until retrained.
4: eight train-on-error orders summed and scored with s = 4.0, min_dev 0.15 (``classifier.ENSEMBLE_ROUNDS``,
``Params``); a version-3 model learned each message about half as often as the prior now expects, so it scores
less surely."""

# Headers the receiving side adds (our MTA, or the MDA/MUA of mail imported from elsewhere: mbox status,
# delivery stamps). They say nothing about the sender; entries ending in "*" are prefixes.
OWN_HEADERS: frozenset[str] = frozenset(
    {
        "delivered-to",
        "return-path",
        "x-original-to",
        "envelope-to",
        "delivery-date",
        "x-spam-*",
        "x-relentad-*",
        "x-bogosity",
        "x-virus-scanned",
        "status",
        "x-status",
        "x-keywords",
        "x-uid",
        "x-imap*",
        "content-length",
        "lines",
    }
)

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_HEADER_LINE = re.compile(r"^([!-9;-~]+)[ \t]*:(.*)$")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_ADDRESS = re.compile(r"[\w.+%'=-]+@([\w-]+(?:\.[\w-]+)+)")
_AT_DOMAIN = re.compile(r"(?<=[\w.+%'=-])@([\w-]+(?:\.[\w-]+)+)")
_IPV4 = re.compile(r"\b(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\b")
_HOSTNAME = re.compile(r"\b((?:[a-z0-9-]+\.)+[a-z]{2,})\b")
_RECEIVED_BY = re.compile(r"\bby\s+([\w.-]+)")
_RECEIVED_WITH = re.compile(r"\bwith\s+([\w/.-]+)")
_RECEIVED_FROM = re.compile(r"^\s*from\s+(\S+)\s+\(([^)]*)\)")
_DYNAMIC_HOST = re.compile(r"\d+[-.]\d+[-.]\d+|\b(?:dsl|dial|dhcp|cable|ppp|dyn|pool|adsl)")
# Matched on lowercased text: a flat alternation without IGNORECASE scans about seven times faster.
_URL = re.compile(r"(?:https?://|ftp://|www\.)[^\s<>\"'()\[\]{}]+")
_URL_SPLIT = re.compile(r"[/?&=#.:;,_+%~-]+")
# The HTML patterns too are matched on lowercased markup.
_HTML_DROP = re.compile(r"<!--.*?-->|<(style|script)\b.*?</\1\s*>", re.DOTALL)
_HTML_TAG = re.compile(r"<\s*(/?)\s*([a-z][a-z0-9]*)([^>]*)>")
_HTML_VALUE_ATTR = re.compile(
    r"[\s\"'](color|bgcolor|face|size|align|border|width|height)\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s>\"']+)"
)
_QUOTES = "\"'"
_PUNCT = "\"'`.,;:!?()[]{}<>*_~|\\/-=+#^"
_AUTH_RESULT = re.compile(r"\b(spf|dkim|dmarc|arc|iprev|auth|dkim-adsp)\s*=\s*([a-z]+)")
_DEFAULT_CHARSET = "latin-1"
_CHARSET_PARAM = re.compile(r"charset\s*=\s*[\"']?([\w.:-]+)", re.IGNORECASE)
_BOUNDARY_PARAM = re.compile(r"boundary\s*=\s*\"?([^\";\s]+)", re.IGNORECASE)
_SHAPE_RUN = re.compile(r"[a-z]+|[A-Z]+|[0-9]+")
_SUBJECT_PUNCT = re.compile(r"[!?$%]+")
_DATE_ZONE = re.compile(r"([+-]\d{4}|\b[a-z]{3,4})\s*(\([^)]*\))?\s*$")


def tokenize(
    raw: bytes,
    *,
    own_hosts: Collection[str] = (),
    ignore_headers: Collection[str] = OWN_HEADERS,
) -> frozenset[str]:
    """Return the tokens of ``raw``; never raises (see the module invariants)."""
    tokens: set[str] = set()
    try:
        raw = _strip_mbox_from(raw[:MAX_BYTES])
        head, body = _split_head(raw)
        skip = _header_filter(ignore_headers)
        own = frozenset(h.lower() for h in own_hosts)
        mime: dict[str, str] = {}
        fields = hops = 0
        for spelled, value in _headers(head):
            name = spelled.lower()
            if name in ("content-type", "content-transfer-encoding"):
                mime.setdefault(name, value)
            if not skip(name) and not (name == "received" and _own_hop(value, own)):
                fields += 1
                hops += name == "received"
                tokens.add("hn:" + spelled[:MAX_NAME])
                _header_tokens(name, value.lower() if name == "received" else value, tokens)
        tokens.add(f"hdr:count:{min(fields // 3, 15)}")
        tokens.add(f"rcvd:count:{min(hops, 8)}")
        ctype = mime.get("content-type", "").lower()
        if "multipart/" in ctype or "message/" in ctype:
            _body_tokens(raw, tokens)
        else:
            _single_part_tokens(ctype, mime.get("content-transfer-encoding", ""), body, tokens)
        _agreement_tokens(tokens)
    except Exception:  # totality is the contract; keep what was gathered
        tokens.add("tokenizer:error")
    return frozenset(tokens)


def words(text: str) -> Iterator[str]:
    """Yield the word tokens of ``text``: lowercased, punctuation-trimmed, 3-12 characters.

    Longer runs become a ``skip:`` token naming their first character and length bucket (SpamBayes'
    trick): the exact string is noise, that there was a long run is not.
    """
    for piece in dict.fromkeys(text.lower().split()):  # dedupe, keep order
        word = piece.strip(_PUNCT)
        n = len(word)
        if MIN_WORD <= n <= MAX_WORD:
            yield word
        elif n > MAX_WORD:
            yield f"skip:{word[0]} {n // 10 * 10}"


def decode_header(value: str) -> str:
    """Decode RFC 2047 encoded-words in ``value``, replacing what cannot be decoded."""
    if "=?" not in value:
        return value
    return _ENCODED_WORD.sub(_decode_word, value)


def _decode_word(match: re.Match[str]) -> str:
    charset, encoding, text = match.group(1), match.group(2).lower(), match.group(3)
    data = text.encode("ascii", "replace")
    try:
        if encoding == "b":
            data = binascii.a2b_base64(data + b"===")
        else:
            data = quopri.decodestring(data.replace(b"_", b" "), header=True)
    except (binascii.Error, ValueError):
        return text
    return _decode_bytes(data, charset.split("*", 1)[0])


def _decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode ``data`` in ``charset``; unknown or absent charsets fall back to UTF-8 then Latin-1."""
    if charset:
        try:
            return data.decode(charset, "replace")
        except (LookupError, ValueError):
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode(_DEFAULT_CHARSET)


def _strip_mbox_from(raw: bytes) -> bytes:
    """Drop an mbox "From " separator line: an artefact of storage, not part of the message."""
    if raw.startswith(b"From "):
        end = raw.find(b"\n")
        return raw[end + 1 :] if end >= 0 else b""
    return raw


def _split_head(raw: bytes) -> tuple[bytes, bytes]:
    """Split at the first empty line (LF or CRLF endings); ``bytes.find`` first, the regex only for mixed ones."""
    lf = raw.find(b"\n\n")
    crlf = raw.find(b"\r\n\r\n")
    if crlf < 0 and lf >= 0 and raw.find(b"\r", 0, lf) < 0:  # plain LF endings: no regex needed
        return raw[:lf], raw[lf + 2 :]
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return raw[:crlf], raw[crlf + 4 :]
    match = _HEADER_END.search(raw, 0, lf + 2 if lf >= 0 else len(raw))
    if match is None:
        return raw, b""
    return raw[: match.start()], raw[match.end() :]


def _header_filter(ignore: Collection[str]) -> _Skip:
    return _make_filter(frozenset(ignore))


@functools.lru_cache(maxsize=16)
def _make_filter(ignore: frozenset[str]) -> _Skip:
    """Built once per list of headers (the daemon tokenizes every message with the same one)."""
    names = frozenset(n.lower() for n in ignore if not n.endswith("*"))
    prefixes = tuple(n[:-1].lower() for n in ignore if n.endswith("*"))
    return _Skip(names, prefixes)


class _Skip:
    """Callable deciding whether a (lowercased) header name is one of ours."""

    __slots__ = ("names", "prefixes")

    def __init__(self, names: frozenset[str], prefixes: tuple[str, ...]) -> None:
        self.names = names
        self.prefixes = prefixes

    def __call__(self, name: str) -> bool:
        return name in self.names or (bool(self.prefixes) and name.startswith(self.prefixes))


def _headers(head: bytes) -> Iterator[tuple[str, str]]:
    """Yield (name as spelled, unfolded decoded value) for each header field in ``head``."""
    text = _decode_bytes(head, None)
    name: str | None = None
    value: list[str] = []
    for line in text.splitlines():
        if line[:1] in (" ", "\t") and name is not None:
            value.append(line)
            continue
        if name is not None:
            yield name, decode_header(" ".join(value))
        match = _HEADER_LINE.match(line)
        if match is None:
            name = None
            continue
        name, value = match.group(1), [match.group(2)]
    if name is not None:
        yield name, decode_header(" ".join(value))


def _header_tokens(name: str, value: str, out: set[str]) -> None:
    """Add the tokens of one header field; the field's name is always a token itself."""
    low = value.lower()
    if name == "received":
        _received_tokens(low, out)
        return
    out.add("hdr:" + name)
    if name == "subject":
        out.update("subj:" + w for w in words(value))
        out.add(f"subj:len:{min(len(value.strip()) // 10, 10)}")
        if value.isupper() and len(value) > 8:
            out.add("subj:ALLCAPS")
        for run in _SUBJECT_PUNCT.findall(value):
            out.add("subj:punct:" + run[:3])
    elif name in ("from", "to", "cc", "reply-to", "sender"):
        _address_tokens(name, low, out)
    elif name == "message-id":
        domains = _ADDRESS.findall(low)
        out.add("msgid:dom:" + _suffix(domains[0], 2) if domains else "msgid:invalid")
        out.add("msgid:shape:" + _shape(value.strip().strip("<>").split("@", 1)[0]))
    elif name in ("x-mailer", "user-agent", "x-mimeole", "x-newsreader"):
        out.update("mailer:" + w for w in words(value))
    elif name == "content-type":
        _content_type_tokens(low, out)
        boundary = _BOUNDARY_PARAM.search(value)
        if boundary is not None:
            out.add("ct:boundary:" + _shape(boundary.group(1)))
    elif name == "authentication-results":
        out.update(f"auth:{m}={r}" for m, r in _AUTH_RESULT.findall(low))
    elif name in ("content-transfer-encoding", "precedence", "x-priority", "x-msmail-priority", "importance"):
        out.add(f"{name}:{low.strip()[:20]}")
    elif name in ("list-id", "organization", "x-mailing-list", "list-unsubscribe"):
        out.update(f"{name}:{w}" for w in words(value))
    elif name == "date":
        zone = _DATE_ZONE.search(low)
        out.add("date:tz:" + (zone.group(1) if zone else "none"))
        out.add("date:shape:" + _shape(value.strip(), 40))
    elif not name.endswith("date"):
        out.update(f"h:{name[:MAX_NAME]}:{w}" for w in islice(words(value), GENERIC_WORDS))


def _address_tokens(name: str, low: str, out: set[str]) -> None:
    domains = _ADDRESS.findall(low)
    for domain in domains[:8]:
        out.add(f"{name}:dom:{_suffix(domain, 2)}")
    if name in ("to", "cc"):
        out.add(f"{name}:count:{min(len(domains), 5)}")
        if "undisclosed" in low:
            out.add(f"{name}:undisclosed")
        return
    addresses = [a.group(0) for a in _ADDRESS.finditer(low)]
    out.update(f"{name}:addr:{a}" for a in addresses[:2])
    display = _ADDRESS.sub(" ", low)
    out.update(f"{name}:name:{w}" for w in words(display))
    if not addresses:
        out.add(f"{name}:noaddr")


def _own_hop(value: str, own_hosts: frozenset[str]) -> bool:
    """Whether a Received field was stamped ``by`` one of our own hosts."""
    if not own_hosts:
        return False
    by = _RECEIVED_BY.search(value.lower())
    return by is not None and by.group(1).rstrip(".") in own_hosts


def _received_tokens(low: str, out: set[str]) -> None:
    """Tokens for one Received hop: host name suffixes, IP prefixes and protocol."""
    out.add("hdr:received")
    if "from unknown" in low:
        out.add("rcvd:from-unknown")
    for host in _HOSTNAME.findall(low)[:6]:
        out.add("rcvd:" + _suffix(host, 2))
        out.add("rcvd:" + _suffix(host, 3))
    for a, b, c, _ in _IPV4.findall(low)[:4]:
        out.add(f"rcvd:ip:{a}.{b}")
        out.add(f"rcvd:ip:{a}.{b}.{c}")
    with_ = _RECEIVED_WITH.search(low)
    if with_ is not None:
        out.add("rcvd:with:" + with_.group(1)[:16])
    hop = _RECEIVED_FROM.search(low)
    if hop is not None:
        _hop_tokens(hop.group(1), hop.group(2), out)


def _hop_tokens(helo: str, comment: str, out: set[str]) -> None:
    """Sender hygiene of one hop "from HELO (rDNS [IP])": missing reverse DNS, HELO disagreeing with it,
    dial-up style names. These are the facts SpamAssassin's RDNS_NONE / HELO mismatch rules look at."""
    if "[" not in comment:
        return
    rdns = _HOSTNAME.search(comment.split("[", 1)[0])
    if rdns is None:
        out.add("rcvd:rdns:none")
        return
    host = rdns.group(1)
    if _IPV4.search(helo) or helo.startswith("["):
        out.add("rcvd:helo:ip")
    elif "." not in helo:
        out.add("rcvd:helo:bare")
    elif _suffix(helo, 2) != _suffix(host, 2):
        out.add("rcvd:helo:mismatch")
    if _DYNAMIC_HOST.search(host):
        out.add("rcvd:rdns:dynamic")


def _agreement_tokens(tokens: set[str]) -> None:
    """Whether the From domain agrees with the Message-ID, Received, link and Reply-To domains.

    Mail from a real organisation tends to be consistent (its own relays, its own Message-IDs, links to its
    own site); forged or hijacked spam usually is not. Reads the tokens already gathered, in one pass.
    """
    domains: dict[str, set[str]] = {}
    for token in tokens:
        if "." not in token:
            continue
        kind, _, rest = token.partition(":")
        if kind in ("rcvd", "url"):
            if not rest.startswith(("ip:", "with:")):
                domains.setdefault(kind, set()).add(rest)
        elif kind in ("from", "msgid", "reply-to") and rest.startswith("dom:"):
            domains.setdefault(kind, set()).add(rest[4:])
    from_dom = domains.pop("from", None)
    if from_dom:
        for kind, found in domains.items():
            tokens.add(f"from:{'agree' if found & from_dom else 'differ'}:{kind}")


def _shape(text: str, limit: int = 24) -> str:
    """The shape of an identifier, SpamBayes/SpamAssassin style: runs of lower case, upper case and digits become
    ``a``/``A``/``9`` (doubled for runs longer than one), punctuation stays; ``<9A99.99`` for a Message-ID, say.
    Mailers and spamware stamp Message-IDs, Dates and MIME boundaries in their own recognisable formats."""
    return _SHAPE_RUN.sub(_shape_run, text)[:limit]


def _shape_run(match: re.Match[str]) -> str:
    run = match.group(0)
    mark = "9" if run[0].isdigit() else "A" if run[0].isupper() else "a"
    return mark if len(run) == 1 else mark + mark


def _suffix(host: str, labels: int) -> str:
    return ".".join(host.rstrip(".").split(".")[-labels:])


def _content_type_tokens(low: str, out: set[str]) -> None:
    out.add("ct:" + low.split(";", 1)[0].strip()[:40])
    charset = _CHARSET_PARAM.search(low)
    if charset is not None:
        out.add("charset:" + charset.group(1))


def _body_tokens(raw: bytes, out: set[str]) -> None:
    """Walk the MIME tree (stdlib parser, compat32, every decode guarded) and tokenize each leaf part."""
    message = email.parser.BytesParser(policy=compat32).parsebytes(raw)
    for count, part in enumerate(message.walk()):
        if count >= MAX_PARTS:
            out.add("mime:toomany")
            break
        try:
            _part_tokens(part, count == 0, out)
        except Exception:  # one broken part must not lose the others
            out.add("mime:broken")
    if message.defects:
        out.add("mime:defect")


def _part_tokens(part: Message, top: bool, out: set[str]) -> None:
    ctype = part.get_content_type()
    if not top:
        out.add("ct:" + ctype)
        cte = str(part.get("content-transfer-encoding", "")).strip().lower()
        if cte:
            out.add("cte:" + cte[:20])
        charset = part.get_param("charset")
        if isinstance(charset, str):
            out.add("charset:" + charset.lower()[:30])
    if part.is_multipart():
        return
    filename = part.get_filename()
    if filename:
        out.add("filetype:" + str(filename).rsplit(".", 1)[-1].lower()[:10])
    if part.get_content_maintype() != "text":
        return
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        _text_part_tokens(ctype, _decode_bytes(payload[: MAX_TEXT * 2], _charset(part))[:MAX_TEXT], out)


def _single_part_tokens(ctype_field: str, cte_field: str, body: bytes, out: set[str]) -> None:
    """The common non-multipart case without the stdlib parser (a third of tokenizing time otherwise)."""
    ctype = ctype_field.split(";", 1)[0].strip()
    if "/" not in ctype:
        ctype = "text/plain"  # RFC 2045 5.2: a missing or invalid type means text/plain
    if not ctype.startswith("text/"):
        return
    data = _transfer_decode(body[: MAX_TEXT * 3], cte_field.strip().lower())
    charset = _CHARSET_PARAM.search(ctype_field)
    text = _decode_bytes(data[: MAX_TEXT * 2], charset.group(1) if charset else None)[:MAX_TEXT]
    _text_part_tokens(ctype, text, out)


def _transfer_decode(data: bytes, cte: str) -> bytes:
    """Undo base64 or quoted-printable leniently; undecodable input is returned as it came."""
    if cte == "base64":
        compact = b"".join(data.split())
        try:
            return binascii.a2b_base64(compact[: len(compact) // 4 * 4])
        except binascii.Error:
            return data
    if cte == "quoted-printable":
        return quopri.decodestring(data)
    return data


def _text_part_tokens(ctype: str, text: str, out: set[str]) -> None:
    low = text.lower()  # every body token is lowercase; lowering once lets the patterns run case-sensitively
    if ctype == "text/html" or (ctype == "text/plain" and "<html" in low[:2000]):
        low = _html_tokens(low, out)
    _text_tokens(low, out)


def _charset(part: Message) -> str | None:
    try:
        charset = part.get_content_charset()
    except Exception:  # malformed RFC 2231 parameters
        return None
    return charset if isinstance(charset, str) else None


def _html_tokens(text: str, out: set[str]) -> str:
    """Add URL, comment and presentational-attribute features of lowercased markup; return the visible text.

    One token per tag or attribute name (``tag:td``, ``attr:table.width``) was tried and dropped: dozens
    of them fire together on any HTML mail, and chi-square combining, which assumes independent clues,
    then pushes legitimate HTML newsletters to spam (cross-validated: FN at FP <= 0.1 % went from about 8 %
    to about 6.5 % without them). Attribute values (``attr:color=red``) vary more and are kept.
    """
    for url in set(_URL.findall(text)):
        _url_tokens(url, out)
    if "<!--" in text:
        out.add("html:comment")
    text = _HTML_DROP.sub("", text)
    for attr, quoted in set(_HTML_VALUE_ATTR.findall(text)):
        out.add(f"attr:{attr}={quoted.strip(_QUOTES)[:20]}")
    visible = _HTML_TAG.sub(" ", text)
    return html.unescape(visible).lower() if "&" in visible else visible  # "&#82;" is an "R"


def _text_tokens(text: str, out: set[str]) -> None:
    """Tokens of lowercased visible text: URLs (then cut out), e-mail domains, words."""
    if "://" in text or "www." in text:
        for url in set(_URL.findall(text)):
            _url_tokens(url, out)
        text = _URL.sub(" ", text)
    if "@" in text:
        for domain in _AT_DOMAIN.findall(text)[:20]:
            out.add("email:" + _suffix(domain, 2))
    _body_words(text, out)


def _body_words(text: str, out: set[str]) -> None:
    """``out.update(words(text))`` for lowercased text, without the generator (the hot loop of tokenizing)."""
    add = out.add
    # Deduplicate before stripping: mail repeats most of its words, and the strip is the costly step.
    for word in {piece.strip(_PUNCT) for piece in set(text.split())}:
        n = len(word)
        if MIN_WORD <= n <= MAX_WORD:
            add(word)
        elif n > MAX_WORD:
            add(f"skip:{word[0]} {n // 10 * 10}")


def link_hosts(tokens: Collection[str]) -> set[str]:
    """The link host names in a message's tokens (the ``url:`` tokens with a dot: the last two and three labels of
    each host; path pieces never have one), for the domain blocklists (dnsbl.py)."""
    return {token[4:] for token in tokens if token.startswith("url:") and "." in token}


DISCUSSION_LIST_FIELDS = ("list-post", "x-beenthere", "mailing-list", "x-mailing-list")
"""Fields a discussion list (Mailman, Google Groups, ezmlm, Sympa ...) adds to every post it forwards; a newsletter's
``List-Unsubscribe`` or ``List-Id`` alone is not one."""
_DISCUSSION_TOKENS = tuple("hdr:" + name for name in DISCUSSION_LIST_FIELDS)  # built once: checked on every delivery


def through_discussion_list(tokens: Collection[str]) -> bool:
    """Whether a message's tokens show it came through a discussion list (one of :data:`DISCUSSION_LIST_FIELDS`),
    for the lower spam cut-off such mail gets (``verdicts.for_message``)."""
    return any(token in tokens for token in _DISCUSSION_TOKENS)


def _url_tokens(url: str, out: set[str]) -> None:
    low = url.lower()
    scheme, _, rest = low.partition("://")
    if not rest:
        scheme, rest = "http", low
    out.add("proto:" + scheme)
    host = rest.split("/", 1)[0].split("@")[-1].split(":")[0]
    if _IPV4.fullmatch(host):
        out.add("url:ip")
    else:
        out.add("url:" + _suffix(host, 2))
        out.add("url:" + _suffix(host, 3))
    path = rest[len(host) :]
    for piece in _URL_SPLIT.split(path)[:12]:
        if MIN_WORD <= len(piece) <= MAX_WORD:
            out.add("url:" + piece)
