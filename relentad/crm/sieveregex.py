"""The Sieve ``:regex`` match type (draft-ietf-sieve-regex-01): POSIX extended regular expressions, run safely.

Users' patterns cannot be trusted with a backtracking engine (Python ``re``): ``(a+)+b`` or ``.*x.*y.*z`` against a
long subject line would stall delivery. So patterns are compiled here to a Thompson NFA and run as a lazily built
DFA (as RE2 does): one dictionary step per character, whatever the pattern, so a match costs O(len(value)) once the
few DFA states a value visits are built (each build is O(NFA size)).

Supported: literals, ``.``, bracket expressions (ranges, negation, ``[:alpha:]``-style classes), ``( )`` groups,
``|``, ``* + ? {m} {m,} {m,n}``, ``^`` and ``$`` (anchoring the whole value, as POSIX regexec without REG_NEWLINE),
``\\`` escapes and the GNU classes ``\\w \\W \\s \\S \\d \\D``. Refused when the script is checked: back-references
(no linear-time engine has them), word boundaries, collating elements, and patterns whose NFA exceeds
:data:`MAX_STATES` (``{m,n}`` counts are expanded). A match sets no match variables (``${1}``): submatches would need
the backtracking this module avoids.

Linear is not cheap enough on its own: one DFA move is a Python dictionary step, and a pattern whose DFA does not fit
the cache (``(a|b)*a(a|b){20}``) builds a state, O(NFA size), on every character. Rules run on the event loop while
the sending server waits, so :meth:`Regex.search` spends from a :class:`Budget` (one per message and account) and
raises :class:`Exhausted` when it is gone; the rules count that as the script's run-time error (the message is kept).

Invariants: :func:`compile_regex` raises InvalidInput (one line) and nothing else; :meth:`Regex.search` raises
only :class:`Exhausted`, reads at most :data:`MAX_INPUT` characters and keeps at most :data:`MAX_DFA_STATES` cached
states (:data:`MAX_HELD` NFA states in them) and :data:`MAX_EDGES` moves per pattern (then starts over), for at
most 256 patterns.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInput

Node = tuple[Any, ...]

MAX_STATES = 2000
"""NFA states of one pattern (Pigeonhole has no such limit; a ``{1000}`` on a group would otherwise expand hugely)."""
MAX_PATTERN = 1024
"""Characters of one pattern."""
MAX_INPUT = 256 << 10
"""Characters of a value a pattern is run on (a body's text beyond this is not searched)."""
MAX_DFA_STATES = 2048
MAX_HELD = 32_768
"""NFA states held in all of one pattern's cached DFA states (some 40 bytes each): a DFA state of a large pattern
can hold a thousand, and 256 cached patterns would otherwise keep gigabytes."""
MAX_EDGES = 8192
"""Cached moves of one pattern's DFA (each state has one per character seen there: a value of many distinct
characters would otherwise grow it without bound); past either limit the DFA starts over."""
MAX_REPEAT = 255  # RE_DUP_MAX of POSIX
MAX_WORK = 2_000_000
"""Work units one message's rules may spend for one recipient account (a fraction of a second of CPU): in ``:regex``
a character read on a cached move is one, building a DFA move costs the NFA states it looks at; the other match
types (:mod:`.rules`) cost one per key and 128 (512) characters of the value, reading a value 8, a date 100. A
body of 256 KiB read by a handful of patterns fits."""

_STEP = 16
"""Work units of building any DFA move (a closure, a frozenset, the lock): some twenty cached moves' time."""


class Exhausted(Exception):
    """The :class:`Budget` of :data:`MAX_WORK` units is spent."""


class Budget:
    """What is left of one message's work (shared by every key and value its rules test)."""

    __slots__ = ("left",)

    def __init__(self, left: int = MAX_WORK) -> None:
        self.left = left

    def spend(self, units: int) -> None:
        self.left -= units
        if self.left < 0:
            raise Exhausted(f"the rules did more than their limit of {MAX_WORK} steps of work on this message")


_CLASSES: dict[str, Callable[[str], bool]] = {
    "alpha": lambda c: c.isalpha(),
    "digit": lambda c: "0" <= c <= "9",
    "alnum": lambda c: c.isalnum(),
    "upper": lambda c: c.isupper(),
    "lower": lambda c: c.islower(),
    "space": lambda c: c.isspace(),
    "blank": lambda c: c in " \t",
    "punct": lambda c: c.isascii() and c.isprintable() and not c.isalnum() and c != " ",
    "print": lambda c: c.isprintable(),
    "graph": lambda c: c.isprintable() and c != " ",
    "cntrl": lambda c: ord(c) < 32 or ord(c) == 127,
    "xdigit": lambda c: c in "0123456789abcdefABCDEF",
}
_ESCAPES = {"w": ("alnum", "_"), "s": ("space", ""), "d": ("digit", "")}
_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@dataclass(frozen=True, slots=True)
class CharSet:
    """What one position accepts: listed characters, ranges and named classes, or their complement."""

    chars: frozenset[str] = frozenset()
    ranges: tuple[tuple[str, str], ...] = ()
    classes: tuple[str, ...] = ()
    negated: bool = False
    any: bool = False

    def accepts(self, char: str) -> bool:
        if self.any:
            return True
        found = (
            char in self.chars
            or any(low <= char <= high for low, high in self.ranges)
            or any(_CLASSES[name](char) for name in self.classes)
        )
        return found != self.negated

    def folded(self) -> CharSet:
        """The set against lower-cased input (i;ascii-casemap): A-Z in it also accept a-z."""
        if self.any:
            return self
        upper = frozenset(c.translate(_LOWER) for c in self.chars)
        ranges = list(self.ranges)
        for low, high in self.ranges:  # the lower-case image of the range's A-Z part
            a, b = max(low, "A"), min(high, "Z")
            if a <= b:
                ranges.append((a.translate(_LOWER), b.translate(_LOWER)))
        classes = tuple("alpha" if name in ("upper", "lower") else name for name in self.classes)
        return CharSet(self.chars | upper, tuple(ranges), classes, self.negated)


# NFA node kinds
_CHAR, _SPLIT, _BOL, _EOL, _MATCH = range(5)


class _Parser:
    """ERE text → a small AST of tuples: ("set", CharSet) ("cat", [..]) ("alt", [..]) ("rep", node, min, max|None)
    ("bol",) ("eol",)."""

    def __init__(self, pattern: str) -> None:
        self.text, self.pos = pattern, 0

    def fail(self, why: str) -> InvalidInput:
        """The refusal on one line: ``why`` may quote a character of the pattern (the range of ``[a-<newline>]``),
        escaped here as the pattern is; at run time (a key built from variables) it goes to the log and the trace."""
        shown = "".join(char if char.isprintable() else repr(char)[1:-1] for char in why)
        return InvalidInput(f":regex {self.text!r}: {shown}")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def parse(self) -> Node:
        node = self.alternation(0)
        if self.pos < len(self.text):
            raise self.fail("unbalanced )")
        return node

    def alternation(self, depth: int) -> Node:
        if depth > 64:
            raise self.fail("groups nested too deep")
        branches = [self.concatenation(depth)]
        while self.peek() == "|":
            self.pos += 1
            branches.append(self.concatenation(depth))
        return branches[0] if len(branches) == 1 else ("alt", branches)

    def concatenation(self, depth: int) -> Node:
        items: list[Node] = []
        while self.peek() not in ("", "|", ")"):
            items.append(self.repetition(depth))
        return ("cat", items)

    def repetition(self, depth: int) -> Node:
        node = self.atom(depth)
        while self.peek() in ("*", "+", "?", "{"):
            char = self.peek()
            if char == "{":
                low, high = self.braces()
            else:
                self.pos += 1
                low, high = {"*": (0, None), "+": (1, None), "?": (0, 1)}[char]
            if node[0] in ("bol", "eol"):
                raise self.fail("a repeated anchor")
            node = ("rep", node, low, high)
        return node

    def braces(self) -> tuple[int, int | None]:
        end = self.text.find("}", self.pos)
        body = self.text[self.pos + 1 : end] if end > 0 else ""
        low_text, comma, high_text = body.partition(",")
        if end < 0 or not low_text.isdigit() or (high_text and not high_text.isdigit()):
            raise self.fail("a bad {m,n} count")
        self.pos = end + 1
        low = int(low_text)
        high = low if not comma else int(high_text) if high_text else None
        if low > MAX_REPEAT or (high is not None and (high > MAX_REPEAT or high < low)):
            raise self.fail(f"a {{m,n}} count above {MAX_REPEAT} or with n < m")
        return low, high

    def atom(self, depth: int) -> Node:
        char = self.peek()
        self.pos += 1
        if char == "(":
            node = self.alternation(depth + 1)
            if self.peek() != ")":
                raise self.fail("unbalanced (")
            self.pos += 1
            return node
        if char == "[":
            return ("set", self.bracket())
        if char == ".":
            return ("set", CharSet(any=True))
        if char == "^":
            return ("bol",)
        if char == "$":
            return ("eol",)
        if char in ("*", "+", "?", "{"):
            raise self.fail(f"{char} repeats nothing")
        if char == "\\":
            return ("set", self.escape())
        return ("set", CharSet(frozenset(char)))

    def escape(self) -> CharSet:
        char = self.peek()
        if not char:
            raise self.fail("a trailing \\")
        self.pos += 1
        if char.isdigit() and char != "0":
            raise self.fail("back-references are not supported")
        if char in "bB<>`'":
            raise self.fail(f"\\{char} is not supported")
        if char.lower() in _ESCAPES:
            name, extra = _ESCAPES[char.lower()]
            return CharSet(frozenset(extra), (), (name,), negated=char.isupper())
        return CharSet(frozenset(char))

    def bracket(self) -> CharSet:
        negated = self.peek() == "^"
        self.pos += negated
        chars: set[str] = set()
        ranges: list[tuple[str, str]] = []
        classes: list[str] = []
        first = True
        while True:
            char = self.peek()
            if not char:
                raise self.fail("unbalanced [")
            if char == "]" and not first:
                self.pos += 1
                return CharSet(frozenset(chars), tuple(ranges), tuple(classes), negated)
            first = False
            if self.text.startswith("[:", self.pos):
                end = self.text.find(":]", self.pos + 2)
                name = self.text[self.pos + 2 : end] if end > 0 else ""
                if name not in _CLASSES:
                    raise self.fail(f"unknown class [:{name}:]")
                classes.append(name)
                self.pos = end + 2
                continue
            if self.text.startswith(("[=", "[."), self.pos):
                raise self.fail("collating elements are not supported")
            self.pos += 1
            if self.peek() == "-" and self.pos + 1 < len(self.text) and self.text[self.pos + 1] != "]":
                high = self.text[self.pos + 1]
                if high < char:
                    raise self.fail(f"the range {char}-{high} is reversed")
                ranges.append((char, high))
                self.pos += 2
            else:
                chars.add(char)


class Regex:
    """A compiled pattern: the NFA, and its DFA built as values need it (shared by threads: a lost race only builds
    a state twice)."""

    def __init__(self, pattern: str, fold: bool) -> None:
        self.pattern, self.fold = pattern, fold
        self.kind: list[int] = []
        self.sets: list[CharSet] = []  # what a CHAR state accepts (an empty set for the others)
        self.outs: list[list[int]] = []
        self.costs: list[int] = []  # work units of testing a character against a state (its ranges and classes)
        tree = _Parser(pattern).parse()
        match = self._node(_MATCH)
        self.start = self._compile(tree, match)
        self.lock = threading.Lock()
        self._reset()

    def _node(self, kind: int, charset: CharSet | None = None, outs: list[int] | None = None) -> int:
        if len(self.kind) >= MAX_STATES:
            raise InvalidInput(f":regex {self.pattern!r}: the pattern is too large (more than {MAX_STATES} states)")
        self.kind.append(kind)
        self.sets.append(CharSet() if charset is None else charset.folded() if self.fold else charset)
        self.outs.append(outs or [])
        self.costs.append(1 + (len(charset.ranges) + len(charset.classes) if charset is not None else 0))
        return len(self.kind) - 1

    def _compile(self, node: Node, following: int) -> int:
        """The NFA of ``node`` leading to ``following``, built back to front; returns its entry."""
        kind = node[0]
        if kind == "set":
            return self._node(_CHAR, node[1], [following])
        if kind in ("bol", "eol"):
            return self._node(_BOL if kind == "bol" else _EOL, None, [following])
        if kind == "cat":
            for item in reversed(node[1]):
                following = self._compile(item, following)
            return following
        if kind == "alt":
            return self._node(_SPLIT, None, [self._compile(b, following) for b in node[1]])
        sub, low, high = node[1], int(node[2]), node[3]
        copies = low
        if high is None:  # sub{low,}: a loop, entered through its body when one copy is mandatory
            loop = self._node(_SPLIT)
            body = self._compile(sub, loop)
            self.outs[loop] = [body, following]
            following = body if low else loop
            copies = max(low - 1, 0)
        else:
            for _ in range(int(high) - low):
                following = self._node(_SPLIT, None, [self._compile(sub, following), following])
        for _ in range(copies):
            following = self._compile(sub, following)
        return following

    def _reset(self) -> None:
        self.restart = self._closure([self.start], start=False, end=False)
        self.tables = _Tables()
        self.initial_states = self._closure([self.start], start=True, end=False)

    def _closure(self, seeds: list[int], *, start: bool, end: bool) -> frozenset[int]:
        """The states reachable without reading: CHAR and MATCH states, and anchors not passable here (kept so that
        the end of the value can pass a ``$`` later)."""
        seen: set[int] = set()
        stack = list(seeds)
        while stack:
            state = stack.pop()
            if state in seen:
                continue
            seen.add(state)
            kind = self.kind[state]
            if kind == _SPLIT or (kind == _BOL and start) or (kind == _EOL and end):
                stack.extend(self.outs[state])
        return frozenset(seen)

    def _step(self, tables: _Tables, states: frozenset[int], char: str, budget: Budget) -> tuple[_Tables, int]:
        """The DFA state after ``states`` reads ``char``, built now; a full table is replaced by a fresh one."""
        budget.spend(_STEP + sum(self.costs[s] for s in states))
        seeds = [self.outs[s][0] for s in states if self.kind[s] == _CHAR and self.sets[s].accepts(char)]
        following = self._closure(seeds, start=False, end=False) | self.restart
        budget.spend(len(following))
        with self.lock:
            if len(tables.states) >= MAX_DFA_STATES or tables.edges >= MAX_EDGES or tables.held >= MAX_HELD:
                if self.tables is tables:
                    self.tables = _Tables()
                tables = self.tables
                return tables, tables.add(following, self.kind)
            found = tables.add(following, self.kind)
            tables.moves[tables.ids[states]][char] = found
            tables.edges += 1
            return tables, found

    def search(self, value: str, budget: Budget | None = None) -> bool:
        """Does the pattern match anywhere in ``value`` (regexec semantics)? Exhausted when ``budget`` (a fresh one
        when None) runs out."""
        value = value[:MAX_INPUT]
        budget = Budget() if budget is None else budget
        budget.spend(len(value) + 8)
        if self.fold:
            value = value.translate(_LOWER)
        tables = self.tables
        with self.lock:
            current = tables.add(self.initial_states, self.kind)
        for char in value:
            if tables.accepting[current]:
                return True
            following = tables.moves[current].get(char)
            if following is None:
                tables, following = self._step(tables, tables.states[current], char, budget)
            current = following
        if tables.accepting[current]:
            return True
        ends = [s for s in tables.states[current] if self.kind[s] == _EOL]
        closed = self._closure(ends, start=not value, end=True)
        return any(self.kind[s] == _MATCH for s in closed)


class _Tables:
    """A DFA under construction: sets of NFA states, their ids and moves."""

    def __init__(self) -> None:
        self.ids: dict[frozenset[int], int] = {}
        self.states: list[frozenset[int]] = []
        self.moves: list[dict[str, int]] = []
        self.accepting: list[bool] = []
        self.edges = 0
        self.held = 0  # NFA states in all of self.states

    def add(self, states: frozenset[int], kind: list[int]) -> int:
        found = self.ids.get(states)
        if found is None:
            found = self.ids[states] = len(self.states)
            self.states.append(states)
            self.held += len(states)
            self.moves.append({})
            self.accepting.append(any(kind[s] == _MATCH for s in states))
        return found


@functools.lru_cache(maxsize=256)
def compile_regex(pattern: str, fold: bool) -> Regex:
    """The compiled ``pattern`` (``fold``: i;ascii-casemap); InvalidInput with the reason when it is refused."""
    if len(pattern) > MAX_PATTERN:
        raise InvalidInput(f":regex: a pattern is longer than {MAX_PATTERN} characters")
    return Regex(pattern, fold)
