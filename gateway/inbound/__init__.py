"""Accept: the SMTP listener (aiosmtpd is the protocol engine) and its relay hooks."""
