"""Inbound message authentication: SPF, DKIM, DMARC and ARC, summed up in one Authentication-Results field.

The pipeline calls `authenticate()` once per incoming message, before anything else looks at it, and
`strip_forged_results()` so that nobody outside can claim our verdicts.

Who does what:
- SPF: relentad.spf (our evaluator over the configured resolver; see its docstring for why not pyspf).
- DKIM and ARC: dkimpy, every signature, with a DNS function that asks the configured nameservers. dkimpy
  blocks, so it runs in a worker thread.
- DMARC (RFC 7489): here. authheaders' DMARC code resolves through dnspython's default resolver, checks
  only the first DKIM signature and takes "test"-like domains for public suffixes, so it cannot be used
  as is; the logic is short (policy discovery, alignment, p/sp/pct).

Invariants:
- `authenticate()` never raises for anything in the message or DNS: DNS timeouts and server failures are
  `temperror` results, broken records `permerror`.
- DMARC only says `fail` after it found a policy record and neither SPF nor any DKIM signature aligned;
  a `temperror` of an identifier that would align never becomes a DMARC failure (one that cannot align,
  the sender's own domain, does not count).
- DMARC checks every author domain of the From field(s) and the strictest failure decides (RFC 7489 §6.6.1);
  a message with several From fields never passes: each of its domains with a policy counts as failed.
- A DKIM pass names the d= and s= dkimpy verified: tag names are case-sensitive (`D=` is an unknown tag) and
  a repeated tag makes the signature permerror (RFC 6376 §3.2).
- `header()` renders exactly one RFC 8601 field; values taken from the message are sanitised, so a
  hostile signature cannot inject header syntax.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import random
import re
from dataclasses import dataclass
from typing import Literal

import dkim
import dns.exception
import dns.resolver
import publicsuffix2
from dns.rdtypes.ANY.TXT import TXT

from relentad import addrspec, headers, spf
from relentad.dns import DnsTemporaryError, Resolvers, lookup, make_resolver, make_sync_resolver

DkimResult = Literal["pass", "fail", "neutral", "policy", "temperror", "permerror"]
DmarcResult = Literal["pass", "fail", "none", "temperror", "permerror"]
DmarcPolicy = Literal["none", "quarantine", "reject"]
ArcResult = Literal["pass", "fail", "none"]

MAX_DKIM_SIGNATURES = 10
"""Signatures beyond this many are not verified (each costs a DNS query and a public-key operation)."""

MAX_UNFOLDED = 900
MAX_VALUE = 255
"""Longest property value rendered: a hostile d= or MAIL FROM must not push the header past 998 bytes."""

_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`{|}~]+$")
"""RFC 2045 token: what a property value may be without quotes..."""
_PVALUE = re.compile(r"^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]*@[A-Za-z0-9\-_.]+$")
"""...or RFC 8601's pvalue, an address with a dot-atom local part (smtp.mailfrom=user@domain)."""
_WEAKER: dict[DmarcPolicy, DmarcPolicy] = {"reject": "quarantine", "quarantine": "none", "none": "none"}
_POLICY_RANK: dict[DmarcPolicy, int] = {"none": 0, "quarantine": 1, "reject": 2}
_RESULT_RANK: dict[DmarcResult, int] = {"pass": 0, "none": 1, "permerror": 2, "temperror": 3, "fail": 4}

MAX_AUTHOR_DOMAINS = 10
"""Author domains checked per message (each costs up to two DNS queries); real mail names one, rarely two."""


@dataclass(frozen=True)
class DkimSignatureResult:
    """The verdict on one DKIM-Signature field."""

    result: DkimResult
    domain: str
    """The signing domain (d=)."""
    selector: str
    algorithm: str
    signature: str
    """The start of b= (RFC 6008 header.b), telling signatures of one domain apart."""
    reason: str = ""


