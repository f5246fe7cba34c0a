"""ACME's pure parts: JWS signatures and JWK thumbprints, the ClientHello ALPN sniffing for tls-alpn-01, the
challenge certificate, the renewal decision, the order of an attempt (against a scripted server), the settings."""

from __future__ import annotations

import json
import ssl
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from relentad import config
from relentad.acme import challenges, jws, manager
from relentad.acme import store as acme_store
from relentad.acme.client import AcmeError, Client, Response, problem_text, retry_after


def _unb64(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_rfc7638_thumbprint_example() -> None:
    """RFC 7638 §3.1's RSA key and its thumbprint."""
    n = (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknj"
        "hMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6"
        "qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJ"
        "zKnqDKgw"
    )
    public = rsa.RSAPublicNumbers(int.from_bytes(_unb64("AQAB"), "big"), int.from_bytes(_unb64(n), "big"))
    assert jws.jwk_thumbprint({"kty": "RSA", "n": n, "e": "AQAB"}) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    assert public.n.bit_length() == 2048


def test_es256_request_verifies_with_the_jwk_and_is_flattened() -> None:
    key = jws.new_key("ec256")
    body = json.loads(jws.request(key, "https://ca.test/new-order", "nonce1", {"a": 1}))
    protected = json.loads(_unb64(body["protected"]))
    assert protected == {"alg": "ES256", "nonce": "nonce1", "url": "https://ca.test/new-order", "jwk": jws.jwk(key)}
    signature = _unb64(body["signature"])
    assert len(signature) == 64  # raw r||s, not DER
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    signed = f"{body['protected']}.{body['payload']}".encode()
    key.public_key().verify(encode_dss_signature(r, s), signed, ec.ECDSA(hashes.SHA256()))
    assert json.loads(_unb64(body["payload"])) == {"a": 1}


def test_post_as_get_has_an_empty_payload_and_the_kid() -> None:
    key = jws.new_key("ec256")
    body = json.loads(jws.request(key, "https://ca.test/order/1", "n", None, kid="https://ca.test/acct/7"))
    assert body["payload"] == ""
    protected = json.loads(_unb64(body["protected"]))
    assert protected["kid"] == "https://ca.test/acct/7" and "jwk" not in protected


def test_rsa_keys_sign_rs256() -> None:
    key = jws.new_key("rsa2048")
    assert jws.algorithm(key) == "RS256" and jws.jwk(key)["kty"] == "RSA"
    assert isinstance(jws.load_key(jws.key_pem(key)), rsa.RSAPrivateKey)
    with pytest.raises(ValueError):
        jws.load_key(jws.key_pem(ec.generate_private_key(ec.SECP384R1())))  # type: ignore[arg-type]


def _client_hello(alpn: list[bytes] | None) -> bytes:
    """A ClientHello as the message callback sees it, the way a real client sends one."""
    seen: list[bytes] = []
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server._msg_callback = lambda conn, direction, v, ct, mt, data: (  # type: ignore[attr-defined]
        seen.append(data) if direction == "read" and mt == 1 else None
    )
    client = ssl.create_default_context()
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    if alpn is not None:
        client.set_alpn_protocols([p.decode() for p in alpn])
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(c_in, c_out, server_hostname="mx.example.test")
    s = server.wrap_bio(s_in, s_out, server_side=True)
    with pytest.raises(ssl.SSLWantReadError):
        c.do_handshake()
    s_in.write(c_out.read())
    with pytest.raises(ssl.SSLError):  # no certificate: the server gives up after reading the hello
        s.do_handshake()
    assert seen
    return seen[0]


def test_client_hello_alpn_sniffing() -> None:
    assert challenges.offers_acme_alpn(_client_hello([b"acme-tls/1"]))
    assert not challenges.offers_acme_alpn(_client_hello([b"h2", b"acme-tls/1"]))
    assert not challenges.offers_acme_alpn(_client_hello([b"acme-tls/1", b"http/1.1"]))
    assert not challenges.offers_acme_alpn(_client_hello([b"h2", b"http/1.1"]))
    assert not challenges.offers_acme_alpn(_client_hello(None))
    hello = _client_hello([b"acme-tls/1"])
    for cut in range(len(hello)):  # truncated or garbled input from anyone: False, never an exception
        challenges.offers_acme_alpn(hello[:cut])
    assert not challenges.offers_acme_alpn(b"")
    assert not challenges.offers_acme_alpn(b"\x02" + hello[1:])


def test_tls_alpn_certificate_carries_the_digest_critically() -> None:
    pem, _ = challenges.alpn_certificate("mx.example.test", "token.thumb")
    cert = x509.load_pem_x509_certificate(pem)
    extension = cert.extensions.get_extension_for_oid(challenges.ACME_IDENTIFIER_OID)
    assert extension.critical
    import hashlib

    assert extension.value.public_bytes() == b"\x04\x20" + hashlib.sha256(b"token.thumb").digest()
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    ) == ["mx.example.test"]


