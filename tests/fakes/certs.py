"""Throwaway PKI for end-to-end tests, built on trustme.

The gateway verifies MX certificates (MTA-STS, DANE, opportunistic-with-verify), so
tests need a private CA the gateway trusts via `delivery.ca_file` and leaf certs for
the fake MX hosts; trustme gives both without touching the system trust store.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["cn_only_leaf", "leaf", "make_ca", "write_ca_pem"]


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


def cn_only_leaf(ca: trustme.CA, name: str) -> trustme.LeafCert:
    """A server cert from CA naming NAME only in the subject CN, with no subjectAltName:
    what old MX hosts still present. OpenSSL would match the name through the CN; Sealgate
    must not (RFC 6125 6.4.4, RFC 8461 4.1)."""
    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return trustme.LeafCert(key_pem, cert.public_bytes(serialization.Encoding.PEM),
                            [ca.cert_pem.bytes()])
