"""SMTP listeners (inbound MX and submission) embedded in the daemon loop via aiosmtpd."""
