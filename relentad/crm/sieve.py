"""Filing rules in the Sieve language (RFC 5228), the subset relentad evaluates: parse with sievelib, compile here.

Supported (anything else is refused when the rule is added, with a one-line reason):
- tests: ``address`` / ``header`` / ``envelope`` (RFC 5228 §5.1, §5.7, §5.4) with ``:is`` ``:contains``
  ``:matches`` and ``:all`` ``:localpart`` ``:domain``, comparators ``i;ascii-casemap`` (default) and
  ``i;octet``; ``exists``, ``size :over/:under``, ``allof``, ``anyof``, ``not``, ``true``, ``false``;
- actions: ``fileinto`` (RFC 5228 §4.1; the folder is created when missing; ``:flags`` of RFC 5232), ``keep``,
  ``stop``, and RFC 5232 imap4flags ``addflag`` / ``setflag`` / ``removeflag``; relentad's own
  ``tagcontact <tags>`` (``require "vnd.relentad.tagcontact"``, RFC 5228 §6.1 vendor extension): tag the
  message's contact; ``vacation`` (RFC 5230, with ``:seconds`` of RFC 6131): an automatic reply, see
  :mod:`.vacation` for when it is (not) sent; ``redirect`` (RFC 5228 §4.2, with ``:copy`` of RFC 3894): forward
  the message to an address elsewhere (relentad/forwarding.py: limits, SRS, what is never forwarded);
- control: ``require``, ``if`` / ``elsif`` / ``else``;
- extensions: ``body`` (RFC 5173), ``subaddress`` (RFC 5233, ``:user`` / ``:detail``), ``relational`` (RFC 5231,
  ``:count`` / ``:value``) with ``i;ascii-numeric`` (RFC 4790), ``variables`` (RFC 5229: ``set``, ``string``,
  ``${…}`` in keys, folders and flags), ``regex`` (:mod:`.sieveregex`, linear time), ``date`` / ``index``
  (RFC 5260), ``environment`` (RFC 5183), ``spamtest`` / ``spamtestplus`` (RFC 5235), ``reject`` / ``ereject``
  (RFC 5429: refused at SMTP time or not at all, see ``Pipeline.reject``).

``discard`` is refused on purpose: relentad never drops mail on a rule. An error names the line of the command
that caused it (sievelib's commands are noted with their offset, see :func:`_located`).

Invariants: compiling is pure (bytes → :class:`Script`), evaluation (:mod:`relentad.crm.rules`) never touches
sievelib; a compiled script is immutable and may be cached and shared.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

from sievelib import commands as sieve_commands
from sievelib import parser as sieve_parser
from sievelib.parser import Parser

from .. import addrspec
from ..errors import InvalidInput
from ..store import flags as flagmod
from ..store.mailboxes import stored_name
from . import editheader, userscripts
from .contacts import check_tag
from .sieveregex import compile_regex

MATCH_TYPES = (":is", ":contains", ":matches", ":regex", ":count", ":value")
ADDRESS_PARTS = (":all", ":localpart", ":domain", ":user", ":detail")
COMPARATORS = ("i;ascii-casemap", "i;octet", "i;ascii-numeric")
RELATIONS = ("gt", "ge", "lt", "le", "eq", "ne")
DATE_PARTS = (
    "year", "month", "day", "date", "julian", "hour", "minute", "second", "time", "iso8601", "std11", "zone", "weekday"
)  # fmt: skip
ENVIRONMENT = ("domain", "host", "location", "name", "phase", "version")
_ZONE = re.compile(r"[+-]([01][0-9]|2[0-3])[0-5][0-9]")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*|[0-9]+)\}")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
_SIZE = re.compile(r"(\d+)([KMG]?)", re.IGNORECASE)
_MULTIPLIERS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
TAG_EXTENSION = "vnd.relentad.tagcontact"
# RFC 5228 §3.2: a script requiring anything else must fail. "mailbox" (RFC 5490) for ``fileinto :create``, which is
# what fileinto always does here; its mailboxexists test is refused like any unknown test. The ONE list of what
# ``require`` accepts: anything announcing the engine's capabilities (ManageSieve's SIEVE) derives from it.
CAPABILITIES = frozenset(
    {
        "fileinto",
        "envelope",
        "imap4flags",
        "mailbox",
        "comparator-i;octet",
        "comparator-i;ascii-casemap",
        "vacation",
        "vacation-seconds",
        "copy",
        "body",
        "subaddress",
        "relational",
        "comparator-i;ascii-numeric",
        "variables",
        "regex",
        "date",
        "index",
        "environment",
        "spamtest",
        "spamtestplus",
        "reject",
        "ereject",
        "editheader",
        "include",
        TAG_EXTENSION,
    }
)
DAY = 86_400
# vacation's response period (RFC 5230 §4.1, RFC 6131 §2): :days defaults to 7 and is clamped to 1-90 days,
# :seconds to 1 hour-90 days (":seconds 0", always reply, is not honoured: a loop with another responder that
# ignores Auto-Submitted would then be bounded only by the hourly cap)
VACATION_DEFAULT = 7 * DAY
VACATION_MIN_DAYS = 1
VACATION_MIN_SECONDS = 3600
VACATION_MAX = 90 * DAY
MAX_REASON = 64 << 10  # bytes of a vacation reason (a reply is a small message)
MAX_NESTING = 32  # blocks and tests inside each other (Pigeonhole's limits); evaluation recurses that deep
MAX_REDIRECTS = 4
"""``redirect`` actions done per message and account (RFC 5228 §4.2 asks for a limit; more are an error and the
message is kept); ManageSieve's ``MAXREDIRECTS`` capability announces this number."""
MAX_SCRIPT = 1 << 20  # bytes (Pigeonhole's sieve_max_script_size): every delivery reads the account's scripts
MAX_VARIABLES = 255
"""Variables one script may set (Pigeonhole's sieve_variables_max_scope_size); more is refused at upload."""
MAX_VARIABLE_SIZE = 4096
"""Characters a variable holds (Pigeonhole's sieve_variables_max_variable_size); a longer value is cut."""
MAX_MATCH_VARIABLES = 10
"""``${0}``..``${9}``: what ``:matches`` captures (Pigeonhole keeps the same ten)."""
MAX_REGEX_STATES = 100_000
"""NFA states of all of a script's ``:regex`` patterns (each has at most 2000): checking them costs some 6 µs a
state, in ManageSieve's worker threads, so a 1 MiB script of large patterns took half a minute of CPU per upload."""
MAX_BODY = 1 << 20
"""Characters of a message's body the ``body`` test reads (the rest is not searched)."""