def test_http01_answers_only_pending_tokens() -> None:
    responder = challenges.Responder(lambda: None)
    responder.present("http-01", "mx.example.test", "tok_1", "tok_1.thumb")
    assert responder.http_answer("/.well-known/acme-challenge/tok_1") == "tok_1.thumb"
    assert responder.http_answer("/.well-known/acme-challenge/other") is None
    responder.cleanup("http-01", "mx.example.test", "tok_1")
    assert responder.http_answer("/.well-known/acme-challenge/tok_1") is None


def test_renewal_decision() -> None:
    day = 86400.0
    current = manager.Current(frozenset({"a.test", "b.test"}), 0.0, 90 * day)
    assert manager.why_renew(None, ["a.test"], 0.33, 0) == "no certificate yet"
    assert manager.why_renew(current, ["a.test", "c.test"], 0.33, day) == "not covering c.test"
    assert manager.why_renew(current, ["a.test"], 0.33, 59 * day) is None
    assert manager.why_renew(current, ["a.test"], 0.33, 61 * day) == "certificate due for renewal"
    assert manager.why_renew(current, ["a.test"], 0.33, 91 * day) == "certificate expired"
    assert [manager.backoff(n) for n in (1, 2, 3, 4, 9)] == [60.0, 600.0, 3600.0, 21600.0, 21600.0]


def test_wanted_names_follow_the_hosted_domains_web_names() -> None:
    base = config.Config(server=config.ServerConfig(hostname="MX.example.org."))
    assert manager.wanted_names(base, ["a.test"]) == [
        "mx.example.org",
        "mta-sts.a.test",
        "autoconfig.a.test",
        "autodiscover.a.test",
    ]
    no_web = config.Config(server=config.ServerConfig(hostname="mx.example.org"), listen=config.ListenConfig(https=""))
    assert manager.wanted_names(no_web, ["a.test"]) == ["mx.example.org"]
    named = config.Config(acme=config.ACMEConfig(names=["Mail.A.test", "mail.a.test"]))
    assert manager.wanted_names(named, ["a.test"]) == ["mail.a.test"]


def test_problem_documents_and_retry_after() -> None:
    body = json.dumps(
        {
            "type": "urn:ietf:params:acme:error:rejectedIdentifier",
            "detail": "Error creating new order",
            "subproblems": [{"identifier": {"value": "x.test"}, "detail": "forbidden"}],
        }
    ).encode()
    assert problem_text(body, 400) == "rejectedIdentifier: Error creating new order; x.test: forbidden"
    assert problem_text(b"<html>", 502) == "HTTP 502"
    assert retry_after({"retry-after": "3"}, 1.0) == 3.0
    assert retry_after({"retry-after": "86400"}, 1.0) == 30.0
    assert retry_after({"retry-after": "soon"}, 2.0) == 2.0


