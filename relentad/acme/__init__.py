"""ACME (RFC 8555): the daemon gets and renews its own certificate (see :mod:`relentad.acme.manager`)."""
