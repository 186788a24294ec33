"""Whether a presented certificate chain would verify (PKIX chain and the host's name),
checked after the fact for sessions that did not ask OpenSSL to verify (opportunistic and
require-tls mail). Downgrade detection needs it: a host whose certificate verified before
and no longer does may be an attacker in the path, even where the route accepts any
certificate.

The check uses cryptography's verifier, over the same roots delivery trusts (the system
store and delivery.ca_file), loaded once per process.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import logging
import ssl
import warnings
from pathlib import Path

from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

__all__ = ["chain_verifies"]

log = logging.getLogger("sealgate.tls")


def chain_verifies(chain: tuple[bytes, ...], name: str, ca_file: str = "") -> bool:
    """CHAIN (DER, leaf first, as sent) chains to a trusted root and its leaf names NAME
    (a host name, or an address for a next hop given as one)."""
    store = _trust_store(ca_file)
    if not chain or store is None:
        return False
    try:
        leaf, *intermediates = [x509.load_der_x509_certificate(der) for der in chain]
        verifier = (PolicyBuilder().store(store)
                    .time(datetime.datetime.now(datetime.timezone.utc))
                    .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(),
                                        ee_policy=_leaf_policy())
                    .build_server_verifier(_subject(name)))
        verifier.verify(leaf, intermediates)
    except (VerificationError, ValueError):
        return False
    return True


@functools.cache
def _leaf_policy() -> ExtensionPolicy:
    """The Web PKI rules for a leaf, but as lenient as OpenSSL (which delivery's verifying
    sessions use) about the criticality of subjectAltName and extendedKeyUsage: a check
    stricter than the real one would see downgrades where there are none."""
    return (ExtensionPolicy.webpki_defaults_ee()
            .require_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
            .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _for_tls_servers))


def _for_tls_servers(_policy: object, _cert: x509.Certificate,
                     usage: x509.ExtendedKeyUsage | None) -> None:
    if usage is not None and ExtendedKeyUsageOID.SERVER_AUTH not in usage:
        raise ValueError("the certificate is not for TLS servers")


def _subject(name: str) -> x509.DNSName | x509.IPAddress:
    try:
        return x509.IPAddress(ipaddress.ip_address(name.strip("[]")))
    except ValueError:
        return x509.DNSName(name.rstrip("."))


@functools.lru_cache(maxsize=4)
def _trust_store(ca_file: str) -> Store | None:
    paths = ssl.get_default_verify_paths()
    files = [p for p in (paths.cafile, ca_file) if p]
    if paths.capath and not paths.cafile:
        files += [str(p) for p in Path(paths.capath).glob("*.pem")]
    roots: list[x509.Certificate] = []
    for file in files:
        try:
            with warnings.catch_warnings():  # a few system roots predate RFC 5280's rules
                warnings.simplefilter("ignore", CryptographyDeprecationWarning)
                roots += x509.load_pem_x509_certificates(Path(file).read_bytes())
        except (OSError, ValueError) as exc:  # one unreadable bundle must not hide the rest
            log.warning("trusted certificates in %s not loaded: %s", file, exc)
    return Store(roots) if roots else None
