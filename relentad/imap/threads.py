"""THREAD=ORDEREDSUBJECT and THREAD=REFERENCES (RFC 5256 §4) over plain data, and the `* THREAD` syntax.

Pure: the caller gives one :class:`ThreadMessage` per message matching the search, in sequence order, with
the sent date already falling back to the internal date (§2.2) and the base subject already compared form.
Every walk over the tree is iterative, so a hostile mailbox (a chain of thousands of replies) cannot exhaust
the stack; a message's References are used from its last :data:`MAX_REFERENCES` IDs only, which keeps linking
linear in the mailbox for a header of thousands of IDs (the nearest ancestors are the ones that matter).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = ["MAX_REFERENCES", "ThreadMessage", "ordered_subject", "references", "render"]

MAX_REFERENCES = 100


@dataclass(frozen=True, slots=True)
class ThreadMessage:
    """What threading needs of one message: ``number`` is what the reply shows (sequence number or UID)."""

    number: int
    seq: int
    sent: float
    subject: str
    """The base subject in comparator form (:func:`basesubject.casemap`)."""
    reply: bool = False
    message_id: str | None = None
    references: tuple[str, ...] = ()
    """References, or the first In-Reply-To ID when there are none (§4 REFERENCES step 1)."""


@dataclass(eq=False, slots=True)
class Node:
    """A message of the tree, or a dummy (``message`` None) standing for a referenced message that is absent."""

    message: ThreadMessage | None = None
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)

    def first(self) -> ThreadMessage:
        """The message a node is dated and named by: its own, or its first child's for a dummy."""
        node = self
        while node.message is None:
            node = node.children[0]
        return node.message


def _sort_key(node: Node) -> tuple[float, int]:
    message = node.first()
    return message.sent, message.seq


def _descendants(roots: Iterable[Node]) -> list[Node]:
    """Every node below (and including) ``roots``, parents before their children."""
    out: list[Node] = []
    stack = list(roots)
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(node.children)
    return out


def _sort_siblings(roots: list[Node]) -> None:
    """Step 6: each set of siblings by sent date, innermost first, so a dummy is dated by its first child."""
    for node in reversed(_descendants(roots)):
        node.children.sort(key=_sort_key)
    roots.sort(key=_sort_key)


def ordered_subject(messages: Sequence[ThreadMessage]) -> list[Node]:
    """ORDEREDSUBJECT: messages grouped by base subject, each group's first (by sent date) the parent of the rest;
    the threads ordered by the sent date of their first message."""
    groups: dict[str, Node] = {}
    for message in sorted(messages, key=lambda m: (m.subject, m.sent, m.seq)):
        node = Node(message)
        head = groups.setdefault(message.subject, node)
        if head is not node:
            node.parent = head
            head.children.append(node)
    roots = list(groups.values())
    roots.sort(key=_sort_key)
    return roots


def _is_ancestor(candidate: Node, node: Node) -> bool:
    """Whether ``candidate`` is ``node`` or one of its ancestors (linking would then make a loop).

    Walks up from ``node`` and down through ``candidate``'s subtree in step, so it costs the shorter of the two: a
    message met after its parents has no children yet and costs one step, where walking up alone made a chain of
    n replies cost n²/2 steps (a 40,000-message chain took seconds)."""
    up: Node | None = node
    down = [candidate]
    while True:
        if up is None:
            return False  # the root, without meeting candidate
        if up is candidate:
            return True
        up = up.parent
        if not down:
            return False  # candidate's whole subtree, without meeting node
        below = down.pop()
        if below is node:
            return True
        down.extend(below.children)


def _link(parent: Node, child: Node) -> None:
    if child.parent is not None:
        child.parent.children.remove(child)
    child.parent = parent
    parent.children.append(child)