@dataclass(frozen=True, slots=True)
class Match:
    """A string comparison: match type, key list, whether case matters (``octet``), the ``i;ascii-numeric``
    comparator, the relation of ``:count`` / ``:value`` and whether keys hold ``${…}`` to expand at run time."""

    kind: str  # :is, :contains, :matches, :regex, :count, :value
    keys: tuple[str, ...]
    octet: bool = False
    numeric: bool = False
    relation: str = ""
    expand: bool = False


@dataclass(frozen=True, slots=True)
class AddressTest:
    headers: tuple[str, ...]  # lower case
    match: Match
    part: str = ":all"
    envelope: bool = False  # the envelope test: "from" / "to" are the SMTP envelope addresses
    index: int = 0  # RFC 5260 §6 :index (1-based; 0: every field), counted from the end with :last
    last: bool = False


@dataclass(frozen=True, slots=True)
class HeaderTest:
    headers: tuple[str, ...]
    match: Match
    index: int = 0
    last: bool = False


@dataclass(frozen=True, slots=True)
class BodyTest:
    """RFC 5173: ``transform`` is raw, text or content (then ``types`` lists the content types)."""

    match: Match
    transform: str = "text"
    types: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StringTest:
    """RFC 5229 §5 ``string``: the sources are expanded, then matched."""

    sources: tuple[str, ...]
    match: Match


@dataclass(frozen=True, slots=True)
class DateTest:
    """RFC 5260 ``date`` (a header field's date) or ``currentdate`` (``header`` None)."""

    header: str | None
    part: str
    match: Match
    zone: str | None = None  # "+hhmm"; None: the server's zone (or the field's own with ``original``)
    original: bool = False
    index: int = 0
    last: bool = False


@dataclass(frozen=True, slots=True)
class HasflagTest:
    """RFC 5232 §4 ``hasflag``: the flags set so far (the internal variable) against the keys."""

    match: Match


@dataclass(frozen=True, slots=True)
class EnvironmentTest:
    """RFC 5183 ``environment``."""

    name: str
    match: Match


@dataclass(frozen=True, slots=True)
class SpamTest:
    """RFC 5235 ``spamtest``: the score as 0 (not tested) or 1-10, or as 0-100 with ``:percent``."""

    match: Match
    percent: bool = False


@dataclass(frozen=True, slots=True)
class ExistsTest:
    headers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SizeTest:
    over: bool
    limit: int


@dataclass(frozen=True, slots=True)
class Combined:
    """allof (``all_``) / anyof of tests."""

    all_: bool
    tests: tuple[Test, ...]


@dataclass(frozen=True, slots=True)
class NotTest:
    test: Test


@dataclass(frozen=True, slots=True)
class Const:
    value: bool


Test = (
    AddressTest
    | HeaderTest
    | ExistsTest
    | SizeTest
    | Combined
    | NotTest
    | Const
    | BodyTest
    | StringTest
    | DateTest
    | EnvironmentTest
    | SpamTest
    | HasflagTest
)


