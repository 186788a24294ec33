"""TLS knowledge and standards: what a host offered, DANE (RFC 7672), MTA-STS (RFC 8461)."""