class ScriptedCA(Client):
    """A client whose server is a script: the order of requests an attempt makes, without a network."""

    def __init__(self, failing: tuple[str, ...] = ()) -> None:
        super().__init__("https://ca.test/dir", jws.new_key("ec256"), sleep=lambda _: None)
        self.failing = failing  # the authorizations ("a", "b") that turn invalid
        self.log: list[str] = []
        self.directory = {
            "newNonce": "https://ca.test/nonce",
            "newAccount": "https://ca.test/acct",
            "newOrder": "https://ca.test/order",
        }
        self.challenged: set[str] = set()

    def _http(self, method: str, url: str, body: bytes | None = None, accept: str = "application/json") -> Response:
        self.nonce = "n"
        name = url.rsplit("/", 1)[-1]
        self.log.append(f"{method} {name}" + (" (get)" if body and json.loads(body)["payload"] == "" else ""))
        answers: dict[str, Any] = {
            "order": {
                "status": "pending",
                "authorizations": ["https://ca.test/authz/a", "https://ca.test/authz/b"],
                "finalize": "https://ca.test/fin",
            },
            "o1": {"status": "ready", "finalize": "https://ca.test/fin"},
            "fin": {"status": "valid", "certificate": "https://ca.test/cert"},
            "a": {
                "status": "pending",
                "identifier": {"value": "a.test"},
                "challenges": [{"type": "http-01", "url": "https://ca.test/chal/ca", "token": "ta"}],
            },
            "b": {
                "status": "pending",
                "identifier": {"value": "b.test"},
                "challenges": [{"type": "http-01", "url": "https://ca.test/chal/cb", "token": "tb"}],
            },
            "ca": {},
            "cb": {},
        }
        if name in ("ca", "cb"):
            self.challenged.add(name)
        if name in ("a", "b") and f"c{name}" in self.challenged:
            answers[name] = {
                **answers[name],
                "status": "invalid" if name in self.failing else "valid",
                "challenges": [
                    {"type": "http-01", "error": {"type": "urn:ietf:params:acme:error:connection", "detail": "refused"}}
                ],
            }
        if name == "cert":
            return Response(200, {}, b"-----BEGIN CERTIFICATE-----\n")
        headers = {"location": "https://ca.test/order/o1"} if name == "order" else {}
        return Response(200, headers, json.dumps(answers.get(name, {})).encode())


def test_every_challenge_is_answered_before_any_is_polled_and_cleaned_up_after() -> None:
    ca = ScriptedCA()
    events: list[str] = []
    ca.issue(
        ["a.test", "b.test"],
        jws.new_key("ec256"),
        ["http-01"],
        lambda k, n, t, a: events.append(f"present {n}"),
        lambda k, n, t: events.append(f"cleanup {n}"),
    )
    posts = [entry for entry in ca.log if entry.startswith("POST")]
    assert posts[:7] == [
        "POST order",
        "POST a (get)",
        "POST b (get)",
        "POST ca",
        "POST cb",
        "POST a (get)",
        "POST b (get)",
    ]
    assert posts[7:] == ["POST o1 (get)", "POST fin", "POST cert (get)"]
    assert events == ["present a.test", "present b.test", "cleanup a.test", "cleanup b.test"]


def test_a_failed_challenge_is_one_line_naming_the_name_and_still_cleaned_up() -> None:
    ca = ScriptedCA(failing=("a",))
    cleaned: list[str] = []
    with pytest.raises(AcmeError, match=r"^a.test: http-01 failed: connection: refused$") as err:
        ca.issue(
            ["a.test", "b.test"], jws.new_key("ec256"), ["http-01"], lambda *a: None, lambda k, n, t: cleaned.append(n)
        )
    assert err.value.failed_names == ["a.test"]
    assert cleaned == ["a.test", "b.test"]
    both = ScriptedCA(failing=("a", "b"))
    with pytest.raises(AcmeError) as err:
        both.issue(["a.test", "b.test"], jws.new_key("ec256"), ["http-01"], lambda *a: None, lambda *a: None)
    assert err.value.failed_names == ["a.test", "b.test"]
    assert str(err.value).count("http-01 failed") == 2 and "\n" not in str(err.value)


def test_only_https_urls_are_followed() -> None:
    client = Client("http://ca.test/dir", jws.new_key("ec256"))
    with pytest.raises(AcmeError, match="not https"):
        client.get_directory()


