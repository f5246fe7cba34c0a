"""The CLI starts without the daemon's protocol, web, mail-authentication and CRM modules.

Every admin command, and each `relentad --help`, pays for what ``relentad.cli`` imports at start. Twice a session's
features slowed it by a third (dkimpy and dnspython pulled in through the dev setup; the account pages' session
module through ``user passwd``); each command imports what it needs itself.
"""

from __future__ import annotations

import subprocess
import sys

HEAVY = (
    "relentad.accountpage",
    "relentad.acme",
    "relentad.carddav",
    "relentad.crm",
    "relentad.httpserver",
    "relentad.imap",
    "relentad.pipeline",
    "relentad.queue",
    "relentad.smtp",
    "relentad.spam",
    "relentad.store.acl",
    "relentad.web",
    "aiosmtpd",
    "aiosmtplib",
    "dkim",
    "dns",
    "nacl",
    "segno",
    "sievelib",
)


def test_the_cli_module_imports_none_of_the_daemons_heavy_modules() -> None:
    probe = f"import sys, relentad.cli; print(sorted(m for m in sys.modules if m.startswith({HEAVY!r})))"
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert found == "[]"