@dataclass(frozen=True)
class DmarcOutcome:
    """The DMARC verdict for the From domain."""

    result: DmarcResult
    from_domain: str
    policy: DmarcPolicy = "none"
    """The policy the domain owner asks for this From domain (p=, or sp= for a subdomain)."""
    disposition: DmarcPolicy = "none"
    """What to do with this message: the policy when it failed (pct= sampling applied), else none."""
    record_domain: str = ""
    """Where the DMARC record was found (the From domain or its organisational domain)."""
    reason: str = ""
    record: str = ""
    """The DMARC record applied (its text), when one was: what aggregate reports about the message need."""


@dataclass(frozen=True)
class ArcOutcome:
    """The ARC chain validation result (RFC 8617 §5.2); `instances` is the chain length."""

    result: ArcResult
    instances: int = 0
    reason: str = ""


@dataclass(frozen=True)
class AuthResult:
    """Everything the pipeline needs to decide on and to record for one message."""

    authserv_id: str
    spf: spf.SpfOutcome
    dkim: tuple[DkimSignatureResult, ...]
    dmarc: DmarcOutcome
    arc: ArcOutcome

    @property
    def dmarc_failed(self) -> bool:
        return self.dmarc.result == "fail"

    @property
    def dmarc_policy(self) -> DmarcPolicy:
        """The DMARC policy that applies to this message's From domain (none without a record)."""
        return self.dmarc.policy

    @property
    def dkim_pass_domains(self) -> tuple[str, ...]:
        return tuple(s.domain for s in self.dkim if s.result == "pass")

    def header(self, *, fold: bool = False) -> str:
        """One `Authentication-Results:` field (RFC 8601), without the final line ending.

        Unfolded (one line) unless `fold` is set or the line would pass 900 characters (many signatures);
        folding puts each result on its own CRLF-TAB continuation line, well inside RFC 5322's 998.
        """
        parts = [_value(self.authserv_id)]
        parts.append(_resinfo("spf", self.spf.result, self.spf.reason, _spf_property(self.spf)))
        if not self.dkim:
            parts.append("dkim=none")
        for sig in self.dkim:
            props = f"header.d={_value(sig.domain)} header.s={_value(sig.selector)}"
            if sig.algorithm:
                props += f" header.a={_value(sig.algorithm)}"
            if sig.signature:
                props += f" header.b={_value(sig.signature)}"
            parts.append(_resinfo("dkim", sig.result, sig.reason if sig.result != "pass" else "", props))
        d = self.dmarc
        comment = f"p={d.policy} dis={d.disposition}" if d.result in ("pass", "fail") else d.reason
        from_prop = f"header.from={_value(d.from_domain)}" if d.from_domain else ""
        parts.append(_resinfo("dmarc", d.result, comment, from_prop))
        parts.append(_resinfo("arc", self.arc.result, self.arc.reason if self.arc.result == "fail" else "", ""))
        line = "Authentication-Results: " + "; ".join(parts)
        if fold or len(line) > MAX_UNFOLDED:
            return "Authentication-Results: " + ";\r\n\t".join(parts)
        return line


def _value(text: str) -> str:
    """A header property value: a token when possible, else a quoted string without control characters."""
    clean = "".join(ch for ch in text if ch.isascii() and ch.isprintable())[:MAX_VALUE]
    if clean and (_TOKEN.match(clean) or _PVALUE.match(clean)):
        return clean
    return '"' + clean.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _spf_property(outcome: spf.SpfOutcome) -> str:
    """smtp.mailfrom or smtp.helo, domains as A-labels (spf converts them). A local part that is not ASCII is left
    out (RFC 8601 §2.3 allows "@domain"), a domain that is not ASCII the whole property: dropping its characters
    would name another domain."""
    if not outcome.domain or not outcome.domain.isascii():
        return ""
    if outcome.identity == "helo":
        return f"smtp.helo={_value(outcome.domain)}"
    sender = outcome.sender if outcome.sender.isascii() else "@" + outcome.domain
    return f"smtp.mailfrom={_value(sender)}"


