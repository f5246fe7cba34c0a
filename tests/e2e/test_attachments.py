"""Attachments that can run programs, on the MX ([attachments]): Debian's swaks sends real MIME attachments.
A program (by name, inside a ZIP, or renamed) is refused at DATA with 554 5.7.0 naming it and nothing is stored;
a harmless file is delivered; with action "junk" the message goes to Junk; submission is not judged; the
refusals are counted in /metrics."""

from __future__ import annotations

import io
import shutil
import smtplib
import subprocess
import zipfile
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.e2e.conftest import MakeDaemon, provision
from tests.e2e.test_submission import tls_context
from tests.support.daemon import PASSWORD, Daemon, free_port
from tests.support.metrics import http_get, sample

pytestmark = pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed (scripts/test does)")

ALICE = "alice@example.test"


def swaks(daemon: Daemon, attachment: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["swaks", "--server", f"{daemon.host}:{daemon.smtp_port}", "--from", "friend@elsewhere.test", "--to", ALICE,
         "--header", f"Subject: {attachment.name}", "--attach-type", "application/octet-stream",
         "--attach", f"@{attachment}", *extra],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def zip_of(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


def test_programs_are_refused_and_documents_delivered(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    metrics_port = free_port()
    daemon = provision(make_daemon(settings={"listen": {"metrics": f"127.0.0.1:{metrics_port}"}})).start()
    files = {
        "invoice.pdf.exe": b"just bytes",
        "docs.zip": zip_of("docs/start.js", b"WScript.Echo(1)"),
        "notes.txt": b"MZ\x90\x00" + bytes(64),  # a program called notes.txt, sent as application/octet-stream
    }
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        result = swaks(daemon, path)
        assert result.returncode != 0 and "554 5.7.0 Attachment refused:" in result.stdout, result.stdout
    assert '"invoice.pdf.exe" (.exe)' in swaks(daemon, tmp_path / "invoice.pdf.exe").stdout
    assert '"docs.zip: docs/start.js" (.js)' in swaks(daemon, tmp_path / "docs.zip").stdout
    assert daemon.messages(ALICE) == []
    report = tmp_path / "report.pdf"
    report.write_bytes(b"%PDF-1.4\n%harmless\n")
    result = swaks(daemon, report)
    assert result.returncode == 0 and "250 2.0.0" in result.stdout, result.stdout
    [stored] = daemon.messages(ALICE)
    assert b'name="report.pdf"' in stored
    _, text = http_get(metrics_port, "/metrics")
    assert sample(text, "relentad_smtp_rejected_total", 'listener="smtp",reason="attachment"') == 5


def test_junk_action_and_submission(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    daemon = make_daemon(submission=True, settings={"attachments": {"action": "junk", "blocked": ["exe", "cmd"]}})
    daemon = provision(daemon).start()
    program = tmp_path / "setup.cmd"
    program.write_bytes(b"@echo off\r\n")
    result = swaks(daemon, program)
    assert result.returncode == 0 and "250 2.0.0" in result.stdout, result.stdout
    assert daemon.messages(ALICE) == [] and len(daemon.messages(ALICE, "Junk")) == 1
    script = tmp_path / "run.vbs"  # not on this server's list
    script.write_bytes(b"MsgBox 1")
    assert swaks(daemon, script).returncode == 0 and len(daemon.messages(ALICE)) == 1
    mail = EmailMessage()  # a user's own mail through submission is not judged
    mail["From"], mail["To"], mail["Subject"] = ALICE, "bob@example.test", "the tool you asked for"
    mail.set_content("Here.")
    mail.add_attachment(b"MZ" + bytes(64), maintype="application", subtype="octet-stream", filename="tool.exe")
    with smtplib.SMTP(daemon.host, daemon.submission_port, timeout=30) as client:
        client.starttls(context=tls_context())
        client.login(ALICE, PASSWORD)
        client.send_message(mail)
    assert len(daemon.messages("bob@example.test")) == 1
