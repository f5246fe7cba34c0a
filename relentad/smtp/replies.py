"""SMTP replies: the ones relentad sends, and enhanced status codes for every reply (RFC 2034, RFC 3463).

Having advertised ENHANCEDSTATUSCODES we must put a status code in every 2xx/4xx/5xx reply except the greeting
and the EHLO/HELO response. Our own replies carry one; aiosmtpd's built-in replies ("500 Error: bad syntax",
"503 Error: need MAIL command"...) get one from :func:`with_enhanced_code`, the single place that knows the
mapping.
"""

from __future__ import annotations

import re

_HAS_ENHANCED = re.compile(r"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}(?:\s|$)")
_CODE = re.compile(r"^(\d{3})([ -])(.*)$", re.DOTALL)

# Basic code → the enhanced code that fits aiosmtpd's built-in replies with that code.
_DEFAULT_ENHANCED = {
    "211": "2.0.0",
    "214": "2.0.0",
    "221": "2.0.0",
    "235": "2.7.0",
    "250": "2.0.0",
    "251": "2.1.5",
    "252": "2.5.0",
    "421": "4.3.0",
    "450": "4.2.0",
    "451": "4.3.0",
    "452": "4.3.1",
    "454": "4.7.0",
    "500": "5.5.2",
    "501": "5.5.4",
    "502": "5.5.1",
    "503": "5.5.1",
    "504": "5.5.4",
    "530": "5.7.0",
    "534": "5.7.9",
    "535": "5.7.8",
    "538": "5.7.11",
    "550": "5.0.0",
    "551": "5.1.6",
    "552": "5.3.4",
    "553": "5.1.3",
    "554": "5.0.0",
    "555": "5.5.4",
}
_WITHOUT_ENHANCED = {"220", "334", "354"}


def with_enhanced_code(reply: str) -> str:
    """``reply`` with an enhanced status code inserted after the basic code when it has none."""
    if _HAS_ENHANCED.match(reply):
        return reply
    match = _CODE.match(reply)
    if match is None or match.group(1) in _WITHOUT_ENHANCED:
        return reply
    enhanced = _DEFAULT_ENHANCED.get(match.group(1))
    if enhanced is None:
        return reply
    return f"{match.group(1)}{match.group(2)}{enhanced} {match.group(3)}"


TOO_MANY_UNKNOWN = "421 4.7.0 Too many unrecognized commands, closing connection"
# aiosmtpd's replies that close the connection without a 421 (RFC 5321 §3.8: a server closing says 421, so that
# the client stops sending instead of writing into a closed socket)
CLOSING_REWRITES = {"502 5.5.1 Too many unrecognized commands, goodbye.": TOO_MANY_UNKNOWN}

OK = "250 2.0.0 OK"
SENDER_OK = "250 2.1.0 Sender OK"
RECIPIENT_OK = "250 2.1.5 Recipient OK"
UNKNOWN_USER = "550 5.1.1 No such user here"
BAD_SRS = "550 5.1.1 Invalid or expired SRS address"  # a bounce to a forward we never sent, or long ago
SRS_UNVERIFIED = "550 5.7.1 Bounce not relayed: the original sender was not verified"  # it would be backscatter
SRS_NOT_BOUNCE = "550 5.7.1 An SRS address takes only bounces (null sender)"  # else it relays anyone's mail
RELAY_DENIED = "554 5.7.1 Relay access denied"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
TOO_MANY_CONNECTIONS = "421 4.7.0 Too many connections from your address, try again later"
SERVER_BUSY = "421 4.3.2 Too many connections, try again later"
SHUTTING_DOWN = "421 4.3.2 Service shutting down, try again later"
STORE_FAILED = "452 4.3.1 Insufficient system storage, try again later"
LOCAL_ERROR = "451 4.3.0 Local error in processing, try again later"
BAD_SENDER = "553 5.1.7 Bad sender address syntax"
BAD_RECIPIENT = "553 5.1.3 Bad recipient address syntax"
TLS_ACTIVE = "554 5.5.1 TLS already active"
TLS_UNAVAILABLE = "454 4.7.0 TLS not available"  # 465 without a certificate (logged, never sent: 465 speaks TLS first)
AUTH_LINE_TOO_LONG = "500 5.5.6 Authentication Exchange line is too long"  # RFC 4954 §4
NO_AUTH_HERE = "502 5.5.1 AUTH is not available on this port"
MESSAGE_TOO_BIG = "552 5.3.4 Message size exceeds fixed limit"
MAILBOX_FULL = "452 4.2.2 Mailbox full, try again later"
BLOCKLISTED = "550 5.7.1 Service unavailable; client"  # the start of :func:`blocklisted`'s replies
GREYLISTED = "451 4.7.1 Greylisted:"  # the start of :func:`greylisted`'s
ATTACHMENT = "554 5.7.0 Attachment refused:"  # the start of attachments.Finding.refusal's replies


def blocklisted(ip: str, listing: str) -> str:
    """RCPT refused because the client is on a DNS blocklist (``[dnsbl] action = "reject"``); ``listing`` is
    :meth:`dnsbl.Listing.describe`, so the sender learns which list to ask for removal."""
    return f"{BLOCKLISTED} [{ip}] blocked using {listing}"


def greylisted(wait: float) -> str:
    """RCPT deferred by greylisting (RFC 6647 §6: a 4xx the sender's retry passes; 4.7.1, "delivery not authorized"
    for now), saying when to come back."""
    return f"{GREYLISTED} please try again in {max(1, round(wait))} seconds"
