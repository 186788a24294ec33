"""DANE for SMTP (RFC 7672): TLSA lookup and verification of a presented chain.

The AD bit is only as trustworthy as the path to the resolver that set it.
`dns.nameservers` must name a DNSSEC-*validating* resolver reached over a trusted path
(typically one on localhost, e.g. unbound or systemd-resolved with DNSSEC=yes); a
non-validating resolver never sets AD, so DANE then silently stays off, and a resolver
across an untrusted network could forge it. Sealgate does not validate DNSSEC itself.

Outcomes are enums, not exceptions, so delivery can map each to a decision:
  USABLE    authenticated TLSA with usable records: the host must present a matching chain
  UNUSABLE  authenticated records, none usable: TLS is still mandatory, no authentication
            (RFC 7672 2.2; Postfix's "dane" level does the same)
  INSECURE  records without AD: ignored entirely, as if there were none
  NONE      no TLSA (NXDOMAIN / NODATA): DANE does not apply
  TEMPFAIL  SERVFAIL or timeout: the host must not be used in plaintext; an attacker
            who can make the lookup fail must not thereby downgrade the connection
            (RFC 7672 2.2), so delivery should skip or defer this host

Note also RFC 7672 2.2.1: DANE applies only when the MX RRset and the host's address
records were themselves validated; checking that is the caller's business.
"""

from __future__ import annotations

import copy
import datetime
import enum
import hashlib
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.resolver
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from gateway.tls.inspect import dns_name_matches, is_ca, san_dns_names, spki_der

__all__ = [
    "DaneCheck", "DaneVerdict", "TLSALookup", "TLSARecord", "TLSAStatus", "lookup_tlsa",
    "tlsa_name", "verify", "verify_detail",
]

DANE_TA, DANE_EE = 2, 3
SELECTOR_CERT, SELECTOR_SPKI = 0, 1
MATCH_FULL, MATCH_SHA256, MATCH_SHA512 = 0, 1, 2
_DIGEST_LENGTH = {MATCH_SHA256: 32, MATCH_SHA512: 64}
_MAX_CHAIN_DEPTH = 10
_EDNS_PAYLOAD = 1232  # DNS flag day 2020: avoids IP fragmentation of signed answers


class TLSAStatus(enum.Enum):
    USABLE = "usable"
    UNUSABLE = "unusable"
    INSECURE = "insecure"
    NONE = "none"
    TEMPFAIL = "tempfail"


class DaneVerdict(enum.Enum):
    MATCH = "match"
    MISMATCH = "mismatch"


@dataclass(frozen=True)
class TLSARecord:
    usage: int
    selector: int
    mtype: int
    data: bytes

    @property
    def usable(self) -> bool:
        """Usable for SMTP per RFC 7672 3.1: only DANE-TA(2) and DANE-EE(3), since MTAs
        have no common set of PKIX roots that PKIX-TA/EE(0/1) could rely on; a digest of
        the wrong length is malformed and unusable (RFC 7671 5)."""
        if self.usage not in (DANE_TA, DANE_EE) or self.selector not in (0, 1):
            return False
        if self.mtype == MATCH_FULL:
            return bool(self.data)
        return len(self.data) == _DIGEST_LENGTH.get(self.mtype, -1)

    def to_text(self) -> str:
        return f"{self.usage} {self.selector} {self.mtype} {self.data.hex()}"


@dataclass(frozen=True)
class TLSALookup:
    status: TLSAStatus
    name: str
    records: list[TLSARecord] = field(default_factory=list)
    detail: str = ""

    @property
    def usable(self) -> list[TLSARecord]:
        return [r for r in self.records if r.usable]


def tlsa_name(mx_host: str, port: int = 25) -> str:
    return f"_{port}._tcp.{mx_host.rstrip('.')}"


_SECURE_RESOLVERS: weakref.WeakKeyDictionary[
    dns.asyncresolver.Resolver, dns.asyncresolver.Resolver] = weakref.WeakKeyDictionary()


def _dnssec_resolver(resolver: dns.asyncresolver.Resolver) -> dns.asyncresolver.Resolver:
    """A copy asking for DNSSEC status, so the shared resolver keeps its settings.

    AD in the query (RFC 6840 5.7) asks a validating resolver to report validation even
    without DO; DO is set too because some resolvers only set AD when it is. The copy has a
    cache of its own (when the original caches at all): an answer cached from a query
    without these flags says nothing about AD, but its own answers can be reused for their
    TTL, which keeps TLSA look-ups off the per-message path.
    """
    secure = _SECURE_RESOLVERS.get(resolver)
    if secure is None:
        secure = copy.copy(resolver)
        secure.cache = dns.resolver.Cache() if resolver.cache is not None else None
        secure.use_edns(0, dns.flags.DO, _EDNS_PAYLOAD)
        secure.flags = dns.flags.RD | dns.flags.AD
        _SECURE_RESOLVERS[resolver] = secure
    return secure


