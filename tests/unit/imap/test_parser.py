"""The IMAP command parser: framing helpers, every command, every search key and fetch attribute, BAD texts,
and fuzzing that nothing but ParseError ever escapes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relentad.imap.parser import (
    COMMANDS,
    Append,
    AppendMessage,
    Authenticate,
    Command,
    Compress,
    CopyMove,
    Create,
    Enable,
    Expunge,
    Fetch,
    FetchBody,
    FetchItem,
    GetQuota,
    Id,
    List,
    LiteralSpec,
    Login,
    MailboxCommand,
    NoArgs,
    ParseError,
    Partial,
    Qresync,
    Rename,
    Search,
    SearchAge,
    SearchAnd,
    SearchDate,
    SearchHeader,
    SearchKey,
    SearchKeyword,
    SearchModseq,
    SearchNot,
    SearchOr,
    SearchSequence,
    SearchSimple,
    SearchSize,
    SearchText,
    SearchUid,
    Section,
    Select,
    SetQuota,
    Status,
    Store,
    UnsupportedCharset,
    is_done,
    line_tag,
    message_literal,
    parse_command,
    pending_literal,
)
from relentad.imap.responses import flag_list, mailbox_name, render
from relentad.imap.sequence import SequenceSet

C = TypeVar("C", bound=Command)


def parse(line: bytes | str, kind: type[C], *, utf8: bool = False) -> C:
    """Parse one command line (CRLF added) and check its class."""
    raw = line.encode() if isinstance(line, str) else line
    command = parse_command(raw + b"\r\n", utf8=utf8)
    assert isinstance(command, kind), command
    return command


def bad(line: bytes | str, *, utf8: bool = False) -> ParseError:
    raw = line.encode() if isinstance(line, str) else line
    with pytest.raises(ParseError) as info:
        parse_command(raw + b"\r\n", utf8=utf8)
    return info.value


def seqset(text: str) -> SequenceSet:
    return SequenceSet.parse(text)


# -- framing ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "spec"),
    [
        (b"a1 LOGIN {5}\r\n", LiteralSpec(5, True, False)),
        (b"a1 LOGIN {5+}\r\n", LiteralSpec(5, False, False)),
        (b"a1 APPEND INBOX ~{12}\r\n", LiteralSpec(12, True, True)),
        (b"a1 APPEND INBOX ~{0+}\r\n", LiteralSpec(0, False, True)),
        (b"a1 APPEND INBOX {310}\n", LiteralSpec(310, True, False)),
        (b"bob}\r\n", None),
        (b"a1 NOOP\r\n", None),
        (b'a1 LOGIN "x" "{5}"\r\n', None),
        (b"a1 LOGIN {}\r\n", None),
        (b"a1 LOGIN {+}\r\n", None),
        (b"a1 LOGIN {-5}\r\n", None),
        (b"a1 LOGIN {5x}\r\n", None),
        (b"a1 LOGIN {" + b"9" * 30 + b"}\r\n", None),
        (b"", None),
    ],
)
def test_pending_literal(line: bytes, spec: LiteralSpec | None) -> None:
    assert pending_literal(line) == spec


@pytest.mark.parametrize(
    ("first", "opening", "expected"),
    [
        (b"a1 APPEND INBOX {310}\r\n", True, True),
        (b"a1 append INBOX (\\Seen) ~{12+}\r\n", True, True),
        (b"a1 APPEND {5}\r\n", True, False),  # the mailbox name
        (b"a1 APPEND {5+}\r\n", False, True),  # the message after it
        (b"a1 APPEND INBOX {3+}\r\n", False, True),  # MULTIAPPEND's next message
        (b"a1 LOGIN {5}\r\n", True, False),
        (b"a1 CREATE {5}\r\n", True, False),
    ],
)
def test_message_literal(first: bytes, opening: bool, expected: bool) -> None:
    assert message_literal(first, opening=opening) is expected


@pytest.mark.parametrize(
    ("line", "done"),
    [
        (b"DONE\r\n", True),
        (b"done\r\n", True),
        (b"DONE", True),
        (b"DONE \r\n", False),
        (b"a1 DONE\r\n", False),
        (b"\r\n", False),
    ],
)
def test_is_done(line: bytes, done: bool) -> None:
    assert is_done(line) is done


def test_line_tag() -> None:
    assert line_tag(b"a001 APPEND INBOX {99999999}\r\n") == "a001"
    assert line_tag(b"* BAD\r\n") is None
    assert line_tag(b"\r\n") is None
    assert line_tag(b"abc\r\n") is None


def test_literals_are_spliced_exactly() -> None:
    login = parse(b'a1 LOGIN {4}\r\nfr d {5+}\r\np"\\\r\n', Login)
    assert (login.username, login.password) == ("fr d", 'p"\\\r\n')


def test_final_crlf_is_optional() -> None:
    assert parse_command(b"a1 NOOP") == NoArgs(tag="a1", name="NOOP")
    assert parse_command(b"a1 NOOP\n") == NoArgs(tag="a1", name="NOOP")


# -- tag and command name ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "IDLE", "CHECK", "CLOSE", "UNSELECT", "NAMESPACE", "EXPUNGE"]
)
def test_commands_without_arguments(name: str) -> None:
    command = parse(f"x.1 {name.lower()}", NoArgs)
    assert command == NoArgs(tag="x.1", name=name)
    error = bad(f"x.1 {name} extra")
    assert error.tag == "x.1"
    assert error.text.startswith(f"{name}: expected end of command")


def test_tag_characters() -> None:
    assert parse("A]b.c-1 NOOP", NoArgs).tag == "A]b.c-1"


@pytest.mark.parametrize(
    ("line", "tag", "text"),
    [
        ("", None, "empty command line"),
        ("* NOOP", None, "missing or invalid tag"),
        ("+ NOOP", None, "missing or invalid tag"),
        ("(a NOOP", None, "missing or invalid tag"),
        ("a1", "a1", "expected a space and a command after the tag"),
        ("a1\tNOOP", None, "expected a space and a command after the tag"),
        ("a1 ", "a1", "expected command name"),
        ("a1  NOOP", "a1", "expected command name"),
        ("a1 FROB", "a1", "unknown command FROB"),
        ("a1 UID NOOP", "a1", "UID NOOP is not a command"),
        ("a1 UID", "a1", "expected space"),
    ],
)
def test_tag_and_name_errors(line: str, tag: str | None, text: str) -> None:
    error = bad(line)
    assert error.tag == tag
    assert text in error.text


def test_every_command_in_the_table_is_covered() -> None:
    assert set(COMMANDS) == {
        "CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "IDLE", "CHECK", "CLOSE", "UNSELECT", "NAMESPACE",
        "AUTHENTICATE", "LOGIN", "ENABLE", "SELECT", "EXAMINE", "CREATE", "DELETE", "RENAME", "SUBSCRIBE",
        "UNSUBSCRIBE", "LIST", "LSUB", "STATUS", "APPEND", "GETQUOTA", "GETQUOTAROOT", "SETQUOTA", "ID",
        "COMPRESS", "COPY", "MOVE", "FETCH", "SEARCH", "SORT", "THREAD", "STORE", "EXPUNGE",
        "REPLACE", "MYRIGHTS", "GETACL", "SETACL", "DELETEACL", "LISTRIGHTS",
    }  # fmt: skip


# -- not authenticated ------------------------------------------------------------------------------------------


def test_authenticate_without_initial_response() -> None:
    command = parse("a AUTHENTICATE plain", Authenticate)
    assert command == Authenticate(tag="a", name="AUTHENTICATE", mechanism="PLAIN", initial_response=None)


def test_authenticate_sasl_ir() -> None:
    assert parse("a AUTHENTICATE PLAIN AGJvYgBzZWNyZXQ=", Authenticate).initial_response == b"\0bob\0secret"
    assert parse("a AUTHENTICATE EXTERNAL =", Authenticate).initial_response == b""
    assert parse("a AUTHENTICATE SCRAM-SHA-256 biwsbj11c2VyLHI9ZnlrbytkMmxiYkZnT05Sdjlx", Authenticate).mechanism == (
        "SCRAM-SHA-256"
    )


@pytest.mark.parametrize(
    "line",
    [
        "a AUTHENTICATE",
        "a AUTHENTICATE PLAIN AGJvYg!",
        "a AUTHENTICATE PLAIN AGJ",
        "a AUTHENTICATE PLAIN ==",
        "a AUTHENTICATE PLAIN = x",
    ],
)
def test_authenticate_errors(line: str) -> None:
    assert bad(line).tag == "a"


def test_login() -> None:
    assert parse('a LOGIN fred "pass word"', Login) == Login(
        tag="a", name="LOGIN", username="fred", password="pass word"
    )
    assert parse('a LOGIN "ünï" {4}\r\npäs'.encode(), Login).password == "päs"
    assert parse("a LOGIN user@example.test ]x", Login).password == "]x"


@pytest.mark.parametrize(
    "line",
    [
        "a LOGIN fred",
        "a LOGIN fred  pw",
        "a LOGIN (fred) pw",
        b"a LOGIN fred \xff\xfe",
        'a LOGIN "fred pw',
        "a LOGIN fred pw extra",
        'a LOGIN "a\\b" pw',
    ],
)
def test_login_errors(line: str | bytes) -> None:
    assert bad(line).text.startswith("LOGIN: ")


def test_starttls_and_compress() -> None:
    assert parse("a COMPRESS deflate", Compress) == Compress(tag="a", name="COMPRESS", mechanism="DEFLATE")
    bad("a COMPRESS")


def test_enable() -> None:
    command = parse("a ENABLE condstore QRESYNC UTF8=ACCEPT IMAP4rev2 condstore", Enable)
    assert command.capabilities == ("CONDSTORE", "QRESYNC", "UTF8=ACCEPT", "IMAP4REV2")
    bad("a ENABLE")
    bad("a ENABLE (x)")


def test_id() -> None:
    assert parse("a ID NIL", Id).params is None
    assert parse("a ID ()", Id).params == ()
    command = parse('a ID ("name" "Thunderbird" "version" {4}\r\n91.0 "os" NIL)', Id)
    assert command.params == (("name", "Thunderbird"), ("version", "91.0"), ("os", None))
    bad('a ID ("name")')
    bad('a ID (name "x")')
    bad("a ID")


# -- mailbox names ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "name"),
    [
        ("INBOX", "INBOX"),
        ("inbox", "INBOX"),
        ('"InBoX"', "INBOX"),
        ("inbox/Sub", "INBOX/Sub"),
        ("inboxes", "inboxes"),
        ("Sent", "Sent"),
        ('"Sent Items"', "Sent Items"),
        ("&ZeVnLIqe-", "日本語"),
        ("Tom&-Jerry", "Tom&Jerry"),
        ("{3}\r\na b", "a b"),
        ('""', ""),
        ("a]b", "a]b"),
    ],
)
def test_mailbox_names(wire: str, name: str) -> None:
    assert parse(f"a DELETE {wire}", MailboxCommand).mailbox == name


def test_mailbox_utf8_mode() -> None:
    assert parse('a SELECT "Entwürfe"', Select, utf8=True).mailbox == "Entwürfe"
    # in UTF8=ACCEPT mode "&" is an ordinary character
    assert parse("a SELECT Tom&-Jerry", Select, utf8=True).mailbox == "Tom&-Jerry"


@pytest.mark.parametrize("wire", ["&ZeVnLIqe", "&AGE-", '"Entwürfe"', '"a\\"b\x01"', "{3}\r\na\x00b", "(x)", ""])
def test_bad_mailbox_names(wire: str) -> None:
    assert bad(f"a DELETE {wire}").tag == "a"


def test_mailbox_utf8_mode_rejects_invalid_utf8() -> None:
    assert "UTF-8" in bad(b'a SELECT "\xff"', utf8=True).text


def test_bad_mailbox_name_messages() -> None:
    assert "modified UTF-7" in bad("a SELECT &AGE-").text
    assert "8-bit" in bad('a SELECT "Entwürfe"').text
    assert "control characters" in bad("a SELECT {3}\r\na\tb", utf8=True).text
    assert "modified UTF-7" in bad("a SELECT {3}\r\na\tb").text


# -- authenticated state ----------------------------------------------------------------------------------------


def test_select_and_examine() -> None:
    assert parse("a SELECT inbox", Select) == Select(tag="a", name="SELECT", mailbox="INBOX")
    examine = parse("a EXAMINE Drafts", Select)
    assert examine.readonly
    assert examine.name == "EXAMINE"


def test_select_condstore() -> None:
    assert parse("a SELECT INBOX (CONDSTORE)", Select).condstore


def test_select_qresync_full() -> None:
    command = parse("A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541 (1:5 4:10)))", Select)
    assert command.qresync == Qresync(
        uidvalidity=67890007,
        modseq=20050715194045000,
        known_uids=seqset("41,43:211,214:541"),
        seq_match=(seqset("1:5"), seqset("4:10")),
    )


@pytest.mark.parametrize(
    ("params", "known", "match"),
    [
        ("(QRESYNC (1 2))", None, None),
        ("(QRESYNC (1 2 1:*))", seqset("1:*"), None),
        ("(QRESYNC (1 2 (1,3 5,9)))", None, (seqset("1,3"), seqset("5,9"))),
        ("(CONDSTORE QRESYNC (1 2))", None, None),
    ],
)
def test_select_qresync_variants(params: str, known: SequenceSet | None, match: object) -> None:
    qresync = parse(f"a SELECT INBOX {params}", Select).qresync
    assert qresync is not None
    assert (qresync.uidvalidity, qresync.modseq, qresync.known_uids, qresync.seq_match) == (1, 2, known, match)


@pytest.mark.parametrize(
    "params",
    [
        "()",
        "(FOO)",
        "(QRESYNC)",
        "(QRESYNC (0 1))",
        "(QRESYNC (1 0))",
        "(QRESYNC (1))",
        "(QRESYNC (1 2 $))",
        "(QRESYNC (1 2) QRESYNC (1 2))",
        "(CONDSTORE",
        "CONDSTORE",
        "(QRESYNC (1 2 (1:5)))",
    ],
)
def test_select_errors(params: str) -> None:
    assert bad(f"a SELECT INBOX {params}").text.startswith("SELECT: ")


def test_create() -> None:
    assert parse("a CREATE owatagusiam/", Create) == Create(tag="a", name="CREATE", mailbox="owatagusiam/")
    command = parse("a CREATE MySpecial (USE (\\drafts \\Sent \\Drafts))", Create)
    assert command.special_use == ("\\Drafts", "\\Sent")
    assert parse("a CREATE Foo (USE ())", Create).special_use == ()


@pytest.mark.parametrize("suffix", ["(FOO (x))", "()", "(USE \\Drafts)", "(USE (Drafts))"])
def test_create_errors(suffix: str) -> None:
    bad(f"a CREATE x {suffix}")


def test_create_keeps_an_unknown_use_attribute_for_the_handler_to_refuse() -> None:
    """``\\Bogus`` is valid syntax (use-attr-ext): the answer is NO [USEATTR] (RFC 6154 §3), not BAD."""
    assert parse("a CREATE x (USE (\\Bogus \\sent))", Create).special_use == ("\\Bogus", "\\Sent")


@pytest.mark.parametrize("name", ["DELETE", "SUBSCRIBE", "UNSUBSCRIBE", "GETQUOTAROOT"])
def test_single_mailbox_commands(name: str) -> None:
    assert parse(f"a {name} blurdybloop", MailboxCommand) == MailboxCommand(tag="a", name=name, mailbox="blurdybloop")
    bad(f"a {name}")


def test_rename() -> None:
    assert parse("a RENAME inbox/x &ZeVnLIqe-", Rename) == Rename(
        tag="a", name="RENAME", source="INBOX/x", destination="日本語"
    )
    bad("a RENAME onlyone")


def test_list_basic() -> None:
    command = parse('a LIST "" "%"', List)
    assert command == List(tag="a", name="LIST", reference="", patterns=("%",))
    assert not command.extended
    assert parse("a LIST ~/Mail/ %/*", List).patterns == ("%/*",)
    assert parse("a LIST #news. comp.mail.*", List).reference == "#news."
    assert parse('a LIST "" &ZeVnLIqe-/*', List).patterns == ("日本語/*",)
    assert parse('a LIST "" a]%', List).patterns == ("a]%",)


def test_list_extended() -> None:
    command = parse(
        'a LIST (SUBSCRIBED RECURSIVEMATCH) "" ("INBOX" "foo/%") RETURN (CHILDREN STATUS (MESSAGES UNSEEN))', List
    )
    assert command.extended
    assert command.selection == {"SUBSCRIBED", "RECURSIVEMATCH"}
    assert command.patterns == ("INBOX", "foo/%")
    assert command.returns == {"CHILDREN", "STATUS"}
    assert command.status_items == ("MESSAGES", "UNSEEN")


def test_list_extended_variants() -> None:
    assert parse('a LIST () "" %', List).extended
    assert parse('a LIST (special-use) "" *', List).selection == {"SPECIAL-USE"}
    assert parse('a LIST (REMOTE) "" *', List).selection == {"REMOTE"}
    assert parse('a LIST "" % RETURN ()', List).returns == frozenset()
    assert parse('a LIST "" % RETURN (SPECIAL-USE SUBSCRIBED)', List).returns == {"SPECIAL-USE", "SUBSCRIBED"}


@pytest.mark.parametrize(
    "args",
    [
        '(FOO) "" %',
        '(RECURSIVEMATCH) "" %',
        '(RECURSIVEMATCH REMOTE) "" %',
        '"" % RETURN (FOO)',
        '"" % STATUS (x)',
        '"" % RETURN (STATUS (BOGUS))',
        '"" % RETURN (STATUS)',
        '"" ()',
        '""',
        "",
        '"" % RETURN',
    ],
)
def test_list_errors(args: str) -> None:
    assert bad(f"a LIST {args}".rstrip()).text.startswith("LIST: ")


def test_lsub() -> None:
    assert parse('a LSUB "news." "comp.mail.*"', List) == List(
        tag="a", name="LSUB", reference="news.", patterns=("comp.mail.*",)
    )
    bad('a LSUB (SUBSCRIBED) "" %')


def test_namespace() -> None:
    assert parse("a NAMESPACE", NoArgs).name == "NAMESPACE"


def test_status() -> None:
    command = parse(
        "a STATUS blurdybloop (UIDNEXT messages RECENT UIDVALIDITY UNSEEN DELETED SIZE HIGHESTMODSEQ APPENDLIMIT)",
        Status,
    )
    assert command.items == (
        "UIDNEXT", "MESSAGES", "RECENT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE", "HIGHESTMODSEQ", "APPENDLIMIT",
    )  # fmt: skip
    assert command.mailbox == "blurdybloop"


@pytest.mark.parametrize("args", ["INBOX ()", "INBOX (FOO)", "INBOX MESSAGES", "INBOX", "(MESSAGES)"])
def test_status_errors(args: str) -> None:
    bad(f"a STATUS {args}")


def test_append_simple() -> None:
    command = parse("A003 APPEND saved-messages (\\Seen) {23}\r\nFrom: x\r\nSubject: y\r\n\r\n", Append)
    assert command.mailbox == "saved-messages"
    assert command.messages == (AppendMessage(data=b"From: x\r\nSubject: y\r\n\r\n", flags=("\\Seen",)),)


def test_append_with_date_and_no_flags() -> None:
    command = parse('a APPEND INBOX " 7-Feb-1994 21:52:25 -0800" {2+}\r\nhi', Append)
    message = command.messages[0]
    assert message.date == datetime(1994, 2, 7, 21, 52, 25, tzinfo=timezone(-timedelta(hours=8)))
    assert message.flags == ()
    assert message.data == b"hi"


def test_append_flags_and_date() -> None:
    command = parse('a APPEND INBOX (\\draft $Forwarded) "17-Jul-1996 02:44:25 +0530" {1}\r\nx', Append)
    message = command.messages[0]
    assert message.flags == ("\\Draft", "$Forwarded")
    assert message.date == datetime(1996, 7, 17, 2, 44, 25, tzinfo=timezone(timedelta(hours=5, minutes=30)))


def test_append_binary_literal() -> None:
    message = parse(b"a APPEND INBOX ~{3}\r\n\x00\x01\x02", Append).messages[0]
    assert message.binary
    assert message.data == b"\x00\x01\x02"


def test_append_utf8_extension() -> None:
    message = parse("a APPEND INBOX UTF8 (~{3}\r\nhé)".encode(), Append).messages[0]
    assert message.binary
    assert message.data == "hé".encode()


def test_multiappend() -> None:
    command = parse('a APPEND INBOX (\\Seen) {1}\r\nx "1-Jan-2020 00:00:00 +0000" {1}\r\ny {0}\r\n', Append)
    assert [m.data for m in command.messages] == [b"x", b"y", b""]
    assert command.messages[1].date == datetime(2020, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("args", "text"),
    [
        ("INBOX {9}\r\nabc", "shorter than its announced size"),
        ("INBOX (\\Recent) {1}\r\nx", "\\Recent cannot be set"),
        ("INBOX (\\Bogus) {1}\r\nx", "unknown system flag"),
        ('INBOX "31-Feb-2020 00:00:00 +0000" {1}\r\nx', "no such date"),
        ('INBOX "1-Foo-2020 00:00:00 +0000" {1}\r\nx', "month name"),
        ('INBOX "1-Jan-2020 25:00:00 +0000" {1}\r\nx', "no such date or time"),
        ('INBOX "1-Jan-2020 00:00:00 +2400" {1}\r\nx', "invalid time zone"),
        ('INBOX "1-Jan-2020 00:00:00" {1}\r\nx', "space"),
        ('INBOX "1-Jan-20 00:00:00 +0000" {1}\r\nx', "four-digit year"),
        ("INBOX x", "expected literal"),
        ("INBOX", "space"),
        ("INBOX {1}\r\nxy", "expected space"),
        ("INBOX {1}x", "CRLF after literal size"),
    ],
)
def test_append_errors(args: str, text: str) -> None:
    error = bad(f"a APPEND {args}")
    assert error.tag == "a"
    assert text in error.text


# -- quota ------------------------------------------------------------------------------------------------------


def test_getquota_and_setquota() -> None:
    assert parse('a GETQUOTA ""', GetQuota) == GetQuota(tag="a", name="GETQUOTA", root="")
    command = parse('a SETQUOTA "" (storage 512 MESSAGE 1000)', SetQuota)
    assert command.limits == (("STORAGE", 512), ("MESSAGE", 1000))
    assert parse("a SETQUOTA x ()", SetQuota).limits == ()
    bad("a SETQUOTA x (STORAGE)")
    bad("a SETQUOTA x (STORAGE -1)")


# -- selected state ---------------------------------------------------------------------------------------------


def test_uid_expunge() -> None:
    command = parse("a UID EXPUNGE 3000:3002", Expunge)
    assert command == Expunge(tag="a", name="EXPUNGE", uid=True, sequence_set=seqset("3000:3002"))
    bad("a UID EXPUNGE")
    bad("a EXPUNGE 1:2")


def test_copy_and_move() -> None:
    assert parse("a COPY 2:4 MEETING", CopyMove) == CopyMove(
        tag="a", name="COPY", sequence_set=seqset("2:4"), mailbox="MEETING"
    )
    move = parse("a UID MOVE 42:69 inbox", CopyMove)
    assert (move.name, move.uid, move.mailbox) == ("MOVE", True, "INBOX")
    assert parse("a MOVE $ Trash", CopyMove).sequence_set.saved
    for line in ("a COPY 2:4", "a COPY x Trash", "a MOVE 0 Trash", "a COPY 1:2,", "a UID COPY 1"):
        bad(line)


def test_store_variants() -> None:
    command = parse("A003 STORE 2:4 +FLAGS (\\Deleted)", Store)
    assert (command.action, command.silent, command.flags) == ("add", False, ("\\Deleted",))
    command = parse("a UID STORE 1:* -flags.silent \\seen $Junk", Store)
    assert (command.uid, command.action, command.silent, command.flags) == (True, "remove", True, ("\\Seen", "$Junk"))
    assert parse("a STORE 1 FLAGS ()", Store).action == "replace"
    assert parse("a STORE 1 FLAGS.SILENT (\\Answered \\Flagged \\Draft NonJunk)", Store).flags == (
        "\\Answered", "\\Flagged", "\\Draft", "NonJunk",
    )  # fmt: skip


def test_store_unchangedsince() -> None:
    command = parse("a UID STORE 1 (UNCHANGEDSINCE 12121230045) +FLAGS.SILENT (\\Deleted)", Store)
    assert command.unchanged_since == 12121230045
    assert parse("a STORE 1 (UNCHANGEDSINCE 0) FLAGS ()", Store).unchanged_since == 0


@pytest.mark.parametrize(
    ("args", "text"),
    [
        ("1 +FLAGS (\\Recent)", "\\Recent cannot be set"),
        ("1 +FLAGS (\\Foo)", "unknown system flag"),
        ("1 FLAGS.LOUD (\\Seen)", "expected FLAGS, +FLAGS or -FLAGS"),
        ("1 *FLAGS (\\Seen)", "expected FLAGS"),
        ("1 LABELS (x)", "expected FLAGS"),
        ("1 +FLAGS", "expected space"),
        ("1 +FLAGS (\\Seen", 'space or ")"'),
        ("1 +FLAGS (a b))", "end of command"),
        ("1 (UNCHANGEDSINCE x) FLAGS ()", "mod-sequence value"),
        ("1 (FOO 1) FLAGS ()", "STORE modifier"),
        ("1 (UNCHANGEDSINCE 1 UNCHANGEDSINCE 2) FLAGS ()", "repeated"),
        ("1 +FLAGS (%)", "flag"),
    ],
)
def test_store_errors(args: str, text: str) -> None:
    error = bad(f"a STORE {args}")
    assert text in error.text, error.text


# -- FETCH ------------------------------------------------------------------------------------------------------


def attributes(text: str) -> tuple[FetchItem | FetchBody, ...]:
    return parse(f"a FETCH 1 {text}", Fetch).attributes


@pytest.mark.parametrize(
    "name",
    [
        "ENVELOPE",
        "FLAGS",
        "INTERNALDATE",
        "RFC822",
        "RFC822.HEADER",
        "RFC822.SIZE",
        "RFC822.TEXT",
        "BODY",
        "BODYSTRUCTURE",
        "UID",
        "MODSEQ",
        "SAVEDATE",
    ],
)
def test_fetch_simple_items(name: str) -> None:
    assert attributes(name.lower()) == (FetchItem(name),)
    assert attributes(f"({name})") == (FetchItem(name),)


@pytest.mark.parametrize(
    ("macro", "names"),
    [
        ("ALL", ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"]),
        ("fast", ["FLAGS", "INTERNALDATE", "RFC822.SIZE"]),
        ("FULL", ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"]),
    ],
)
def test_fetch_macros(macro: str, names: list[str]) -> None:
    assert attributes(macro) == tuple(FetchItem(n) for n in names)


def test_macros_are_not_allowed_in_lists() -> None:
    bad("a FETCH 1 (ALL)")
    bad("a FETCH 1 (FLAGS FAST)")


@pytest.mark.parametrize(
    ("text", "expected", "reply"),
    [
        ("BODY[]", FetchBody("BODY", Section()), "BODY[]"),
        ("body.peek[]", FetchBody("BODY", Section(), peek=True), "BODY[]"),
        ("BODY[HEADER]", FetchBody("BODY", Section(text="HEADER")), "BODY[HEADER]"),
        ("BODY[text]", FetchBody("BODY", Section(text="TEXT")), "BODY[TEXT]"),
        ("BODY[1]", FetchBody("BODY", Section(part=(1,))), "BODY[1]"),
        ("BODY[1.2.3]", FetchBody("BODY", Section(part=(1, 2, 3))), "BODY[1.2.3]"),
        ("BODY[1.2.MIME]", FetchBody("BODY", Section(part=(1, 2), text="MIME")), "BODY[1.2.MIME]"),
        ("BODY[3.HEADER]", FetchBody("BODY", Section(part=(3,), text="HEADER")), "BODY[3.HEADER]"),
        ("BODY[4.2.TEXT]", FetchBody("BODY", Section(part=(4, 2), text="TEXT")), "BODY[4.2.TEXT]"),
        (
            "BODY.PEEK[HEADER.FIELDS (DATE FROM)]",
            FetchBody("BODY", Section(text="HEADER.FIELDS", fields=("DATE", "FROM")), peek=True),
            "BODY[HEADER.FIELDS (DATE FROM)]",
        ),
        (
            'BODY[2.HEADER.FIELDS.NOT ("Subject" {4}\r\nX-Yz)]',
            FetchBody("BODY", Section(part=(2,), text="HEADER.FIELDS.NOT", fields=("Subject", "X-Yz"))),
            "BODY[2.HEADER.FIELDS.NOT (Subject X-Yz)]",
        ),
        ("BODY[]<0.2048>", FetchBody("BODY", Section(), partial=Partial(0, 2048)), "BODY[]<0>"),
        (
            "BODY.PEEK[1.TEXT]<100.50>",
            FetchBody("BODY", Section(part=(1,), text="TEXT"), peek=True, partial=Partial(100, 50)),
            "BODY[1.TEXT]<100>",
        ),
        ("BINARY[]", FetchBody("BINARY", Section()), "BINARY[]"),
        ("BINARY[1.2]", FetchBody("BINARY", Section(part=(1, 2))), "BINARY[1.2]"),
        (
            "BINARY.PEEK[1]<0.10>",
            FetchBody("BINARY", Section(part=(1,)), peek=True, partial=Partial(0, 10)),
            "BINARY[1]<0>",
        ),
        ("BINARY.SIZE[3]", FetchBody("BINARY.SIZE", Section(part=(3,))), "BINARY.SIZE[3]"),
        ("BINARY.SIZE[]", FetchBody("BINARY.SIZE", Section()), "BINARY.SIZE[]"),
    ],
)
def test_fetch_sections(text: str, expected: FetchBody, reply: str) -> None:
    (attribute,) = attributes(text)
    assert attribute == expected
    assert attribute.reply_name() == reply
    assert attributes(f"(UID {text})") == (FetchItem("UID"), expected)


def test_fetch_sets_seen() -> None:
    assert FetchBody("BODY", Section()).sets_seen
    assert not FetchBody("BODY", Section(), peek=True).sets_seen
    assert not FetchBody("BINARY.SIZE", Section()).sets_seen
    assert FetchItem("FLAGS").reply_name() == "FLAGS"


def test_header_field_names_with_specials_are_quoted_in_replies() -> None:
    (attribute,) = attributes('BODY[HEADER.FIELDS ("X%Y")]')
    assert attribute.reply_name() == 'BODY[HEADER.FIELDS ("X%Y")]'


def test_fetch_full_example() -> None:
    command = parse("A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])", Fetch)
    assert command.sequence_set == seqset("2:4")
    assert command.attributes == (
        FetchItem("FLAGS"),
        FetchBody("BODY", Section(text="HEADER.FIELDS", fields=("DATE", "FROM"))),
    )
    assert command.changed_since is None
    assert not command.vanished


def test_fetch_modifiers() -> None:
    command = parse("a UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)", Fetch)
    assert (command.uid, command.changed_since, command.vanished) == (True, 12345, True)
    assert parse("a FETCH 1:* FLAGS (changedsince 7)", Fetch).changed_since == 7
    assert parse("a FETCH $ FLAGS", Fetch).sequence_set.saved


@pytest.mark.parametrize(
    ("args", "text"),
    [
        ("1 FLAGS (VANISHED)", "VANISHED requires UID FETCH and CHANGEDSINCE"),
        ("1 FLAGS (CHANGEDSINCE 1 VANISHED)", "VANISHED requires"),
        ("1 FLAGS (FOO)", "FETCH modifier"),
        ("1 FLAGS ()", "non-empty list"),
        ("1 FLAGS (CHANGEDSINCE 1 CHANGEDSINCE 2)", "repeated"),
        ("1 FLAGS (CHANGEDSINCE 99999999999999999999)", "too large"),
        ("1 ()", "non-empty list"),
        ("1 (FLAGS", 'space or ")"'),
        ("1 FLAGGED", "fetch attribute"),
        ("1 BODY[", '"]" closing the section'),
        ("1 BODY[0]", "non-zero"),
        ("1 BODY[01]", "non-zero"),
        ("1 BODY[1.0]", "non-zero"),
        ("1 BODY[MIME]", "invalid section"),
        ("1 BODY[HEADER.FIELDS]", "space"),
        ("1 BODY[HEADER.FIELDS ()]", "non-empty list"),
        ("1 BODY[HEADER.FIELDS (a:b)]", "invalid header field name"),
        ('1 BODY[HEADER.FIELDS ("")]', "invalid header field name"),
        ("1 BODY[FOO]", "invalid section"),
        ("1 BODY[1.FOO]", "invalid section"),
        ("1 BODY[HEADER", '"]" closing the section'),
        ("1 BODY[]<0>", '"."'),
        ("1 BODY[]<0.0>", "partial length"),
        ("1 BODY[]<a.1>", "partial offset"),
        ("1 BODY[]<1.1", '">"'),
        ("1 BINARY[HEADER]", "invalid section"),
        ("1 BINARY[1.MIME]", "invalid section"),
        ("1 BINARY.SIZE", "fetch attribute"),
        ("1 BINARY.SIZE[1]<0.1>", "end of command"),
        ("1 RFC822.PEEK", "fetch attribute"),
        ("1 UID[1]", "fetch attribute"),
        ("0 FLAGS", "sequence set"),
        ("FLAGS", "sequence set"),
        ("1", "space"),
        ("1,,2 FLAGS", "sequence set"),
    ],
)
def test_fetch_errors(args: str, text: str) -> None:
    error = bad(f"a FETCH {args}")
    assert error.tag == "a"
    assert error.text.startswith("FETCH: ")
    assert text in error.text, error.text


def test_uid_fetch_error_prefix() -> None:
    assert bad("a UID FETCH x FLAGS").text.startswith("UID FETCH: ")


# -- SEARCH -----------------------------------------------------------------------------------------------------


def search_key(text: str | bytes, *, charset: str | None = None) -> SearchKey:
    prefix = b"a SEARCH " + (f"CHARSET {charset} ".encode() if charset else b"")
    return parse(prefix + (text.encode() if isinstance(text, str) else text), Search).key


@pytest.mark.parametrize(
    "key",
    [
        "ALL",
        "ANSWERED",
        "DELETED",
        "DRAFT",
        "FLAGGED",
        "NEW",
        "OLD",
        "RECENT",
        "SEEN",
        "UNANSWERED",
        "UNDELETED",
        "UNDRAFT",
        "UNFLAGGED",
        "UNSEEN",
        "SAVEDATESUPPORTED",
    ],
)
def test_search_simple_keys(key: str) -> None:
    assert search_key(key.lower()) == SearchSimple(key)


@pytest.mark.parametrize("key", ["BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO"])
def test_search_text_keys(key: str) -> None:
    assert search_key(f'{key} "Smith, J"') == SearchText(key, "Smith, J")
    assert search_key(f"{key} smith") == SearchText(key, "smith")
    assert search_key(f"{key} {{5}}\r\nSmi h") == SearchText(key, "Smi h")


@pytest.mark.parametrize(
    "key", ["BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE", "SAVEDBEFORE", "SAVEDON", "SAVEDSINCE"]
)
def test_search_date_keys(key: str) -> None:
    assert search_key(f"{key} 1-Feb-1994") == SearchDate(key, date(1994, 2, 1))
    assert search_key(f'{key} "21-jul-2024"') == SearchDate(key, date(2024, 7, 21))


@pytest.mark.parametrize("key", ["KEYWORD", "UNKEYWORD"])
def test_search_keyword_keys(key: str) -> None:
    assert search_key(f"{key} $Junk") == SearchKeyword(key, "$Junk")
    assert search_key(f"{key} \\seen") == SearchKeyword(key, "\\Seen")


@pytest.mark.parametrize("key", ["LARGER", "SMALLER"])
def test_search_size_keys(key: str) -> None:
    assert search_key(f"{key} 10000") == SearchSize(key, 10000)
    assert search_key(f"{key} 9999999999") == SearchSize(key, 9999999999)


@pytest.mark.parametrize("key", ["OLDER", "YOUNGER"])
def test_search_age_keys(key: str) -> None:
    assert search_key(f"{key} 3600") == SearchAge(key, 3600)


def test_search_header() -> None:
    assert search_key('HEADER Message-ID "<x@y>"') == SearchHeader("Message-ID", "<x@y>")
    assert search_key('HEADER X-Spam ""') == SearchHeader("X-Spam", "")


def test_search_sequences_and_uids() -> None:
    assert search_key("2:4,7") == SearchSequence(seqset("2:4,7"))
    assert search_key("*") == SearchSequence(seqset("*"))
    assert search_key("$") == SearchSequence(seqset("$"))
    assert search_key("UID 1:*") == SearchUid(seqset("1:*"))
    assert search_key("UID $") == SearchUid(seqset("$"))


def test_search_modseq() -> None:
    assert search_key("MODSEQ 620162338") == SearchModseq(620162338)
    assert search_key('MODSEQ "/flags/\\\\draft" all 620162338') == SearchModseq(620162338, "/flags/\\draft", "all")
    assert search_key('MODSEQ "/flags/$Junk" PRIV 5') == SearchModseq(5, "/flags/$Junk", "priv")


def test_search_not_or_and_nesting() -> None:
    assert search_key("NOT SEEN") == SearchNot(SearchSimple("SEEN"))
    assert search_key("OR SEEN FLAGGED") == SearchOr(SearchSimple("SEEN"), SearchSimple("FLAGGED"))
    assert search_key('FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"') == SearchAnd(
        (SearchSimple("FLAGGED"), SearchDate("SINCE", date(1994, 2, 1)), SearchNot(SearchText("FROM", "Smith")))
    )
    assert search_key("OR (SEEN FLAGGED) (NOT DELETED 1:3)") == SearchOr(
        SearchAnd((SearchSimple("SEEN"), SearchSimple("FLAGGED"))),
        SearchAnd((SearchNot(SearchSimple("DELETED")), SearchSequence(seqset("1:3")))),
    )
    assert search_key("((((ALL))))") == SearchSimple("ALL")
    assert search_key("NOT (OR NOT 1 UID 2 NEW)") == SearchNot(
        SearchAnd((SearchOr(SearchNot(SearchSequence(seqset("1"))), SearchUid(seqset("2"))), SearchSimple("NEW")))
    )


def test_search_depth_limit() -> None:
    assert isinstance(search_key("(" * 99 + "ALL" + ")" * 99), SearchSimple)
    for text in ("(" * 101 + "ALL" + ")" * 101, "NOT " * 5000 + "ALL", "OR ALL " * 5000 + "ALL", "(" * 50000):
        assert "nesting deeper than 100" in bad(f"a SEARCH {text}").text


def test_search_return_and_charset() -> None:
    command = parse("a UID SEARCH RETURN (MIN MAX COUNT ALL SAVE) CHARSET utf-8 UNSEEN", Search)
    assert command.uid
    assert command.returns == ("MIN", "MAX", "COUNT", "ALL", "SAVE")
    assert command.charset == "UTF-8"
    assert command.key == SearchSimple("UNSEEN")
    assert parse("a SEARCH RETURN () ALL", Search).returns == ("ALL",)
    assert parse("a SEARCH ALL", Search).returns is None
    assert parse('a SEARCH CHARSET "US-ASCII" ALL', Search).charset == "US-ASCII"


def test_search_charsets_decode_strings() -> None:
    assert search_key(b"TEXT {4}\r\nGr\xfc\xdf", charset="ISO-8859-1") == SearchText("TEXT", "Grüß")
    assert search_key("SUBJECT {6}\r\nGrüß".encode()) == SearchText("SUBJECT", "Grüß")
    assert search_key(b'SUBJECT "\xe2\x82\xac"', charset="UTF-8") == SearchText("SUBJECT", "€")


@pytest.mark.parametrize("charset", ["KLINGON", "base64", "rot13", "idna", "undefined", '"x y"'])
def test_search_unknown_charset(charset: str) -> None:
    with pytest.raises(UnsupportedCharset) as info:
        parse_command(f"a SEARCH CHARSET {charset} TEXT x\r\n".encode())
    assert info.value.tag == "a"
    assert info.value.charset


@pytest.mark.parametrize(
    ("args", "text"),
    [
        ("", "search key"),
        ("FOO", "unknown search key FOO"),
        ("FROM", "expected space"),
        ("SEEN  UNSEEN", "search key"),
        ("(SEEN", 'space or ")"'),
        ("()", "non-empty list"),
        ("SEEN)", "end of command"),
        ("OR SEEN", "expected space"),
        ("NOT", "expected space"),
        ("SINCE 31-Feb-2020", "no such date"),
        ("SINCE 1-Febr-2020", '"-" after month'),
        ("SINCE 1/2/2020", '"-" after day'),
        ("SINCE 123-Feb-2020", "day of month"),
        ('SINCE "1-Feb-2020', "closing quote"),
        ("LARGER x", "size"),
        ("LARGER 99999999999999999999", "too large"),
        ("OLDER 0", "non-zero"),
        ("UID x", "UID set"),
        ("UID 1:", "UID set"),
        ("HEADER a:b x", "invalid header field name"),
        ("HEADER Subject", "expected space"),
        ("KEYWORD \\Bogus", "unknown system flag"),
        ('MODSEQ "/x" all 1', "must start with"),
        ('MODSEQ "/flags/x" mine 1', "priv, shared or all"),
        ("MODSEQ x", "mod-sequence value"),
        ("RETURN (FOO) ALL", "unknown search return option"),
        ("RETURN ALL", '"("'),
        (b"CHARSET UTF-8 TEXT {2}\r\n\xff\xfe", "not valid UTF-8"),
        (b'TEXT "\xff"', "not valid UTF-8"),
        ('TEXT "a', "CR, LF and NUL are not allowed"),
        ('TEXT "a\\n"', "may be escaped"),
        ("0", "sequence set"),
        ("1,$", "sequence set"),
    ],
)
def test_search_errors(args: str | bytes, text: str) -> None:
    raw = args if isinstance(args, bytes) else args.encode()
    error = bad(b"t1 SEARCH " + raw)
    assert error.tag == "t1"
    assert text in error.text, error.text


def test_unterminated_quoted_string() -> None:
    with pytest.raises(ParseError, match="unterminated quoted string"):
        parse_command(b'a SEARCH TEXT "abc')


def test_errors_show_what_was_found() -> None:
    assert bad("a FETCH 1 NOPE").text == 'FETCH: expected fetch attribute, found "NOPE"'
    assert bad(b"a SEARCH \x01").text == 'SEARCH: expected search key, found "?"'


def test_errors_never_contain_line_breaks() -> None:
    text = bad(b"a SEARCH FOO\r\nBAR\r\n").text
    assert "\r" not in text and "\n" not in text


# -- fuzzing ----------------------------------------------------------------------------------------------------

TOKENS = [
    b"a1", b" ", b"UID", b"FETCH", b"SEARCH", b"STORE", b"LIST", b"SELECT", b"APPEND", b"(", b")", b"{3}\r\n",
    b"{0+}\r\n", b"~{2}\r\n", b'"', b"\\", b"1:*", b"$", b"*", b"1", b"0", b"99999999999", b"BODY[", b"]", b"<",
    b">", b".", b"HEADER.FIELDS", b"NOT", b"OR", b"RETURN", b"CHARSET", b"UTF-8", b"&", b"-", b"&AGE-", b"\r\n",
    b"FLAGS", b"+FLAGS", b"\\Seen", b"1-Feb-1994", b'"17-Jul-1996 02:44:25 -0700"', b"QRESYNC", b"CONDSTORE",
    b"MODSEQ", b"HEADER", b"\xff", b"\x00", b"NIL", b"ID", b"AUTHENTICATE", b"=", b"STATUS", b"MESSAGES",
    b"CREATE", b"USE", b"\\Drafts", b"SETQUOTA", b"CHANGEDSINCE", b"VANISHED", b"UNCHANGEDSINCE", b"BINARY",
    b"BINARY.SIZE", b"[1.2]", b"EXPUNGE", b"COPY", b"MOVE", b"INBOX", b"ENABLE", b"LOGIN", b"COMPRESS", b"RENAME",
    b"LSUB", b"%", b"UTF8", b"KEYWORD", b"LARGER", b"OLDER", b"SINCE", b"TEXT", b"MIME", b"EXAMINE", b"GETQUOTA",
]  # fmt: skip


@settings(max_examples=300)
@given(st.binary(max_size=200), st.booleans())
def test_random_bytes_only_raise_parse_error(data: bytes, utf8: bool) -> None:
    for buffer in (data, b"a1 " + data, b"a1 UID " + data):
        try:
            parse_command(buffer, utf8=utf8)
        except ParseError as exc:
            assert "\r" not in exc.text and "\n" not in exc.text
    pending_literal(data)
    is_done(data)
    line_tag(data)


@settings(max_examples=300)
@given(st.lists(st.sampled_from(TOKENS), max_size=16), st.booleans())
def test_token_soup_only_raises_parse_error(tokens: list[bytes], utf8: bool) -> None:
    buffer = b"a1 " + b"".join(tokens)
    for candidate in (buffer, buffer + b"\r\n"):
        try:
            command = parse_command(candidate, utf8=utf8)
        except ParseError as exc:
            assert exc.tag in (None, "a1")
        else:
            assert command.tag == "a1"
            assert command.name == command.name.upper()


names = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xD7FF) | st.characters(min_codepoint=0xE000),
    max_size=30,
).filter(lambda name: "\x7f" not in name)


@given(names, st.booleans())
def test_rendered_mailbox_names_parse_back(name: str, utf8: bool) -> None:
    command = parse(b"a SELECT " + mailbox_name(name, utf8=utf8), Select, utf8=utf8)
    head, sep, tail = name.partition("/")
    expected = "INBOX" + sep + tail if head.upper() == "INBOX" else name
    assert command.mailbox == expected


@given(st.lists(st.sampled_from(["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "$Junk", "Work"])))
def test_rendered_flag_lists_parse_back(flags: list[str]) -> None:
    command = parse(b"a STORE 1 FLAGS " + render(flag_list(flags)), Store)
    assert command.flags == tuple(dict.fromkeys(flags))


# -- generated search programs round-trip ---------------------------------------------------------------------

_MONTH_NAMES = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_words = st.text(alphabet="abcXYZ019 .,@<>-_", max_size=12)
_atoms = st.text(alphabet="abcXYZ019$_-.", min_size=1, max_size=8)
_sets = st.lists(st.tuples(st.integers(1, 99) | st.none(), st.integers(1, 99) | st.none()), min_size=1, max_size=3).map(
    lambda ranges: SequenceSet(tuple(ranges))
)

_leaves: st.SearchStrategy[SearchKey] = st.one_of(
    st.sampled_from(sorted(["ALL", "ANSWERED", "DELETED", "SEEN", "UNSEEN", "NEW", "OLD", "RECENT", "DRAFT"])).map(
        SearchSimple
    ),
    st.builds(SearchText, st.sampled_from(["BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO"]), _words),
    st.builds(SearchHeader, st.sampled_from(["Subject", "X-Mailer", "List-Id"]), _words),
    st.builds(
        SearchDate,
        st.sampled_from(["BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"]),
        st.dates(min_value=date(1000, 1, 1)),
    ),
    st.builds(SearchKeyword, st.sampled_from(["KEYWORD", "UNKEYWORD"]), _atoms),
    st.builds(SearchSize, st.sampled_from(["LARGER", "SMALLER"]), st.integers(0, 2**40)),
    st.builds(SearchAge, st.sampled_from(["OLDER", "YOUNGER"]), st.integers(1, 2**31)),
    st.builds(SearchSequence, _sets),
    st.builds(SearchUid, _sets),
    st.builds(SearchModseq, st.integers(0, 2**62)),
)
_programs = st.recursive(
    _leaves,
    lambda children: st.one_of(
        st.builds(SearchNot, children),
        st.builds(SearchOr, children, children),
        st.lists(children, min_size=2, max_size=4).map(lambda keys: SearchAnd(tuple(keys))),
    ),
    max_leaves=25,
)


def _search_text(key: SearchKey) -> str:
    """How a client would write `key`."""
    match key:
        case SearchSimple(word):
            return word
        case SearchText(word, value):
            return f'{word} "{value}"'
        case SearchHeader(field, value):
            return f'HEADER {field} "{value}"'
        case SearchDate(word, day):
            return f"{word} {day.day}-{_MONTH_NAMES[day.month - 1]}-{day.year:04d}"
        case SearchKeyword(word, flag):
            return f"{word} {flag}"
        case SearchSize(word, size):
            return f"{word} {size}"
        case SearchAge(word, seconds):
            return f"{word} {seconds}"
        case SearchSequence(seqs):
            return str(seqs)
        case SearchUid(seqs):
            return f"UID {seqs}"
        case SearchModseq(modseq):
            return f"MODSEQ {modseq}"
        case SearchNot(inner):
            return f"NOT {_search_text(inner)}"
        case SearchOr(left, right):
            return f"OR {_search_text(left)} {_search_text(right)}"
        case SearchAnd(keys):
            return "(" + " ".join(_search_text(k) for k in keys) + ")"
    raise AssertionError(key)


@settings(max_examples=300)
@given(_programs)
def test_generated_search_programs_parse_back(key: SearchKey) -> None:
    assert search_key(_search_text(key)) == key


def test_acl_commands() -> None:
    from relentad.imap.parser import Acl, MailboxCommand

    command = parse_command(b'a SETACL "Shared/x@y.test/INBOX" bob@example.test +lrs\r\n')
    assert isinstance(command, Acl)
    assert (command.mailbox, command.identifier) == ("Shared/x@y.test/INBOX", "bob@example.test")
    assert command.rights == "+lrs"
    command = parse_command(b"a DELETEACL inbox bob@example.test\r\n")
    assert isinstance(command, Acl) and (command.mailbox, command.rights) == ("INBOX", "")
    command = parse_command(b'a LISTRIGHTS Customers "bob@example.test"\r\n')
    assert isinstance(command, Acl) and command.identifier == "bob@example.test"
    for name in ("MYRIGHTS", "GETACL"):
        parsed = parse_command(f"a {name} INBOX\r\n".encode())
        assert isinstance(parsed, MailboxCommand) and parsed.mailbox == "INBOX"
    assert "identifier" in bad("a SETACL INBOX ").text
    assert "rights" in bad("a SETACL INBOX bob@example.test ").text
    assert bad("a SETACL INBOX bob@example.test").tag == "a"
    assert bad("a DELETEACL INBOX bob@example.test lr").tag == "a"