def _resinfo(method: str, result: str, comment: str, props: str) -> str:
    text = f"{method}={result}"
    if comment:
        safe = "".join(ch for ch in comment if ch.isascii() and ch.isprintable() and ch not in "()\\")[:120]
        text += f" ({safe})"
    return f"{text} {props}" if props else text


# -- header fields -------------------------------------------------------------------------------------


def _header_fields(raw: bytes) -> tuple[list[bytes], int]:
    """The header fields of `raw` (each with its folded lines and line endings) and where the body starts."""
    fields: list[bytes] = []
    pos = 0
    while pos < len(raw):
        end = raw.find(b"\n", pos)
        end = len(raw) if end < 0 else end + 1
        line = raw[pos:end]
        if line in (b"\r\n", b"\n"):
            return fields, pos
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
        pos = end
    return fields, pos


def _field_name(field: bytes) -> bytes:
    return field.split(b":", 1)[0].strip().lower() if b":" in field else b""


def _field_value(field: bytes) -> str:
    value = field.split(b":", 1)[1] if b":" in field else b""
    return re.sub(r"\r?\n", "", value.decode("utf-8", "replace"))


def _skip_comment(text: str) -> str:
    """`text` after the (possibly nested) comment it starts with."""
    depth = 0
    for pos, ch in enumerate(text):
        depth += (ch == "(") - (ch == ")")
        if depth == 0:
            return text[pos + 1 :]
    return ""


def _authserv_id(value: str) -> str:
    """The authserv-id of an Authentication-Results value: its first token, after any comments.

    A quoted-string is unescaped (`"mx.example\\.test"` is mx.example.test), so quoting cannot hide a forgery.
    """
    text = value.lstrip()
    while text.startswith("("):
        text = _skip_comment(text).lstrip()
    match = re.match(r'"((?:[^"\\]|\\.)*)"|([^\s;()]+)', text)
    if not match:
        return ""
    if match.group(1) is not None:
        return re.sub(r"\\(.)", r"\1", match.group(1)).lower()
    return match.group(2).lower()


def strip_forged_results(raw: bytes, authserv_id: str) -> bytes:
    """`raw` without Authentication-Results fields claiming to come from us (RFC 8601 §5).

    Only the header is touched; other servers' results and ARC-Authentication-Results stay.
    """
    ours = authserv_id.lower()
    return headers.without_fields(
        raw, lambda name, field: name == "authentication-results" and _authserv_id(_field_value(field)) == ours
    )


# -- DKIM and ARC (dkimpy, in a worker thread) ---------------------------------------------------------