@dataclass(frozen=True, slots=True)
class Vacation:
    """The arguments of a ``vacation`` action, checked and with the period clamped (seconds)."""

    reason: str
    period: int = VACATION_DEFAULT
    subject: str | None = None
    from_: str | None = None  # as written: "Name <addr>" or addr
    addresses: tuple[str, ...] = ()  # normalised
    mime: bool = False
    handle: str | None = None


@dataclass(frozen=True, slots=True)
class Action:
    """fileinto (``argument`` = folder), keep, stop, addflag / setflag / removeflag (``flags``), tagcontact
    (``tags``), vacation (``vacation``), redirect (``argument`` = the address, ``copy``: keep the message too),
    set (``argument`` = the variable, ``value``, ``modifiers`` in the order they apply), addheader / deleteheader
    (``argument`` = the field name, ``value``, ``last``, ``index``, ``match``); ``expand``: the folder, flags or
    field name and value hold ``${…}`` to expand at run time."""

    name: str
    argument: str = ""
    flags: tuple[str, ...] | None = None  # fileinto/keep :flags
    tags: tuple[str, ...] = ()
    vacation: Vacation | None = None
    copy: bool = False
    value: str = ""
    modifiers: tuple[str, ...] = ()
    expand: bool = False
    last: bool = False  # addheader :last; deleteheader :index … :last
    index: int = 0  # deleteheader :index (1-based; 0: every field of the name)
    match: Match | None = None  # deleteheader's value patterns (None: every field of the name)


@dataclass(frozen=True, slots=True)
class If:
    """if / elsif … / else: the first branch whose test holds runs (``None`` is else)."""

    branches: tuple[tuple[Test | None, tuple[Command, ...]], ...]


@dataclass(frozen=True, slots=True)
class Include:
    """RFC 6609 ``include [:once] [:optional] "name"``: run the account's own script ``name`` (a user script, as
    ManageSieve lists them) here."""

    name: str
    once: bool = False
    optional: bool = False


Command = Action | If | Include


@dataclass(frozen=True, slots=True)
class Script:
    commands: tuple[Command, ...]
    variables: bool = False  # it requires "variables": a :matches records match variables

    def actions(self, name: str) -> list[Action]:
        """Every action called ``name``, in every branch (for validation)."""
        out: list[Action] = []

        def walk(commands: tuple[Command, ...]) -> None:
            for command in commands:
                if isinstance(command, If):
                    for _test, block in command.branches:
                        walk(block)
                elif isinstance(command, Action) and command.name == name:
                    out.append(command)

        walk(self.commands)
        return out

    def folders(self) -> list[str]:
        """Every folder a fileinto names (for validation)."""
        return [action.argument for action in self.actions("fileinto")]