def test_state_round_trip_and_requests(tmp_path: Path) -> None:
    state = acme_store.State(names=["a.test"], failures=2, last_error="boom")
    acme_store.save_state(tmp_path, state)
    assert acme_store.load_state(tmp_path) == state
    (tmp_path / acme_store.STATE).write_text("{not json")
    assert acme_store.load_state(tmp_path) == acme_store.State()
    acme_store.write_request(tmp_path, "r1", True)
    acme_store.write_request(tmp_path, "r2", False)
    assert (tmp_path / "renew-request.r1").stat().st_mode & 0o777 == 0o644  # the daemon's user reads root's
    taken = acme_store.take_requests(tmp_path)
    assert taken is not None and sorted(taken["ids"]) == ["r1", "r2"] and taken["force"]
    assert acme_store.take_requests(tmp_path) is None
    acme_store.write_request(tmp_path, "old", True)  # a CLI that gave up long ago: nobody waits for the answer
    assert acme_store.take_requests(tmp_path, now=time.time() + acme_store.REQUEST_WAIT + 1) is None
    assert not list(tmp_path.glob("renew-request.*"))
    for number in range(acme_store.ANSWERS_KEPT + 2):
        acme_store.answer(state, [f"r{number}"], True, "done")
    assert len(state.answers) == acme_store.ANSWERS_KEPT and "r0" not in state.answers


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"acme": {"enabled": True}, "tls": {"cert": "c.pem", "key": "k.pem"}}, "exclude each other"),
        ({"acme": {"challenges": ["dns-01"]}}, "'dns-01' is not one of"),
        ({"acme": {"key_type": "ed25519"}}, "key_type must be one of"),
        ({"acme": {"renew_remaining": 0.99}}, "renew_remaining must lie between"),
        ({"acme": {"names": ["*.example.org"]}}, "wildcards need dns-01"),
        ({"acme": {"directory": "http://ca.test/dir"}}, "not an https:// URL"),
        ({"acme": {"email": "postmaster"}}, "is not an email address"),
        ({"acme": {"enabled": True}, "listen": {"https": "", "http": ""}}, "needs [listen] https"),
    ],
)
def test_bad_acme_settings_are_one_line_each(tmp_path: Path, settings: dict[str, Any], problem: str) -> None:
    for name in ("c.pem", "k.pem"):
        (tmp_path / name).write_text("x")
    with pytest.raises(config.ConfigError) as err:
        config.from_dict(settings, path=tmp_path / "relentad.toml")
    assert any(problem in line for line in err.value.problems), err.value.problems


def _config_file(tmp_path: Path, acme: dict[str, Any]) -> Path:
    path = tmp_path / "relentad.toml"
    path.write_text(config.example_toml({"acme": acme, "server": {"hostname": "mx.example.test"}}))
    return path


def test_acme_commands_with_acme_off_are_one_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from relentad.cli import main as cli_main

    path = _config_file(tmp_path, {})
    for args in (["acme", "status"], ["acme", "renew", "--force"]):
        result = CliRunner().invoke(cli_main, ["--config", str(path), *args])
        assert result.exit_code == 1
        assert result.output.strip().splitlines() == [
            "Error: ACME is off: set [acme] enabled = true (see the README's ACME section)"
        ]


def test_renew_before_the_daemon_ever_ran_leaves_no_lock_file(tmp_path: Path) -> None:
    """Run as root before the first start, `acme renew` made the daemon's lock file, owned by root: the daemon,
    running as its own user, could then not open it and did not start."""
    from click.testing import CliRunner

    from relentad.cli import main as cli_main

    path = _config_file(tmp_path, {"enabled": True})
    (tmp_path / "data").mkdir()
    result = CliRunner().invoke(cli_main, ["--config", str(path), "acme", "renew"])
    assert result.exit_code == 1
    assert (
        result.output.strip()
        == f"Error: no {tmp_path / 'data' / 'acme'} yet: the daemon has not run with [acme] on; restart it"
    )
    assert list((tmp_path / "data").iterdir()) == []


