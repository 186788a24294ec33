"""Throwaway PKI for end-to-end tests, built on trustme.

The gateway verifies MX certificates (MTA-STS, DANE, opportunistic-with-verify), so
tests need a private CA the gateway trusts via `delivery.ca_file` and leaf certs for
the fake MX hosts; trustme gives both without touching the system trust store.
"""

from __future__ import annotations

from pathlib import Path

import trustme

__all__ = ["leaf", "make_ca", "write_ca_pem"]


def make_ca() -> trustme.CA:
    """A fresh CA per test (or module) keeps trust decisions isolated between tests."""
    return trustme.CA()


def leaf(ca: trustme.CA, *names: str) -> trustme.LeafCert:
    """Issue a server cert for the given DNS names / IPs (SANs); the first name is
    also the subject CN, matching what real MX certificates usually look like."""
    if not names:
        raise ValueError("leaf() needs at least one name")
    return ca.issue_cert(*names)


def write_ca_pem(ca: trustme.CA, path: str | Path) -> Path:
    """Write the CA certificate (PEM) where the gateway's `delivery.ca_file` points."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    ca.cert_pem.write_to_path(str(target))
    return target