def _link_references(messages: Sequence[ThreadMessage]) -> list[Node]:
    """Step 1: the ID table, dummies for IDs referenced but absent; returns every node, in creation order."""
    table: dict[str, Node] = {}
    nodes: list[Node] = []
    for message in messages:
        node = table.get(message.message_id) if message.message_id else None
        if node is None or node.message is not None:  # no ID, or a duplicate: a unique one (the first keeps it)
            node = Node(message)
            if message.message_id and message.message_id not in table:
                table[message.message_id] = node
            nodes.append(node)
        else:
            node.message = message  # an earlier message referenced it: the dummy becomes this message
        previous: Node | None = None
        for ref in message.references[-MAX_REFERENCES:]:
            ref_node = table.get(ref)
            if ref_node is None:
                ref_node = table[ref] = Node()
                nodes.append(ref_node)
            if previous is not None and ref_node.parent is None and not _is_ancestor(ref_node, previous):
                _link(previous, ref_node)
            previous = ref_node
        if node.parent is not None:  # most likely from a truncated References: this message's own list wins
            node.parent.children.remove(node)
            node.parent = None
        if previous is not None and not _is_ancestor(node, previous):
            _link(previous, node)
    return nodes


def _prune(roots: list[Node]) -> list[Node]:
    """Step 3: dummies without children go; a dummy's children take its place, except that several children of
    a top-level dummy stay under it (promoting them would make them separate threads)."""
    for node in reversed(_descendants(roots)):
        kept: list[Node] = []
        for child in node.children:
            if child.message is None:
                kept.extend(child.children)
                for grandchild in child.children:
                    grandchild.parent = node
            else:
                kept.append(child)
        node.children = kept
    out: list[Node] = []
    for node in roots:
        if node.message is None and len(node.children) <= 1:
            for child in node.children:
                child.parent = None
            out.extend(node.children)
        else:
            out.append(node)
    return out


def _thread_subject(node: Node) -> str:
    return node.first().subject


def _gather_subjects(roots: list[Node]) -> list[Node]:
    """Step 5: top-level threads with the same base subject become one thread."""
    table: dict[str, Node] = {}
    for node in roots:
        subject = _thread_subject(node)
        if not subject:
            continue
        held = table.get(subject)
        if held is None or (
            held.message is not None and (node.message is None or (held.message.reply and not node.first().reply))
        ):
            table[subject] = node
    out: list[Node | None] = list(roots)
    position = {id(node): index for index, node in enumerate(roots)}
    for index, node in enumerate(roots):
        subject = _thread_subject(node)
        held = table.get(subject) if subject else None
        if held is None or held is node:
            continue
        if held.message is None:  # into the dummy: its children, or the message itself
            moved = node.children if node.message is None else [node]
            for child in moved:
                child.parent = held
            held.children.extend(moved)
        elif node.message is not None and node.message.reply and not held.message.reply:
            node.parent = held
            held.children.append(node)
        else:  # two unrelated threads of one subject: siblings under a new dummy, where the held one was
            dummy = Node(children=[held, node])
            held.parent = node.parent = dummy
            out[position[id(held)]] = dummy
            position[id(dummy)] = position[id(held)]
            table[subject] = dummy
        out[index] = None
    return [node for node in out if node is not None]


def references(messages: Sequence[ThreadMessage]) -> list[Node]:
    """REFERENCES (§4): link by Message-ID / References / In-Reply-To, prune dummies, merge top-level threads by
    base subject, order siblings by sent date."""
    nodes = _link_references(messages)
    roots = _prune([node for node in nodes if node.parent is None])
    for node in roots:
        if node.message is None:
            node.children.sort(key=_sort_key)
    roots.sort(key=_sort_key)  # step 4: step 5's outcome depends on this order
    roots = _gather_subjects(roots)
    _sort_siblings(roots)
    return roots


def render(roots: Sequence[Node]) -> bytes:
    """The `* THREAD` line's threads (§4 thread-list): one list per thread; a node with one child continues in
    the same list ("3 6"), several children each get their own ("6 (4 23)(44 7 96)")."""
    out: list[str] = []

    def emit(text: str) -> None:
        if text != ")" and out and out[-1][-1].isdigit():
            out.append(" ")
        out.append(text)

    stack: list[Node | str] = []
    for root in reversed(roots):
        stack += [")", root, "("]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            emit(item)
            continue
        node = item
        while True:
            if node.message is not None:
                emit(str(node.message.number))
            if len(node.children) != 1:
                break
            node = node.children[0]
        for child in reversed(node.children):
            stack += [")", child, "("]
    return "".join(out).encode("ascii")
