"""Aggregate reports other mail servers send about our domains: DMARC (RFC 7489 §7.2) and TLS-RPT (RFC 8460).

``payload`` finds a report in a message and decompresses it within a limit; ``dmarc`` and ``tlsrpt`` parse it
(pure, no I/O); ``intake`` is the delivery step that records reports mailed to a report address; ``summary`` reads
them back for ``relentad reports``.
"""
