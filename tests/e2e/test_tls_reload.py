"""Certificate renewal without SIGHUP: the daemon notices new files on disk ([tls] reload_interval) and every TLS
listener (STARTTLS on 25, 587 and 143; implicit TLS on 465 and 993) hands new connections the new certificate,
while connections opened before keep working. A broken pair (half-written PEM, key not matching) is refused with
a log line and the previous certificate stays."""

from __future__ import annotations

import hashlib
import imaplib
import os
import shutil
import signal
import smtplib
import socket
import time
from pathlib import Path

from relentad.tls import make_self_signed
from tests.e2e.conftest import MakeDaemon, provision
from tests.support.daemon import PASSWORD, Daemon
from tests.support.imap import tls_client_context

MESSAGE = b"From: friend@elsewhere.test\r\nTo: alice@example.test\r\nSubject: during renewal\r\n\r\nHello.\r\n"


def _fingerprint(der: bytes | None) -> str:
    assert der is not None
    return hashlib.sha256(der).hexdigest()


def smtp_starttls(daemon: Daemon, port: int) -> str:
    with smtplib.SMTP(daemon.host, port, timeout=10) as client:
        client.ehlo("client.test")
        client.starttls(context=tls_client_context())
        return _fingerprint(client.sock.getpeercert(binary_form=True))  # type: ignore[union-attr]


def implicit_tls(daemon: Daemon, port: int) -> str:
    with (
        socket.create_connection((daemon.host, port), timeout=10) as sock,
        tls_client_context().wrap_socket(sock) as tls_sock,  # no SNI: an IP address, as many clients connect
    ):
        return _fingerprint(tls_sock.getpeercert(binary_form=True))


def imap_starttls(daemon: Daemon, port: int) -> str:
    client = imaplib.IMAP4(daemon.host, port, timeout=10)
    try:
        client.starttls(tls_client_context())
        return _fingerprint(client.sock.getpeercert(binary_form=True))  # type: ignore[attr-defined]
    finally:
        client.logout()


def fingerprints(daemon: Daemon) -> dict[str, str]:
    """What a new connection to each TLS listener is shown."""
    return {
        "smtp 25": smtp_starttls(daemon, daemon.smtp_port),
        "submission 587": smtp_starttls(daemon, daemon.submission_port),
        "submissions 465": implicit_tls(daemon, daemon.submissions_port),
        "imap 143": imap_starttls(daemon, daemon.imap_port),
        "imaps 993": implicit_tls(daemon, daemon.imaps_port),
    }


def file_fingerprint(cert: Path) -> str:
    import ssl

    return _fingerprint(ssl.PEM_cert_to_DER_cert(cert.read_text()))


def wait_for_log(daemon: Daemon, text: str, since: int, timeout: float = 15.0) -> None:
    """Wait until ``text`` appears in the log more often than the ``since`` times it had."""
    deadline = time.monotonic() + timeout
    while daemon.log().count(text) <= since:
        assert time.monotonic() < deadline, f"no {text!r} in the log:\n{daemon.log()}"
        time.sleep(0.05)


def test_renewed_certificate_on_disk_is_loaded_without_sighup(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    daemon = make_daemon(
        settings={"tls": {"reload_interval": 0.2}, "mailauth": {"verify": False}}, submission=True, imap=True
    )
    provision(daemon).start()
    tls_dir = daemon.root / "data" / "tls"
    cert, key = tls_dir / "cert.pem", tls_dir / "key.pem"
    old = file_fingerprint(cert)
    assert set(fingerprints(daemon).values()) == {old}

    # Connections made before the renewal, mid-session when it happens.
    mx = smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=10)
    mx.ehlo("old.example.test")
    mx.starttls(context=tls_client_context())
    mx.ehlo("old.example.test")
    imaps = imaplib.IMAP4_SSL(daemon.host, daemon.imaps_port, ssl_context=tls_client_context(), timeout=10)
    imaps.login("alice@example.test", PASSWORD)

    # A renewal as an ACME client does it: the new pair written elsewhere, then moved into place.
    renewed = tmp_path / "renewed"
    make_self_signed(renewed / "cert.pem", renewed / "key.pem", ["mx.example.test", "renewed.example.test"])
    new = file_fingerprint(renewed / "cert.pem")
    os.replace(renewed / "key.pem", key)
    os.replace(renewed / "cert.pem", cert)
    wait_for_log(daemon, "certificate reloaded", 0)
    assert set(fingerprints(daemon).values()) == {new}, "every listener serves the new pair"

    # The connections opened before still work (they keep the certificate they were handshaken with).
    assert mx.sendmail("friend@elsewhere.test", ["alice@example.test"], MESSAGE) == {}
    mx.quit()
    assert imaps.select("INBOX")[0] == "OK"
    assert imaps.noop()[0] == "OK"
    imaps.logout()

    # A half-written certificate (the writer still at work): refused, the last good pair stays.
    third = tmp_path / "third"
    make_self_signed(third / "cert.pem", third / "key.pem", ["mx.example.test"])
    pem = (third / "cert.pem").read_bytes()
    refused = daemon.log().count("certificate reload refused")
    cert.write_bytes(pem[: len(pem) // 2])
    wait_for_log(daemon, "certificate reload refused", refused)
    assert set(fingerprints(daemon).values()) == {new}

    # The whole certificate, but its key not there yet (key mismatch): refused too.
    refused = daemon.log().count("certificate reload refused")
    shutil.copyfile(third / "cert.pem", cert)
    wait_for_log(daemon, "certificate reload refused", refused)
    assert set(fingerprints(daemon).values()) == {new}

    # The key arrives: the pair matches and is taken.
    shutil.copyfile(third / "key.pem", key)
    wait_for_log(daemon, "certificate reloaded", 1)
    assert set(fingerprints(daemon).values()) == {file_fingerprint(third / "cert.pem")}
    assert "Traceback" not in daemon.log()
    assert len(daemon.messages("alice@example.test")) == 1


def test_reload_interval_zero_turns_the_check_off(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    daemon = provision(make_daemon(settings={"tls": {"reload_interval": 0}})).start()
    before = smtp_starttls(daemon, daemon.smtp_port)
    renewed = tmp_path / "renewed"
    make_self_signed(renewed / "cert.pem", renewed / "key.pem", ["mx.example.test"])
    tls_dir = daemon.root / "data" / "tls"
    os.replace(renewed / "key.pem", tls_dir / "key.pem")
    os.replace(renewed / "cert.pem", tls_dir / "cert.pem")
    time.sleep(1.0)  # several intervals of the other test: nothing may happen here
    assert smtp_starttls(daemon, daemon.smtp_port) == before
    assert "certificate reloaded" not in daemon.log()


def test_certificate_taken_away_by_a_reload_leaves_465_and_993_closed_not_plaintext(make_daemon: MakeDaemon) -> None:
    """465 and 993 speak TLS first; without a certificate (SIGHUP after [tls] cert was emptied) they close a new
    connection at once rather than greet it in plaintext."""
    daemon = provision(make_daemon(submission=True, imap=True)).start()
    daemon.write_config(tls={"cert": "", "key": ""})
    daemon.signal(signal.SIGHUP)
    wait_for_log(daemon, "configuration reloaded", 0)
    for port in (daemon.submissions_port, daemon.imaps_port):
        with socket.create_connection((daemon.host, port), timeout=10) as sock:
            assert sock.recv(100) == b""
    with smtplib.SMTP(daemon.host, daemon.submission_port, timeout=10) as client:
        client.ehlo("client.test")
        assert not client.has_extn("starttls")
