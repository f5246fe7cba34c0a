"""CardDAV (RFC 6352 over WebDAV, RFC 4918; sync by RFC 6578): the CRM's confirmed contacts as one read-only
address book per account, served by the ``[listen] https`` web listener (:mod:`relentad.web`)."""
