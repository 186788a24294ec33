"""Deliver: MX look-ups, SMTP client transactions, connection reuse, DKIM."""
