"""SORT and THREAD arguments (RFC 5256 §3-4, RFC 5957 SORT=DISPLAY, RFC 5267 ESORT).

SORT's charset is not optional (unlike SEARCH's CHARSET); an unknown one is `NO [BADCHARSET]` as for SEARCH,
and a SORT RETURN (SAVE) that fails to parse empties `$` (RFC 5182 §2.1) as SEARCH does.
"""

from __future__ import annotations

from relentad.imap.parser_commands import Sort, SortKey, Thread
from relentad.imap.parser_cursor import Cursor, ParseError
from relentad.imap.parser_search import SearchKey, parse_returns, parse_search_program

__all__ = ["SORT_KEYS", "THREAD_ALGORITHMS", "parse_sort", "parse_thread"]

SORT_KEYS = frozenset(("ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"))
THREAD_ALGORITHMS = frozenset(("ORDEREDSUBJECT", "REFERENCES"))
_MAX_CRITERIA = 16
"""More sort criteria than there are keys (twice over) is abuse, not a sort order."""


def _charset_and_program(cur: Cursor) -> tuple[str, SearchKey]:
    """charset 1*(SP search-key): the charset is an astring, upper-cased."""
    charset = cur.astring_text("charset").upper()
    cur.sp()
    return charset, parse_search_program(cur, charset)


def _criterion(cur: Cursor) -> SortKey:
    """["REVERSE" SP] sort-key."""
    word = cur.keyword("sort criterion")
    reverse = word == "REVERSE"
    if reverse:
        cur.sp()
        word = cur.keyword("sort key after REVERSE")
    if word not in SORT_KEYS:
        cur.fail(f"unknown sort key {word}")
    return SortKey(word, reverse)


def parse_sort(cur: Cursor, tag: str, name: str, uid: bool) -> Sort:
    """SORT [SP RETURN (opts)] SP (criteria) SP charset SP search-key *(SP search-key)."""
    cur.sp()
    returns = parse_returns(cur)
    try:
        criteria = cur.paren_list(lambda: _criterion(cur), allow_empty=False)
        if len(criteria) > _MAX_CRITERIA:
            cur.fail(f"more than {_MAX_CRITERIA} sort criteria")
        cur.sp()
        charset, key = _charset_and_program(cur)
    except ParseError as exc:
        exc.resets_saved = returns is not None and "SAVE" in returns
        raise
    return Sort(tag=tag, name=name, uid=uid, criteria=tuple(criteria), key=key, charset=charset, returns=returns)


def parse_thread(cur: Cursor, tag: str, name: str, uid: bool) -> Thread:
    """THREAD SP algorithm SP charset SP search-key *(SP search-key)."""
    cur.sp()
    algorithm = cur.keyword("threading algorithm")
    if algorithm not in THREAD_ALGORITHMS:
        cur.fail(f"unknown threading algorithm {algorithm}; use ORDEREDSUBJECT or REFERENCES")
    cur.sp()
    charset, key = _charset_and_program(cur)
    return Thread(tag=tag, name=name, uid=uid, algorithm=algorithm, key=key, charset=charset)
