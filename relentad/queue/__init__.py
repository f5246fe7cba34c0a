"""Outbound queue: scheduling, delivery to remote MX, DSNs and DKIM signing."""