class _KeyLookup:
    """dkimpy's dnsfunc over our resolver, remembering which key names failed how."""

    def __init__(self, resolver: dns.resolver.Resolver) -> None:
        self.resolver = resolver
        self.failures: dict[str, str] = {}

    def __call__(self, name: bytes, timeout: float = 5) -> bytes | None:
        text = name.decode("ascii", "replace").rstrip(".")
        try:
            answer = self.resolver.resolve(text, "TXT", search=False, raise_on_no_answer=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            self.failures[text.lower()] = "no key"
            return None
        except dns.exception.DNSException as exc:
            self.failures[text.lower()] = "temperror"
            raise dkim.DnsTimeoutError(str(exc)) from exc
        for record in answer:
            if isinstance(record, TXT):
                return b"".join(record.strings)
        self.failures[text.lower()] = "no key"
        return None


def _tags(value: str) -> dict[str, str]:
    """A DMARC record's tag=value list, names lower-cased, the first of a repeated tag kept."""
    tags: dict[str, str] = {}
    for part in value.split(";"):
        name, sep, val = part.partition("=")
        if sep:
            tags.setdefault(name.strip().lower(), re.sub(r"\s+", "", val))
    return tags


def _signature_tags(value: str) -> dict[str, str] | None:
    """A DKIM-Signature's tags as dkimpy reads them: names case-sensitive (RFC 6376 §3.2, so `D=` is not `d=`);
    None when a name repeats, which makes the whole tag-list, and so the signature, invalid."""
    tags: dict[str, str] = {}
    for part in value.split(";"):
        name, sep, val = part.partition("=")
        name = name.strip()
        if sep and name in tags:
            return None
        if sep:
            tags[name] = re.sub(r"\s+", "", val)
    return tags


def _signed_identity(verifier: dkim.DKIM) -> tuple[str, str]:
    """The d= and s= dkimpy just verified: a pass is reported for exactly the domain whose key checked it."""
    fields = verifier.signature_fields
    return fields[b"d"].decode("ascii", "replace").lower(), fields[b"s"].decode("ascii", "replace")


def _verify_one(verifier: dkim.DKIM, index: int, dnsfunc: _KeyLookup, key_name: str) -> tuple[DkimResult, str]:
    """One signature's result and reason, telling a bad signature from a missing key or a DNS failure."""
    try:
        ok = verifier.verify(idx=index, dnsfunc=dnsfunc)
    except dkim.ValidationError as exc:
        reason = str(exc)
        return "fail", "body hash mismatch" if "body hash mismatch" in reason else reason
    except dkim.DKIMException as exc:
        return "permerror", str(exc)
    except Exception as exc:  # dkimpy raises assorted errors on mangled input
        return "permerror", f"{type(exc).__name__}: {exc}"
    if ok:
        return "pass", ""
    failure = dnsfunc.failures.get(key_name)
    if failure == "temperror":
        return "temperror", "key lookup failed"
    if failure == "no key":
        return "permerror", "no key"
    return "fail", "signature did not verify"


def _verify_dkim(raw: bytes, dnsfunc: _KeyLookup) -> tuple[DkimSignatureResult, ...]:
    """Verify every DKIM-Signature (up to MAX_DKIM_SIGNATURES), top first."""
    fields, _ = _header_fields(raw)
    signatures = [_field_value(f) for f in fields if _field_name(f) == b"dkim-signature"]
    results: list[DkimSignatureResult] = []
    verifier: dkim.DKIM | None = None
    unparsable = ""
    if signatures:
        try:
            verifier = dkim.DKIM(raw, timeout=dnsfunc.resolver.lifetime)
        except Exception as exc:  # dkimpy refuses some header syntax outright
            unparsable = f"unparsable message: {exc}"
    for index, value in enumerate(signatures[:MAX_DKIM_SIGNATURES]):
        parsed = _signature_tags(value)
        tags = parsed or {}
        domain, selector = tags.get("d", "").lower(), tags.get("s", "")
        key_name = f"{selector}._domainkey.{domain}".lower()
        result: DkimResult
        if verifier is None:
            result, reason = "permerror", unparsable
        elif parsed is None:
            result, reason = "permerror", "duplicate tag"
        else:
            result, reason = _verify_one(verifier, index, dnsfunc, key_name)
            if result == "pass":
                domain, selector = _signed_identity(verifier)
        results.append(DkimSignatureResult(result, domain, selector, tags.get("a", ""), tags.get("b", "")[:8], reason))
    return tuple(results)


def _verify_arc(raw: bytes, dnsfunc: _KeyLookup) -> ArcOutcome:
    try:
        cv, details, comment = dkim.arc_verify(raw, dnsfunc=dnsfunc)
    except Exception as exc:  # a broken chain must not break delivery
        return ArcOutcome("fail", 0, f"{type(exc).__name__}: {exc}")
    instances = len(details)
    if cv == dkim.CV_None and not instances:
        return ArcOutcome("none")
    if cv == dkim.CV_Pass:
        return ArcOutcome("pass", instances)
    if "temperror" in dnsfunc.failures.values():
        comment = f"key lookup failed; {comment}"
    return ArcOutcome("fail", instances, str(comment))


def _has_signatures(fields: list[bytes]) -> bool:
    """True when the header has a DKIM-Signature or an ARC set to verify."""
    return any(_field_name(f) in (b"dkim-signature", b"arc-seal", b"arc-message-signature") for f in fields)


def _verify_signatures(
    raw: bytes, resolver: dns.resolver.Resolver
) -> tuple[tuple[DkimSignatureResult, ...], ArcOutcome]:
    dkim_results = _verify_dkim(raw, _KeyLookup(resolver))
    return dkim_results, _verify_arc(raw, _KeyLookup(resolver))


# -- DMARC ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def organizational_domain(domain: str) -> str:
    """RFC 7489 §3.2: the public suffix plus one label (a domain under an unlisted TLD counts too)."""
    name = domain.lower().rstrip(".")
    suffix = publicsuffix2.get_tld(name, wildcard=True) or name.rsplit(".", 1)[-1]
    labels = name.split(".")
    keep = suffix.count(".") + 2
    return ".".join(labels[-keep:]) if len(labels) >= keep else name


def load_public_suffixes() -> None:
    """Build the public suffix list now (0.1–0.2 s), so the first DMARC check or company lookup after start-up does
    not stall the event loop or the store's writer; the daemon runs this in a worker thread while it starts."""
    publicsuffix2.get_tld("relentad.invalid", wildcard=True)


def aligned(domain: str, from_domain: str, mode: str) -> bool:
    """Identifier alignment (RFC 7489 §3.1): equal in strict mode, same organisational domain in relaxed."""
    a, b = domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    if mode == "s":
        return a == b
    return organizational_domain(a) == organizational_domain(b)


@dataclass(frozen=True)
class Authors:
    """What the RFC5322.From field(s) name for DMARC (RFC 7489 §6.6.1): every author domain, A-labels, each once."""

    domains: tuple[str, ...]
    fields: int
    """How many From fields there are: RFC 5322 allows exactly one."""
    unusable: bool = False
    """Some address (or a whole field) gave no usable domain."""


def authors(raw: bytes) -> Authors:
    """The author domains of `raw`."""
    return _authors(_header_fields(raw)[0])


def from_domain(raw: bytes) -> str | None:
    """The From domain of a message with one From field naming one domain; None otherwise."""
    found = authors(raw)
    clean = found.fields == 1 and not found.unusable and len(found.domains) == 1
    return found.domains[0] if clean else None


# A From value of one plain address, bare or in angle brackets after a simple display name: most mail.
_ADDR = r'[^"<>@,;:()\\\s]+@[^"<>@,;:()\\\s]+'
_SIMPLE_FROM = re.compile(rf'\s*(?:[^"<>@,;:()\\]*<({_ADDR})>|({_ADDR}))\s*')


def _authors(fields: list[bytes]) -> Authors:
    values = [_field_value(f) for f in fields if _field_name(f) == b"from"]
    domains: list[str] = []
    unusable = False
    for value in values:
        simple = _SIMPLE_FROM.fullmatch(value)
        if simple is not None:  # email.utils.getaddresses gives the same for these, at a tenth of the cost
            addresses = [simple[1] or simple[2]]
        else:
            addresses = [a for _, a in email.utils.getaddresses([value]) if a]
        unusable |= not addresses
        for address in addresses:
            domain = _author_domain(address)
            unusable |= domain is None
            if domain is not None and domain not in domains:
                domains.append(domain)
    return Authors(tuple(domains), len(values), unusable)


def _author_domain(address: str) -> str | None:
    domain = addrspec.a_label(address.rpartition("@")[2].strip().lower().rstrip("."))
    return domain if domain is not None and "." in domain else None


async def _dmarc_records(resolver: dns.asyncresolver.Resolver, domain: str) -> list[str]:
    """The DMARC records at `domain`: its TXT records starting with v=DMARC1 (RFC 7489 §6.6.3 steps 1-2)."""
    records = await lookup(resolver, f"_dmarc.{domain}", "TXT")
    texts = [b"".join(r.strings).decode("utf-8", "replace") for r in records if isinstance(r, TXT)]
    return [t for t in texts if re.match(r"v\s*=\s*DMARC1\s*(;|$)", t)]


async def _discover(resolver: dns.asyncresolver.Resolver, domain: str) -> tuple[list[str], str]:
    """§6.6.3: the records at the From domain and, only when there are none, at its organisational domain.

    Several records at the From domain end discovery there: they never fall through to the organisational one.
    """
    found = await _dmarc_records(resolver, domain)
    org = organizational_domain(domain)
    if found or org == domain:
        return found, domain
    return await _dmarc_records(resolver, org), org


def dmarc_tags(record: str) -> dict[str, str]:
    """A DMARC record's tags, values in lower case (a copy: the caller may change it)."""
    return dict(_dmarc_tags(record))


@functools.lru_cache(maxsize=1024)
def _dmarc_tags(record: str) -> dict[str, str]:
    """A DMARC record's tags, lower-cased; cached by text (the same few records arrive all day). Read-only."""
    return {k: v.lower() for k, v in _tags(record).items()}


def _policy(value: str | None) -> DmarcPolicy | None:
    return value if value in ("none", "quarantine", "reject") else None  # type: ignore[return-value]


_DMARC_URI = re.compile(r"[a-z][a-z0-9+.\-]*:[^\s,!]+(?:![0-9]+[kmgt]?)?")


def _record_policy(record: dict[str, str], *, subdomain: bool) -> DmarcPolicy | None:
    """The policy a record asks for (sp= for a subdomain found through its organisational domain).

    §6.6.3 step 6: a missing or invalid p=, or an invalid sp=, counts as p=none when rua= names a valid URI;
    otherwise DMARC is not applied (None). Never a silent fallback from a broken sp= to p=.
    """
    p, sp = _policy(record.get("p")), _policy(record.get("sp"))
    if p is None or ("sp" in record and sp is None):
        rua = record.get("rua", "").split(",")
        return "none" if any(_DMARC_URI.fullmatch(uri) for uri in rua) else None
    return sp if subdomain and sp is not None else p


async def check_dmarc(
    resolver: dns.asyncresolver.Resolver,
    found: Authors,
    spf_outcome: spf.SpfOutcome,
    dkim_results: tuple[DkimSignatureResult, ...],
) -> DmarcOutcome:
    """RFC 7489 §6.6.1: every author domain is checked and the strictest failure decides for the message.

    Several From fields (RFC 5322 allows one) or absurdly many author domains cannot pass: each domain with a
    policy counts as failed. Addresses without a usable domain make the result permerror unless a domain failed.
    """
    if not found.domains:
        return DmarcOutcome("permerror", "", reason="no From field" if not found.fields else "no usable From domain")
    domains = found.domains[:MAX_AUTHOR_DOMAINS]
    problems = [
        *(["several From fields"] if found.fields > 1 else []),
        *([f"more than {MAX_AUTHOR_DOMAINS} From domains"] if len(found.domains) > MAX_AUTHOR_DOMAINS else []),
    ]
    forced = "; ".join(problems)
    checks = (_check_domain(resolver, d, spf_outcome, dkim_results, forced=forced) for d in domains)
    outcomes = list(await asyncio.gather(*checks))
    if found.unusable:
        problems.append("unusable From address")
    outcomes += [DmarcOutcome("permerror", domains[0], reason=problem) for problem in problems]
    return max(outcomes, key=_severity)


def _severity(outcome: DmarcOutcome) -> tuple[int, int, int]:
    """Failures first, the strictest disposition (then policy) among them; then temperror, permerror, none, pass."""
    return _RESULT_RANK[outcome.result], _POLICY_RANK[outcome.disposition], _POLICY_RANK[outcome.policy]


async def _check_domain(
    resolver: dns.asyncresolver.Resolver,
    domain: str,
    spf_outcome: spf.SpfOutcome,
    dkim_results: tuple[DkimSignatureResult, ...],
    *,
    forced: str = "",
) -> DmarcOutcome:
    """RFC 7489 §6.6: discover the policy for one author domain and check SPF/DKIM alignment.

    With a `forced` reason the domain fails whatever aligned (a message that must not pass its policy).
    """
    try:
        found, record_domain = await _discover(resolver, domain)
    except DnsTemporaryError:
        return DmarcOutcome("temperror", domain, reason="DMARC record lookup failed")
    if not found:
        return DmarcOutcome("none", domain, reason="no DMARC record")
    if len(found) > 1:  # §6.6.3 step 5: discovery ends and DMARC is not applied
        return DmarcOutcome("permerror", domain, record_domain=record_domain, reason="several DMARC records")
    record = _dmarc_tags(found[0])
    policy = _record_policy(record, subdomain=record_domain != domain)
    if policy is None:
        return DmarcOutcome("permerror", domain, record_domain=record_domain, reason="invalid p= or sp=, no rua=")
    spf_result = spf_outcome.result if aligned(spf_outcome.domain, domain, record.get("aspf", "r")) else "none"
    dkim_aligned = [s.result for s in dkim_results if aligned(s.domain, domain, record.get("adkim", "r"))]
    if not forced and (spf_result == "pass" or "pass" in dkim_aligned):
        return DmarcOutcome("pass", domain, policy, "none", record_domain, record=found[0])
    # Only identifiers that could have aligned count: an attacker's own timing-out domain must not lift the policy.
    if not forced and (spf_result == "temperror" or "temperror" in dkim_aligned):
        return DmarcOutcome("temperror", domain, policy, "none", record_domain, "SPF or DKIM temperror", found[0])
    disposition = policy
    pct = record.get("pct", "100")
    percent = int(pct) if pct.isdigit() else 100
    if percent < 100 and random.randrange(100) >= percent:  # §6.6.4: unsampled mail gets the next policy down
        disposition = _WEAKER[policy]
    reason = forced or "no aligned SPF or DKIM pass"
    return DmarcOutcome("fail", domain, policy, disposition, record_domain, reason, found[0])


# -- the whole check -----------------------------------------------------------------------------------


async def authenticate(
    raw: bytes,
    *,
    peer_ip: str,
    helo: str,
    mail_from: str,
    authserv_id: str,
    nameservers: list[str] | None = None,
    timeout: float = 5.0,  # noqa: ASYNC109 - the per-query DNS lifetime, not a deadline for the call
    resolvers: Resolvers | None = None,
) -> AuthResult:
    """SPF, DKIM, ARC and DMARC for one message received from `peer_ip`.

    The daemon passes its long-lived, cached `resolvers`; without them, `nameservers` ("host:port" strings,
    the `[dns]` config; empty = the system resolver) make uncached ones. `timeout` is the per-query DNS
    lifetime. SPF runs on the event loop while dkimpy works in a thread.
    """
    resolver: dns.asyncresolver.Resolver
    if resolvers is not None:
        resolver, sync_resolver = resolvers.aio, resolvers.sync
    else:
        resolver = make_resolver(nameservers or [], timeout)
        sync_resolver = make_sync_resolver(nameservers or [], timeout)
    spf_task = asyncio.create_task(_spf_with_deadline(resolver, peer_ip, helo, mail_from, timeout * 4))
    fields, _ = _header_fields(raw)
    if _has_signatures(fields):
        signatures = await asyncio.to_thread(_verify_signatures, raw, sync_resolver)
    else:  # nothing for dkimpy to do: skip the worker thread hop (most of the cost for unsigned mail)
        signatures = ((), ArcOutcome("none"))
    spf_outcome = await spf_task
    dkim_results, arc = signatures
    dmarc = await check_dmarc(resolver, _authors(fields), spf_outcome, dkim_results)
    return AuthResult(authserv_id, spf_outcome, dkim_results, dmarc, arc)


async def _spf_with_deadline(
    resolver: dns.asyncresolver.Resolver, ip: str, helo: str, mail_from: str, seconds: float
) -> spf.SpfOutcome:
    """SPF may take up to ~20 sequential queries; bound the whole evaluation, not just each query."""
    try:
        async with asyncio.timeout(seconds):
            return await spf.check(resolver, ip=ip, mail_from=mail_from, helo=helo)
    except TimeoutError:
        identity, domain, sender = spf.identity(mail_from, helo)
        return spf.SpfOutcome("temperror", identity, domain, sender, "timeout")