async def lookup_tlsa(resolver: dns.asyncresolver.Resolver, mx_host: str,
                      port: int = 25) -> TLSALookup:
    name = tlsa_name(mx_host, port)
    try:
        answer = await _dnssec_resolver(resolver).resolve(name, "TLSA")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return TLSALookup(TLSAStatus.NONE, name, detail=f"no TLSA records at {name}")
    except dns.exception.DNSException as exc:
        # SERVFAIL (NoNameservers), timeouts, malformed answers: all "unknown", never "none".
        return TLSALookup(TLSAStatus.TEMPFAIL, name, detail=f"TLSA lookup for {name} failed: {exc}")
    records = [TLSARecord(r.usage, r.selector, r.mtype, bytes(r.cert)) for r in answer]
    if not answer.response.flags & dns.flags.AD:
        return TLSALookup(TLSAStatus.INSECURE, name, records,
                          f"TLSA records at {name} are not DNSSEC-validated (no AD bit): ignored")
    usable = [r for r in records if r.usable]
    if not usable:
        return TLSALookup(TLSAStatus.UNUSABLE, name, records,
                          f"no usable TLSA record at {name} (only DANE-TA/DANE-EE count)")
    return TLSALookup(TLSAStatus.USABLE, name, records,
                      f"{len(usable)} usable TLSA record(s) at {name}")


@dataclass(frozen=True)
class DaneCheck:
    verdict: DaneVerdict
    detail: str
    record: TLSARecord | None = None


def verify(records: Iterable[TLSARecord], chain_der: list[bytes], mx_host: str, *,
           now: datetime.datetime | None = None) -> DaneVerdict:
    """MATCH when the presented chain (leaf first) satisfies one usable record."""
    return verify_detail(records, chain_der, mx_host, now=now).verdict


def verify_detail(records: Iterable[TLSARecord], chain_der: list[bytes], mx_host: str, *,
                  now: datetime.datetime | None = None) -> DaneCheck:
    """verify() with the reason, for logs and the probe."""
    usable = [r for r in records if r.usable]
    if not chain_der:
        return DaneCheck(DaneVerdict.MISMATCH, "no certificate presented")
    if not usable:
        return DaneCheck(DaneVerdict.MISMATCH, "no usable TLSA record")
    try:
        chain = [x509.load_der_x509_certificate(der) for der in chain_der]
    except ValueError as exc:
        return DaneCheck(DaneVerdict.MISMATCH, f"unparsable certificate: {exc}")
    for record in (r for r in usable if r.usage == DANE_EE):
        # DANE-EE pins the server's own key or cert: names and dates are deliberately not
        # checked (RFC 7672 3.1.1), which is what makes self-signed MX certs usable.
        if _matches(record, chain[0], chain_der[0]):
            return DaneCheck(DaneVerdict.MATCH, f"DANE-EE {record.selector} {record.mtype}"
                             " matches the server certificate", record)
    ta_records = [r for r in usable if r.usage == DANE_TA]
    if ta_records:
        return _verify_ta(ta_records, chain, chain_der, mx_host,
                          now or datetime.datetime.now(datetime.timezone.utc))
    return DaneCheck(DaneVerdict.MISMATCH, "no DANE-EE record matches the server certificate")


def _matches(record: TLSARecord, cert: x509.Certificate, der: bytes) -> bool:
    selected = der if record.selector == SELECTOR_CERT else spki_der(cert)
    if record.mtype == MATCH_SHA256:
        selected = hashlib.sha256(selected).digest()
    elif record.mtype == MATCH_SHA512:
        selected = hashlib.sha512(selected).digest()
    return selected == record.data


def _verify_ta(records: list[TLSARecord], chain: list[x509.Certificate], chain_der: list[bytes],
               mx_host: str, now: datetime.datetime) -> DaneCheck:
    """DANE-TA (RFC 7672 3.1.2, 3.2.2): a certificate the server sent matches the record,
    the leaf's signatures lead up to it, and the leaf is valid for the MX host name.

    Unlike DANE-EE the trust anchor only vouches for what it signs, so the name check and
    the validity dates of the certificates below the anchor apply, as with OpenSSL's DANE.
    """
    anchor = _walk_to_anchor(records, chain, chain_der, now)
    if isinstance(anchor, str):
        return DaneCheck(DaneVerdict.MISMATCH, anchor)
    names = san_dns_names(chain[0])
    if not any(dns_name_matches(name, mx_host) for name in names):
        return DaneCheck(DaneVerdict.MISMATCH, f"DANE-TA: certificate names {names or '(none)'}"
                         f" do not match {mx_host}", anchor)
    return DaneCheck(DaneVerdict.MATCH, f"DANE-TA {anchor.selector} {anchor.mtype}"
                     " matches a trust anchor of the presented chain", anchor)


def _walk_to_anchor(records: list[TLSARecord], chain: list[x509.Certificate],
                    chain_der: list[bytes], now: datetime.datetime) -> TLSARecord | str:
    """The record whose anchor the leaf chains up to, or why none does.

    Servers may send the chain out of order or with extra certificates, so each issuer
    is searched for among all unused presented certificates rather than assumed next.
    """
    current, unused = 0, set(range(1, len(chain)))
    for _ in range(_MAX_CHAIN_DEPTH):
        for record in records:
            if _matches(record, chain[current], chain_der[current]):
                return record
        cert = chain[current]
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            subject = cert.subject.rfc4514_string()
            return f"DANE-TA: certificate {subject} is outside its validity period"
        issuer = next((i for i in sorted(unused) if _issued_by(cert, chain[i])), None)
        if issuer is None:
            return "DANE-TA: no TLSA record matches a certificate the leaf chains to"
        unused.discard(issuer)
        current = issuer
    return "DANE-TA: certificate chain too long"


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if not is_ca(issuer):  # a leaf's key must not be able to mint certificates
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):  # other name, key type or signature
        return False
    return True