def quoted(text: str) -> str:
    """``text`` as a Sieve quoted string (RFC 5228 §2.4.2): backslash and double quote escaped, line breaks as CRLF;
    for scripts relentad writes itself (the account page's automatic reply and filters)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\r\n", "\n").replace("\n", "\r\n") + '"'


def unquote(token: str) -> str:
    """A sievelib string token as its value: quoted strings unescaped, ``text:`` multi-line strings unstuffed."""
    if token.startswith('"'):
        return _QUOTED_PAIR.sub(r"\1", token[1:-1] if token.endswith('"') and len(token) > 1 else token[1:])
    if token.lower().startswith("text:"):
        lines = token.split("\n")[1:]
        if lines and lines[-1].strip() == ".":
            lines = lines[:-1]
        return "\n".join(line[1:] if line.startswith("..") else line for line in lines)
    return token


def _strings(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    return tuple(unquote(str(item)) for item in items)


def _size(text: str) -> int:
    found = _SIZE.fullmatch(text.strip())
    if found is None:
        raise InvalidInput(f"bad size {text!r}")
    return int(found.group(1)) * _MULTIPLIERS[found.group(2).upper()]


def _loaded(extension: str) -> bool:
    """Did the script being compiled ``require`` the extension (sievelib's per-thread parser state)?"""
    return extension in sieve_commands.parser_state.loaded_extensions


def _expands(text: str) -> bool:
    """Is ``text`` a string with variable references to expand at run time (RFC 5229 §3)?"""
    return "${" in text and _loaded("variables") and _VARIABLE.search(text) is not None


def _match(command: Any, keys: str = "key-list") -> Match:
    args, extra = command.arguments, command.extra_arguments
    kind = str(args.get("match-type", ":is")).lower()
    if kind not in MATCH_TYPES:
        raise InvalidInput(f"{command.name}: match type {kind} is not supported")
    comparator = unquote(str(extra.get("comparator", '"i;ascii-casemap"'))).lower()
    if comparator not in COMPARATORS:
        raise InvalidInput(f"{command.name}: comparator {comparator} is not supported")
    numeric = comparator == "i;ascii-numeric"
    if numeric and kind in (":contains", ":matches", ":regex"):  # RFC 4790 §9.1: equality and ordering only
        raise InvalidInput(f"{command.name}: {kind} cannot be used with the comparator i;ascii-numeric")
    relation = unquote(str(extra.get("match-type", '""'))).lower() if kind in (":count", ":value") else ""
    if kind in (":count", ":value") and relation not in RELATIONS:
        raise InvalidInput(f"{command.name}: {kind} needs one of {', '.join(RELATIONS)}")
    values = _strings(args[keys])
    expand = any(_expands(key) for key in values)
    if kind == ":regex" and _compiling.strict:
        for key in values:
            if not _expands(key):
                _compiling.states += len(compile_regex(key, comparator == "i;ascii-casemap").kind)
                if _compiling.states > MAX_REGEX_STATES:
                    raise InvalidInput(f":regex: the script's patterns have more than {MAX_REGEX_STATES} states in all")
    return Match(kind, values, comparator == "i;octet", numeric, relation, expand)


def _index(command: Any) -> tuple[int, bool]:
    """RFC 5260 §6 ``:index <n>`` / ``:last``."""
    if "index" not in command.arguments:
        if "last" in command.arguments:
            raise InvalidInput(f"{command.name}: :last needs :index")
        return 0, False
    text = str(command.extra_arguments.get("index", ""))
    if not text.isdigit() or int(text) < 1:
        raise InvalidInput(f"{command.name}: :index needs a number from 1")
    return int(text), "last" in command.arguments


def _zone(command: Any) -> tuple[str | None, bool]:
    if "zone" not in command.arguments:
        return None, False
    if str(command.arguments["zone"]).lower() == ":originalzone":
        return None, True
    zone = unquote(str(command.extra_arguments["zone"]))
    if _ZONE.fullmatch(zone) is None:
        raise InvalidInput(f"{command.name}: :zone {zone!r} is not a time zone like +0100")
    return zone, False


def _date_part(command: Any) -> str:
    part = unquote(str(command.arguments["date-part"])).lower()
    if part not in DATE_PARTS:
        raise InvalidInput(f"{command.name}: unknown date part {part!r} (use {', '.join(DATE_PARTS)})")
    return part


def _nested(depth: int) -> int:
    if depth > MAX_NESTING:
        raise InvalidInput(f"sieve: nested deeper than {MAX_NESTING} levels")
    return depth + 1


def _test(command: Any, depth: int) -> Test:
    try:
        return _compile_test(command, depth)
    except InvalidInput:
        _failed_at(command)
        raise


def _failed_at(command: Any) -> None:
    """Note where the innermost command that failed starts (for the error's line number)."""
    if _compiling.failed is None:
        _compiling.failed = getattr(command, "position", None)


def _compile_test(command: Any, depth: int) -> Test:
    name, args, depth = command.name, command.arguments, _nested(depth)
    if name in ("address", "envelope"):
        part = str(args.get("address-part", ":all")).lower()
        if part not in ADDRESS_PARTS:
            raise InvalidInput(f"{name}: address part {part} is not supported")
        headers = tuple(h.lower() for h in _strings(args["header-list"]))
        index, last = _index(command) if name == "address" else (0, False)
        return AddressTest(headers, _match(command), part, name == "envelope", index, last)
    if name == "header":
        index, last = _index(command)
        return HeaderTest(tuple(h.lower() for h in _strings(args["header-names"])), _match(command), index, last)
    if name == "body":
        transform = str(args.get("body-transform", ":text")).lower().lstrip(":")
        types = _strings(command.extra_arguments["body-transform"]) if transform == "content" else ()
        return BodyTest(_match(command), transform, tuple(t.lower().strip() for t in types))
    if name == "string":
        return StringTest(_strings(args["source"]), _match(command))
    if name in ("date", "currentdate"):
        zone, original = _zone(command)
        header = unquote(str(args["header-name"])).lower() if name == "date" else None
        index, last = _index(command) if name == "date" else (0, False)
        return DateTest(header, _date_part(command), _match(command), zone, original, index, last)
    if name == "hasflag":
        if "variable-list" in args:
            raise InvalidInput("hasflag with a variable list is not supported")
        match = _match(command, "list-of-flags")
        keys = tuple(flag for key in match.keys for flag in key.split()) if not match.expand else match.keys
        return HasflagTest(Match(match.kind, keys, match.octet, match.numeric, match.relation, match.expand))
    if name == "environment":
        return EnvironmentTest(unquote(str(args["name"])).lower(), _match(command))
    if name == "spamtest":
        if not (_loaded("spamtest") or _loaded("spamtestplus")):
            raise InvalidInput('spamtest: require "spamtest" or "spamtestplus"')
        return SpamTest(_match(command, "value"), "percent" in args)
    if name == "exists":
        return ExistsTest(tuple(h.lower() for h in _strings(args["header-names"])))
    if name == "size":
        return SizeTest(str(args["comparator"]).lower() == ":over", _size(str(args["limit"])))
    if name in ("allof", "anyof"):
        return Combined(name == "allof", tuple(_test(t, depth) for t in args["tests"]))
    if name == "not":
        return NotTest(_test(args["test"], depth))
    if name in ("true", "false"):
        return Const(name == "true")
    raise InvalidInput(f"the test {name!r} is not supported")


class TagcontactCommand(sieve_commands.ActionCommand):  # type: ignore[misc]
    """``tagcontact <string-list>``: sievelib's grammar for relentad's action (looked up by class name)."""

    args_definition = [{"name": "tags", "type": ["string", "stringlist"], "required": True}]  # noqa: RUF012
    extension = TAG_EXTENSION


class StringCommand(sieve_commands.TestCommand):  # type: ignore[misc]
    """RFC 5229 §5 ``string [MATCH-TYPE] [COMPARATOR] <source> <key-list>``."""

    args_definition = [  # noqa: RUF012
        sieve_commands.comparator,
        sieve_commands.match_type,
        {"name": "source", "type": ["string", "stringlist"], "required": True},
        {"name": "key-list", "type": ["string", "stringlist"], "required": True},
    ]
    extension = "variables"


class SpamtestCommand(sieve_commands.TestCommand):  # type: ignore[misc]
    """RFC 5235 ``spamtest [":percent"] [COMPARATOR] [MATCH-TYPE] <value>`` (either extension may be required:
    checked when compiling)."""

    args_definition = [  # noqa: RUF012
        {"name": "percent", "type": ["tag"], "extension_values": {":percent": "spamtestplus"}, "required": False},
        sieve_commands.comparator,
        sieve_commands.match_type,
        {"name": "value", "type": ["string"], "required": True},
    ]


_INDEX_ARG = {
    "name": "index",
    "type": ["tag"],
    "extension_values": {":index": "index"},
    "extra_arg": {"type": "number"},
    "required": False,
}
_LAST_ARG = {"name": "last", "type": ["tag"], "extension_values": {":last": "index"}, "required": False}


def _extend_grammar() -> None:
    """What sievelib's grammar lacks: ``:user`` / ``:detail`` (RFC 5233), ``i;ascii-numeric`` (RFC 4790), and
    ``:index`` / ``:last`` (RFC 5260 §6) on header, address and date. Idempotent (sievelib's tables are shared)."""
    sieve_commands.address_part.setdefault("extension_values", {}).update(
        {":user": "subaddress", ":detail": "subaddress"}
    )
    values = sieve_commands.comparator["extra_arg"]["values"]
    if '"i;ascii-numeric"' not in values:
        values.append('"i;ascii-numeric"')
    for command in (sieve_commands.HeaderCommand, sieve_commands.AddressCommand, sieve_commands.DateCommand):
        if not any(arg["name"] == "index" for arg in command.args_definition):
            command.args_definition[:0] = [_INDEX_ARG, _LAST_ARG]


class ErejectCommand(sieve_commands.ActionCommand):  # type: ignore[misc]
    """RFC 5429 §2.1 ``ereject <reason>``."""

    args_definition = [{"name": "text", "type": ["string"], "required": True}]  # noqa: RUF012
    extension = "ereject"


class AddheaderCommand(sieve_commands.ActionCommand):  # type: ignore[misc]
    """RFC 5293 §4 ``addheader [":last"] <field-name: string> <value: string>``."""

    args_definition = [  # noqa: RUF012
        {"name": "last", "type": ["tag"], "values": [":last"], "required": False},
        {"name": "field-name", "type": ["string"], "required": True},
        {"name": "value", "type": ["string"], "required": True},
    ]
    extension = "editheader"


class DeleteheaderCommand(sieve_commands.ActionCommand):  # type: ignore[misc]
    """RFC 5293 §5 ``deleteheader [":index" <fieldno> [":last"]] [COMPARATOR] [MATCH-TYPE] <field-name>
    [<value-patterns>]`` (its ``:index``/``:last`` are editheader's own: no "index" require needed)."""

    args_definition = [  # noqa: RUF012
        {"name": "index", "type": ["tag"], "values": [":index"], "extra_arg": {"type": "number"}, "required": False},
        {"name": "last", "type": ["tag"], "values": [":last"], "required": False},
        sieve_commands.comparator,
        sieve_commands.match_type,
        {"name": "field-name", "type": ["string"], "required": True},
        {"name": "value-patterns", "type": ["string", "stringlist"], "required": False},
    ]
    extension = "editheader"


class IncludeCommand(sieve_commands.ControlCommand):  # type: ignore[misc]
    """RFC 6609 §3.2 ``include [LOCATION] [":once"] [":optional"] <value: string>``."""

    args_definition = [  # noqa: RUF012
        {"name": "location", "type": ["tag"], "values": [":personal", ":global"], "required": False},
        {"name": "once", "type": ["tag"], "values": [":once"], "required": False},
        {"name": "optional", "type": ["tag"], "values": [":optional"], "required": False},
        {"name": "script-name", "type": ["string"], "required": True},
    ]
    extension = "include"


class ReturnCommand(sieve_commands.ControlCommand):  # type: ignore[misc]
    """RFC 6609 §3.3 ``return``: the rest of this (included) script is skipped."""

    args_definition: list[dict[str, Any]] = []  # noqa: RUF012
    extension = "include"


class GlobalCommand(sieve_commands.ControlCommand):  # type: ignore[misc]
    """RFC 6609 §3.4 ``global <value: string-list>``: variables shared with the scripts it includes or comes from."""

    args_definition = [{"name": "names", "type": ["string", "stringlist"], "required": True}]  # noqa: RUF012
    extension = "include"


sieve_commands.add_commands(
    [
        TagcontactCommand,
        StringCommand,
        SpamtestCommand,
        ErejectCommand,
        AddheaderCommand,
        DeleteheaderCommand,
        IncludeCommand,
        ReturnCommand,
        GlobalCommand,
    ]
)
_extend_grammar()

_REFUSED = {
    "discard": "discard is not supported: relentad never drops mail on a rule (fileinto Trash instead)",
}
MAX_REJECT = 1000
"""Characters of a reject reason (it becomes one SMTP reply line)."""
_SET_ORDER = (":lower", ":upper", ":lowerfirst", ":upperfirst", ":quotewildcard", ":length")
"""RFC 5229 §4.1: modifiers apply by precedence, highest (40: :lower/:upper) first."""


def _flag_list(command: Any, value: Any, strict: bool) -> tuple[str, ...]:
    """RFC 5232 §3: each string is a space-separated list of flags; system flags in any case. Not ``strict``: a flag
    that is none is dropped (RFC 5232 §3: an implementation MAY ignore it)."""
    out = []
    for flag in (f for item in _strings(value) for f in item.split()):
        try:
            out.append(flagmod.canonical(flag))
        except InvalidInput as exc:
            if strict:
                raise InvalidInput(f"{command.name}: {exc}") from None
    return tuple(out)


def _flags(command: Any, strict: bool) -> tuple[str, ...] | None:
    if "flags" not in command.extra_arguments:
        return None
    return _flag_list(command, command.extra_arguments["flags"], strict)


def _require(command: Any) -> None:
    for capability in _strings(command.arguments["capabilities"]):
        if capability.lower() not in CAPABILITIES:
            raise InvalidInput(
                f"require: {capability!r} is not supported (relentad has {', '.join(sorted(CAPABILITIES))})"
            )


def _number(text: str, what: str) -> int:
    found = _SIZE.fullmatch(str(text).strip())
    if found is None:
        raise InvalidInput(f"vacation: {what} needs a number")
    return int(found.group(1)) * _MULTIPLIERS[found.group(2).upper()]


def _address(text: str, what: str) -> str:
    """The addr-spec in ``text`` ("Name <a@b>" or a@b), normalised; InvalidInput when it holds none."""
    from email.utils import parseaddr

    _name, address = parseaddr(text)
    try:
        return addrspec.normalize(address)
    except InvalidInput:
        raise InvalidInput(f"vacation: {what} {text!r} is not an email address") from None


def _mime_reason(reason: str) -> None:
    """RFC 5230 §4.4: with :mime the reason is a MIME entity: header fields (Content-Type at least), a blank line,
    the body."""
    head, blank, _body = reason.replace("\r\n", "\n").partition("\n\n")
    names = {line.split(":", 1)[0].strip().lower() for line in head.split("\n") if ":" in line and line[0] not in " \t"}
    if not blank or "content-type" not in names:
        raise InvalidInput("vacation :mime: the reason must be a MIME entity (Content-Type, a blank line, the body)")


def _vacation(command: Any) -> Vacation:
    """The vacation action's arguments (RFC 5230 §4, RFC 6131 §2), refused when they cannot make a reply."""
    args, extra = command.arguments, command.extra_arguments
    if "days" in args and "seconds" in args:
        raise InvalidInput("vacation: :days and :seconds cannot both be given")
    if "seconds" in args:
        period = max(VACATION_MIN_SECONDS, min(_number(extra["seconds"], ":seconds"), VACATION_MAX))
    elif "days" in args:
        period = max(VACATION_MIN_DAYS * DAY, min(_number(extra["days"], ":days") * DAY, VACATION_MAX))
    else:
        period = VACATION_DEFAULT
    reason = unquote(str(args["reason"]))
    if not reason.strip():
        raise InvalidInput("vacation: the reason (the reply's text) is empty")
    if len(reason.encode("utf-8")) > MAX_REASON:
        raise InvalidInput(f"vacation: the reason is larger than {MAX_REASON >> 10} KiB")
    mime = "mime" in args
    if mime:
        _mime_reason(reason)
    subject = unquote(str(extra["subject"])) if "subject" in args else None
    if subject is not None and (len(subject) > 998 or any(c in subject for c in "\r\n\0")):
        raise InvalidInput("vacation: :subject must be one line of at most 998 characters")
    sender = unquote(str(extra["from"])) if "from" in args else None
    if sender is not None:
        if any(c in sender for c in "\r\n\0"):
            raise InvalidInput("vacation: :from must be one line")
        _address(sender, ":from")
    addresses = tuple(_address(a, ":addresses") for a in _strings(extra["addresses"])) if "addresses" in args else ()
    handle = unquote(str(extra["handle"])) if "handle" in args else None
    if handle is not None and len(handle) > 256:
        raise InvalidInput("vacation: :handle is longer than 256 characters")
    return Vacation(reason, period, subject, sender, addresses, mime, handle)


def _redirect_address(command: Any) -> str:
    """redirect's address (RFC 5228 §4.2: one mailbox address, no name), normalised."""
    text = unquote(str(command.arguments["address"])).strip()
    try:
        return addrspec.normalize(text)
    except InvalidInput:
        raise InvalidInput(f"redirect: {text!r} is not an email address") from None


def _set(command: Any) -> Action:
    """RFC 5229 §4 ``set``: a plain identifier (no match variable, no namespace) and the modifiers in order."""
    name = unquote(str(command.arguments["name"]))
    if _IDENTIFIER.fullmatch(name) is None:
        raise InvalidInput(f"set: {name!r} is not a variable name (letters, digits and _, not first a digit)")
    given = {
        str(command.arguments[k]).lower()
        for k in ("case", "first-case", "quotewildcard", "length")
        if k in command.arguments
    }
    if "encoding" in command.arguments:
        raise InvalidInput(f"set: {command.arguments['encoding']} is not supported")
    modifiers = tuple(m for m in _SET_ORDER if m in given)
    return Action("set", name.lower(), value=unquote(str(command.arguments["value"])), modifiers=modifiers)


def _include(command: Any) -> Include:
    """RFC 6609 include: a constant name (§3.2: never expanded) of one of the account's own scripts. There are no
    site-wide scripts to include with ``:global``: the admin's rules already run before the user's script."""
    args = command.arguments
    if str(args.get("location", ":personal")).lower() == ":global":
        raise InvalidInput(
            "include :global is not supported (relentad has no site-wide scripts: the admin's rules run before yours)"
        )
    name = unquote(str(args["script-name"]))
    try:
        name = userscripts.check_name(name)
    except userscripts.ScriptError as exc:
        raise InvalidInput(f"include: {exc}") from None
    return Include(name, "once" in args, "optional" in args)


def _edit_header(command: Any) -> Action:
    """RFC 5293 addheader / deleteheader, their field name (and addheader's value) checked now unless built from
    variables at run time."""
    name, args = command.name, command.arguments
    field_name = unquote(str(args["field-name"]))
    value = unquote(str(args["value"])) if name == "addheader" else ""
    expand = _expands(field_name) or _expands(value)
    try:
        if not _expands(field_name):
            editheader.check_name(field_name)
        if not _expands(value):
            editheader.check_value(value)
    except InvalidInput as exc:
        raise InvalidInput(f"{name}: {exc}") from None
    if name == "addheader":
        return Action(name, field_name, value=value, last="last" in args, expand=expand)
    index, last = _index(command)
    match = _match(command, "value-patterns") if "value-patterns" in args else None
    if match is not None and match.kind == ":count":
        raise InvalidInput("deleteheader: :count cannot be used (it matches no single field)")
    return Action(name, field_name, last=last, index=index, match=match, expand=expand)


def _block(commands: list[Any], strict: bool, depth: int = 0) -> tuple[Command, ...]:
    out: list[Command] = []
    depth = _nested(depth)
    for command in commands:
        try:
            _compile_command(command, out, strict, depth)
        except InvalidInput:
            _failed_at(command)
            raise
    return tuple(out)


def _compile_command(command: Any, out: list[Command], strict: bool, depth: int) -> None:
    """Append the compiled ``command`` to ``out`` (elsif / else extend the if before them)."""
    name = command.name
    if name == "require":
        if strict:
            _require(command)
        return
    if name == "if":
        out.append(If(((_test(command.arguments["test"], depth), _block(command.children, strict, depth)),)))
    elif name in ("elsif", "else"):
        previous = out[-1] if out else None
        if not isinstance(previous, If) or previous.branches[-1][0] is None:
            raise InvalidInput(f"{name} without a preceding if")
        test = _test(command.arguments["test"], depth) if name == "elsif" else None
        out[-1] = If((*previous.branches, (test, _block(command.children, strict, depth))))
    elif name in ("fileinto", "keep"):
        written = unquote(str(command.arguments["mailbox"])) if name == "fileinto" else ""
        expand = _expands(written)
        folder = written if expand or name == "keep" else stored_name(written)
        copy = name == "fileinto" and "copy" in command.arguments  # RFC 3894: the implicit keep stays
        out.append(Action(name, folder, _flags(command, strict), copy=copy, expand=expand))
    elif name in ("addflag", "setflag", "removeflag"):
        if "variable-name" in command.arguments:
            raise InvalidInput(f"{name} with a variable name is not supported")
        listed = _strings(command.arguments["list-of-flags"])
        if any(_expands(flag) for flag in listed):
            out.append(Action(name, flags=listed, expand=True))
        else:
            out.append(Action(name, flags=_flag_list(command, command.arguments["list-of-flags"], strict)))
    elif name == "set":
        out.append(_set(command))
    elif name == "stop":
        out.append(Action("stop"))
    elif name == "tagcontact":
        out.append(Action(name, tags=tuple(check_tag(tag) for tag in _strings(command.arguments["tags"]))))
    elif name == "vacation":
        out.append(Action(name, vacation=_vacation(command)))
    elif name == "redirect":
        out.append(Action(name, _redirect_address(command), copy="copy" in command.arguments))
    elif name in ("reject", "ereject"):
        reason = unquote(str(command.arguments["text"])).strip()
        if len(reason) > MAX_REJECT:
            raise InvalidInput(f"{name}: the reason is longer than {MAX_REJECT} characters")
        out.append(Action(name, reason or "Rejected by the recipient's rules"))
    elif name in ("addheader", "deleteheader"):
        out.append(_edit_header(command))
    elif name == "include":
        out.append(_include(command))
    elif name == "return":
        out.append(Action("return"))
    elif name == "global":
        if not _loaded("variables"):
            raise InvalidInput('global: require "variables" too')
        names = tuple(unquote(n) for n in _strings(command.arguments["names"]))
        for variable in names:
            if _IDENTIFIER.fullmatch(variable) is None:
                raise InvalidInput(f"global: {variable!r} is not a variable name")
        out.append(Action("global", tags=tuple(n.lower() for n in names)))
    elif name in _REFUSED:
        raise InvalidInput(_REFUSED[name])
    else:
        raise InvalidInput(f"the command {name!r} is not supported")


def compile_script(text: str, *, strict: bool = True) -> Script:
    """Parse and compile a Sieve script; InvalidInput (one line) when it is not valid or not supported.

    Not ``strict`` (delivery, compiling rules stored earlier): what older releases let in and that is harmless —
    a ``require`` of an unsupported capability, a flag that is none — does not disable the whole rule."""
    data = text.encode("utf-8")
    if len(data) > MAX_SCRIPT:
        raise InvalidInput(f"sieve: the script is larger than {MAX_SCRIPT >> 10} KiB")
    parser = Parser()
    _compiling.lexer, _compiling.strict = parser.lexer, strict
    try:
        if not parser.parse(data):
            raise InvalidInput(f"sieve: {parser.error}")
        script = Script(_block(parser.result, strict), _loaded("variables"))
    except (KeyError, AttributeError, TypeError) as exc:  # a shape sievelib accepted but we do not know
        raise InvalidInput(_one_line(f"sieve: unsupported construct ({exc})")) from None
    except InvalidInput as exc:
        where = getattr(_compiling, "failed", None)
        message = str(exc)
        if where is not None and not message.startswith("sieve: line "):
            line = data.count(b"\n", 0, where) + 1
            message = f"sieve: line {line}: {message}"
        message = _one_line(message)
        if message == str(exc):
            raise
        raise InvalidInput(message) from None
    finally:
        _compiling.lexer = _compiling.failed = None
        _compiling.strict, _compiling.states = True, 0
    if len({a.argument for a in script.actions("set")}) > MAX_VARIABLES:
        raise InvalidInput(f"set: a script may set at most {MAX_VARIABLES} variables")
    return script


def _one_line(message: str) -> str:
    """An error as the one line callers print (the CLI, ManageSieve's NO): sievelib quotes the token it stopped at as
    written, and a string may span lines."""
    return message.replace("\r", "\\r").replace("\n", "\\n")


class _Compiling(threading.local):
    """The compile this thread runs: its parser (where each command starts, for an error's line number), the offset
    of the command that failed, and whether it is strict (an upload: every ``:regex`` is compiled to check it; at
    delivery, where a script was checked when it was stored, a pattern is compiled when first used, from the
    message's work limit: a 1 MiB script of large patterns took half a minute to check, on the event loop)."""

    lexer: Any = None
    failed: int | None = None
    strict: bool = True
    states: int = 0  # NFA states of the script's patterns so far (MAX_REGEX_STATES)


_compiling = _Compiling()
_command_instance = sieve_parser.get_command_instance


def _located(name: str, parent: Any = None, checkexists: bool = True) -> Any:
    """sievelib's command factory, noting the command's offset (cheap: the line is counted only on an error)."""
    command = _command_instance(name, parent, checkexists)
    lexer = _compiling.lexer
    command.position = getattr(lexer, "pos", 0) if lexer is not None else 0
    return command


sieve_parser.get_command_instance = _located