def test_status_before_any_attempt_and_doctor(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from relentad import doctor
    from relentad.cli import main as cli_main

    path = _config_file(tmp_path, {"enabled": True})
    result = CliRunner().invoke(cli_main, ["--config", str(path), "acme", "status", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert (data["certificate"], data["last_attempt"], data["failures"]) == (None, None, 0)
    loaded = config.load(path)
    assert doctor.check_certificate(loaded) == []  # no certificate yet: check_acme says so
    assert [(f.status, f.message) for f in doctor.check_acme(loaded)] == [("warn", "no certificate obtained yet")]
    acme_store.save_state(loaded.acme_dir, acme_store.State(last_attempt=1.0, failures=2, last_error="boom"))
    assert doctor.check_acme(loaded)[0].message == "2 attempt(s) in a row failed, the last: boom"
    # obtained once, but the certificate is gone (deleted, a restored data folder): not "ok"
    acme_store.save_state(loaded.acme_dir, acme_store.State(last_attempt=1.0, last_success=1.0))
    assert [(f.status, f.message) for f in doctor.check_acme(loaded)] == [("warn", "no certificate obtained yet")]


class GarbledCA(ScriptedCA):
    """A CA that answers one resource with something malformed."""

    def __init__(self, resource: str, body: bytes) -> None:
        super().__init__()
        self.resource, self.body = resource, body

    def _http(self, method: str, url: str, body: bytes | None = None, accept: str = "application/json") -> Response:
        response = super()._http(method, url, body, accept)
        if url.rsplit("/", 1)[-1] == self.resource:
            return Response(200, response.headers, self.body)
        return response


@pytest.mark.parametrize(
    ("resource", "body"),
    [
        ("order", b"[]"),
        ("order", b'{"status": "pending", "authorizations": "https://ca.test/authz/a"}'),
        ("a", b'{"status": "pending", "identifier": "a.test", "challenges": 7}'),
        ("a", b'{"status": "pending", "challenges": [{"type": "http-01", "token": "t/../x", "url": "https://x"}]}'),
        ("a", b'{"status": "pending", "challenges": [{"type": "http-01", "token": "t"}]}'),
        ("o1", b'{"status": "ready"}'),
        ("fin", b'{"status": "valid"}'),
        ("cert", b"<html>"),
        ("b", b"not json"),
    ],
)
def test_a_malformed_answer_from_the_ca_is_one_line(resource: str, body: bytes) -> None:
    ca = GarbledCA(resource, body)
    with pytest.raises(AcmeError) as err:
        ca.issue(["a.test", "b.test"], jws.new_key("ec256"), ["http-01"], lambda *a: None, lambda *a: None)
    assert "\n" not in str(err.value) and str(err.value)


def test_a_new_name_that_fails_gets_no_duplicate_for_the_names_already_covered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The certificate in service covers a.test; b.test (a domain just added, its DNS not published) fails: no
    order for a.test alone (the same certificate again, against the CA's duplicate limit), b.test is shown as
    left out, and the attempt backs off."""
    from tests.support.pki import TestCA

    path = _config_file(tmp_path, {"enabled": True, "names": ["a.test", "b.test"]})
    loaded = config.load(path)
    cert, key = TestCA(tmp_path / "ca").issue("a.test")
    loaded.acme_dir.mkdir(parents=True)
    (loaded.acme_dir / "cert.pem").write_bytes(cert.read_bytes())
    (loaded.acme_dir / "key.pem").write_bytes(key.read_bytes())
    keeper = manager.Manager(lambda: loaded, None, lambda: None)  # type: ignore[arg-type]  # no store needed
    ordered: list[list[str]] = []

    def obtain(_config: config.Config, names: list[str]) -> manager.Current:
        ordered.append(list(names))
        if "b.test" in names:
            raise AcmeError("b.test: http-01 failed: connection: refused", ["b.test"])
        return manager.Current(frozenset(names), time.time(), time.time() + 90 * 86400)

    monkeypatch.setattr(keeper, "obtain", obtain)
    keeper.check([])
    assert ordered == [["a.test", "b.test"]]
    state = acme_store.load_state(loaded.acme_dir)
    assert (state.failures, state.left_out) == (1, ["b.test"])
    assert state.last_error == "b.test: http-01 failed: connection: refused"
