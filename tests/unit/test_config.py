from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from relentad import config
from relentad.spam import verdicts
from relentad.spam.classifier import Thresholds
from tests.support.pki import TestCA


def test_defaults_are_valid_and_the_example_parses_back_to_them() -> None:
    parsed = config.from_dict(tomllib.loads(config.example_toml()))
    assert parsed.server == config.ServerConfig()
    assert parsed.limits == config.LimitsConfig()
    assert parsed.dns == config.DNSConfig()


def test_spam_thresholds_default_to_the_measured_recommendation() -> None:
    """The cut-offs the daemon uses out of the box are the ones cross-validation chose (classifier.Thresholds)."""
    spam = config.SpamConfig()
    assert Thresholds(spam.ham_below, spam.spam_above) == Thresholds()
    assert (spam.confident_after, spam.spam_above_min) == (verdicts.CONFIDENT_AFTER, verdicts.LOWEST_SPAM_ABOVE)


@pytest.mark.parametrize("lowest", [0.1, 1.5])
def test_the_lowest_spam_cut_off_lies_between_ham_below_and_one(lowest: float) -> None:
    with pytest.raises(config.ConfigError) as err:
        config.from_dict({"spam": {"spam_above_min": lowest}})
    assert err.value.problems == ["[spam] spam_above_min must lie between ham_below and 1"]


def test_followup_days_lie_between_0_and_365() -> None:
    assert config.from_dict({"crm": {"followup_days": 0}}).crm.followup_days == 0
    with pytest.raises(config.ConfigError) as err:
        config.from_dict({"crm": {"followup_days": 400}})
    assert err.value.problems == ["[crm] followup_days must lie between 0 and 365"]
    with pytest.raises(config.ConfigError) as err:
        config.from_dict({"crm": {"followup_window": 4000}})
    assert err.value.problems == ["[crm] followup_window must lie between 0 and 3650"]


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(config.ConfigError) as err:
        config.from_dict({"limits": {"message_size": "big", "nope": 1}, "tls": {"cert": "x.pem"}})
    assert err.value.problems == [
        "[limits] message_size: not a size: 'big' (write e.g. 500KB, 60MB, 5GB or 2GiB)",
        "[limits] unknown key 'nope'",
    ]


def test_whole_config_checks(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError) as err:
        config.from_dict({"tls": {"cert": "missing.pem"}, "limits": {"line_length": 200}}, path=tmp_path / "c.toml")
    assert "[tls] cert and key must be set together" in err.value.problems
    assert any(p.startswith("[tls] cert: no such file") for p in err.value.problems)
    assert "[limits] line_length must be at least 1000 (RFC 5321 §4.5.3.1.6)" in err.value.problems


@pytest.mark.parametrize(
    ("text", "parsed"), [("127.0.0.1:25", ("127.0.0.1", 25)), ("*:25", (None, 25)), ("[::1]:143", ("::1", 143)),
                         ("", None)],
)  # fmt: skip
def test_parse_address(text: str, parsed: tuple[str | None, int] | None) -> None:
    assert config.parse_address(text) == parsed


def test_relative_paths_follow_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "relentad.toml"
    path.parent.mkdir()
    path.write_text('[server]\ndata_dir = "../var/mail"\n')
    assert config.load(path).data_dir == tmp_path / "var" / "mail"


def test_a_section_docstring_of_several_lines_stays_a_comment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config.DNSBLConfig, "__doc__", "First line\n    and its continuation.")
    text = config.example_toml()
    assert "# First line and its continuation.\n" in text
    assert config.from_dict(tomllib.loads(text)).dnsbl.zones == []


@pytest.mark.parametrize("keyword", ["$Un sure", "a(b", "x]y", "\\Seen", "$Ünsure"])
def test_keywords_the_daemon_sets_must_be_imap_atoms(keyword: str) -> None:
    """A keyword that is no atom would break every FETCH FLAGS of the mail it marks; [spam] unsure_keyword was not
    checked at all, [crm] unassigned_keyword let non-ASCII through."""
    with pytest.raises(config.ConfigError) as err:
        config.from_dict({"spam": {"unsure_keyword": keyword}, "crm": {"unassigned_keyword": keyword}})
    assert err.value.problems == [
        "[crm] unassigned_keyword must be an IMAP keyword (an atom, not a \\system flag)",
        "[spam] unsure_keyword must be an IMAP keyword (an atom, not a \\system flag)",
    ]
    assert config.from_dict({"spam": {"unsure_keyword": ""}}).spam.unsure_keyword == ""


