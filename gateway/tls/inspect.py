"""What a TLS peer presented: the certificate chain as sent, and readable facts about a
certificate. Used by DANE verification, `sealgate probe` and delivery logging.

The chain must be the one the server *sent*, not the one OpenSSL built while verifying:
DANE-TA matches a trust anchor inside the presented chain, and a probe with an
unverified context has no verified chain at all.
"""

from __future__ import annotations

import _ssl
import datetime
import hashlib
import ssl
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

__all__ = ["CertFacts", "cert_facts", "dns_name_matches", "presented_chain", "spki_der"]

# Private before 3.13, but the value is OpenSSL's and stable.
_ENCODING_DER: int = getattr(_ssl, "ENCODING_DER", 2)


def presented_chain(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> list[bytes]:
    """DER certificates as sent by the peer, leaf first; [] when it sent none.

    Python 3.13 made get_unverified_chain() public (returning DER). 3.10-3.12 only have
    it on the private _sslobj, returning _ssl.Certificate objects. Older or unusual
    builds get the leaf alone, which still serves DANE-EE and the probe's facts.
    """
    public = getattr(ssl_object, "get_unverified_chain", None)
    if callable(public):
        return [_as_der(cert) for cert in public() or []]
    private = getattr(getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None)
    if callable(private):
        chain = private()
        if chain:
            return [_as_der(cert) for cert in chain]
    leaf = ssl_object.getpeercert(binary_form=True)
    return [leaf] if leaf else []


def _as_der(cert: Any) -> bytes:
    if isinstance(cert, bytes):
        return cert
    return bytes(cert.public_bytes(_ENCODING_DER))


@dataclass(frozen=True)
class CertFacts:
    subject: str
    issuer: str
    not_after: datetime.datetime
    dns_names: list[str]
    not_before: datetime.datetime | None = None
    serial: str = ""
    sha256: str = ""         # of the whole certificate: what "x 0 1" TLSA records hold
    spki_sha256: str = ""    # of the public key: what "3 1 1" TLSA records hold
    is_ca: bool = False
    self_signed: bool = False

    def expired(self, now: datetime.datetime | None = None) -> bool:
        return (now or datetime.datetime.now(datetime.timezone.utc)) > self.not_after

    def as_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject, "issuer": self.issuer,
            "not_before": self.not_before.isoformat() if self.not_before else None,
            "not_after": self.not_after.isoformat(), "dns_names": list(self.dns_names),
            "serial": self.serial, "sha256": self.sha256, "spki_sha256": self.spki_sha256,
            "is_ca": self.is_ca, "self_signed": self.self_signed,
        }


def cert_facts(der: bytes) -> CertFacts:
    cert = x509.load_der_x509_certificate(der)
    return CertFacts(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        not_after=cert.not_valid_after_utc,
        dns_names=san_dns_names(cert),
        not_before=cert.not_valid_before_utc,
        serial=format(cert.serial_number, "x"),
        sha256=hashlib.sha256(der).hexdigest(),
        spki_sha256=hashlib.sha256(spki_der(cert)).hexdigest(),
        is_ca=is_ca(cert),
        self_signed=cert.subject == cert.issuer,
    )


def spki_der(cert: x509.Certificate) -> bytes:
    """SubjectPublicKeyInfo DER: what TLSA selector 1 and key pinning hash."""
    return cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)


def san_dns_names(cert: x509.Certificate) -> list[str]:
    """DNS names of the subjectAltName. The subject CN is deliberately not consulted
    (RFC 6125 6.4.4, RFC 8461 4.1), although OpenSSL's own host check, as Python sets it up,
    would fall back to it: delivery and the probe both check names with these."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [name.lower() for name in san.value.get_values_for_type(x509.DNSName)]


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def dns_name_matches(pattern: str, host: str) -> bool:
    """True when PATTERN (a certificate SAN or an MTA-STS "mx" value) covers HOST.

    A leading "*." stands for exactly one whole leftmost label (RFC 6125 6.4.3 as
    narrowed by RFC 8461 4.1 and RFC 7672 3.2.3): "*.example.net" covers
    "mx.example.net" but neither "example.net" nor "a.b.example.net". Partial-label
    wildcards ("mx*.example.net") are not honoured.
    """
    pattern = pattern.strip().rstrip(".").lower()
    host = host.strip().rstrip(".").lower()
    if not pattern or not host:
        return False
    if pattern.startswith("*."):
        first, _, rest = host.partition(".")
        return bool(first) and first != "*" and rest == pattern[2:]
    return "*" not in pattern and pattern == host
