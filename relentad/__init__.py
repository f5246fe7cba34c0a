"""relentad: a self-hosted email CRM mail server (SMTP, submission, IMAP, CRM) over one SQLite store."""

__version__ = "0.1.0"