def test_connection_limits_of_zero_are_refused_not_a_server_that_serves_nobody() -> None:
    with pytest.raises(config.ConfigError) as err:
        config.from_dict({"limits": {"max_connections": 0}, "imap": {"max_connections": 0, "connections_per_ip": 0}})
    assert err.value.problems == [
        "[limits] max_connections must be at least 1",
        "[imap] connections_per_ip must be at least 1",
        "[imap] max_connections must be at least 1",
    ]


def test_queue_ca_file_must_hold_a_pem_certificate(tmp_path: Path) -> None:
    (tmp_path / "not-a-ca.pem").write_text("hello\n")
    for name, problem in (("missing.pem", "no such file"), ("not-a-ca.pem", "holds no usable PEM CA certificate")):
        with pytest.raises(config.ConfigError) as err:
            config.from_dict({"queue": {"ca_file": name}}, path=tmp_path / "c.toml")
        [line] = err.value.problems
        assert line.startswith("[queue] ca_file: ") and problem in line and "\n" not in line
    ca = TestCA(tmp_path / "ca")
    assert config.from_dict({"queue": {"ca_file": str(ca.pem)}}, path=tmp_path / "c.toml").queue.mta_sts is True


def test_pop3_idle_timeout_is_at_least_ten_minutes() -> None:
    """RFC 1939 §3: the autologout timer is at least 10 minutes."""
    with pytest.raises(config.ConfigError) as err:
        config.from_dict({"pop3": {"idle_timeout": "5m"}})
    assert err.value.problems == ["[pop3] idle_timeout must be at least 10m (RFC 1939 §3)"]


def test_login_and_idle_timeouts_of_zero_are_refused() -> None:
    """A zero deadline would end every session before its first command."""
    with pytest.raises(config.ConfigError) as err:
        config.from_dict(
            {"imap": {"login_timeout": 0}, "managesieve": {"idle_timeout": "0s"}, "pop3": {"login_timeout": 0}}
        )
    assert err.value.problems == [
        "[imap] login_timeout must be positive",
        "[managesieve] idle_timeout must be positive",
        "[pop3] login_timeout must be positive",
    ]


def test_two_listeners_on_one_port_are_refused() -> None:
    """The same host, or either on every address, clash; different hosts on one port do not."""
    with pytest.raises(config.ConfigError) as err:
        config.from_dict({"listen": {"pop3": "*:143", "managesieve": "127.0.0.1:993", "http": "127.0.0.1:443"}})
    assert err.value.problems == [
        "[listen] imaps and managesieve both use port 993",
        "[listen] imap and pop3 both use port 143",
        "[listen] https and http both use port 443",
    ]
    with pytest.raises(config.ConfigError) as err:
        config.from_dict({"listen": {"imap": "0.0.0.0:2143", "pop3": "127.0.0.1:2143", "pop3s": "[::1]:2143"}})
    assert err.value.problems == ["[listen] imap and pop3 both use port 2143"]
    parsed = config.from_dict({"listen": {"imap": "127.0.0.1:2143", "pop3": "127.0.0.2:2143", "pop3s": "[::]:2143"}})
    assert parsed.listen.pop3 == "127.0.0.2:2143"


def test_listeners_on_by_default_because_the_file_omits_them_are_named(tmp_path: Path) -> None:
    """An installed file is never rewritten, so a listener a later release adds is on by its default: say which."""
    listen = dict.fromkeys(("submission", "submissions", "imap", "imaps", "managesieve", "https"), "")
    parsed = config.from_dict({"listen": {**listen, "smtp": "127.0.0.1:2525"}}, path=tmp_path / "relentad.toml")
    assert parsed.listen_defaults == ("pop3", "pop3s"), "metrics and http are off by default: nothing opened"
    assert parsed.listen.pop3 == "*:110"
    assert config.from_dict(tomllib.loads(config.example_toml())).listen_defaults == (), "the example names them all"
