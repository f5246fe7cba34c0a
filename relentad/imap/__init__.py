"""IMAP4rev1/IMAP4rev2 server: pure parser, response rendering, sessions and the listener."""
