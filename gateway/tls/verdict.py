"""The one place that decides what TLS an MX host must offer and whether a session met it.

Delivery (gateway/delivery/deliverer.py) enforces these verdicts during the real attempt;
`sealgate probe` (gateway/diagnostics/probe.py) predicts with the very same functions, so the
two cannot disagree. Verdicts are values: a `HostRequirement` (what the route and the domain's
publications demand of one host), `TLSEvidence` (what a session showed) and a `TLSVerdict`
(met or not, how the peer was authenticated, or the `TLSFailureReason`).

Order of the rules (RFC 7672 2.2, RFC 8461 2 and 5):
  1. A TLSA look-up that failed makes the host unusable: an attacker who can break the
     look-up must not thereby get a plaintext connection.
  2. MTA-STS enforce: a host that is not in the policy's mx list is never used.
  3. Usable TLSA records: the chain must match them (DANE wins over MTA-STS for a listed
     host: MTA-STS must never override a failing DANE check, and a DANE match is stronger).
  4. MTA-STS enforce: PKIX chain and host name, at least.
  5. TLSA records that are all unusable: TLS is mandatory, nothing can be authenticated;
     the route's own requirement still applies on top.
  6. Otherwise the route's requirement.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass

from cryptography import x509

from gateway.tls.dane import DANE_EE, DaneVerdict, TLSALookup, TLSARecord, TLSAStatus, verify_detail
from gateway.tls.inspect import dns_name_matches, san_dns_names
from gateway.tls.mta_sts import STSPolicy

__all__ = [
    "Authentication", "HostRequirement", "HostSkipped", "RequirementSource", "TLSEvidence",
    "TLSFailureReason", "TLSRequirement", "TLSVerdict", "certificate_names_host",
    "host_requirement", "judge", "judge_handshake_failure", "judge_no_starttls", "sts_allows",
]


class TLSRequirement(enum.Enum):
    """What a session to one host must be. The values of the route modes are the policy's
    mode names (queue rows store those), so REQUIREMENT_FOR_MODE maps them by value."""

    NONE = "none"                      # plaintext: the retry after a broken opportunistic TLS
    OPPORTUNISTIC = "opportunistic"    # STARTTLS when offered, plaintext otherwise
    ENCRYPTED = "require-tls"          # any certificate, but never plaintext
    VERIFIED = "require-verified-tls"  # PKIX chain (system store + ca_file) and host name
    DANE = "dane"                      # the presented chain must match the host's TLSA records

    def at_least(self, floor: TLSRequirement) -> TLSRequirement:
        """The stricter of SELF and FLOOR; DANE is stricter than everything else."""
        if TLSRequirement.DANE in (self, floor):
            return TLSRequirement.DANE
        return max(self, floor, key=_STRICTNESS.index)

    @property
    def needs_tls(self) -> bool:
        return self not in (TLSRequirement.NONE, TLSRequirement.OPPORTUNISTIC)


_STRICTNESS = [TLSRequirement.NONE, TLSRequirement.OPPORTUNISTIC, TLSRequirement.ENCRYPTED,
               TLSRequirement.VERIFIED]


class RequirementSource(enum.Enum):
    """Who raised the host's requirement: the route's mode, or the domain's publications."""

    POLICY = "policy"
    MTA_STS = "mta-sts"
    DANE = "dane"


class Authentication(enum.Enum):
    """How the peer of a TLS session was authenticated."""

    DANE_EE = "dane-ee"
    DANE_TA = "dane-ta"
    MTA_STS = "mta-sts"
    PKIX = "pkix"
    NONE = "none"


class TLSFailureReason(enum.Enum):
    """Why a host did not meet its requirement. The values are stored in the attempt rows
    and the TLS cache and shown by `queue show`: never change them."""

    NO_STARTTLS = "no-starttls"
    HANDSHAKE_FAILED = "tls-handshake-failed"
    CERT_NOT_VERIFIED = "cert-not-verified"
    MTA_STS_MISMATCH = "mta-sts-mismatch"
    DANE_MISMATCH = "dane-mismatch"
    POLICY = "policy"                  # the route is "pickup": no host was tried
    # RFC 8689: a REQUIRETLS message, and its MX hosts were not found securely (DNSSEC or
    # MTA-STS enforce) or the host does not offer REQUIRETLS to relay it further
    REQUIRETLS = "requiretls"


@dataclass(frozen=True)
class HostRequirement:
    """What one MX host must offer: the route's requirement, raised by DANE or MTA-STS."""

    requirement: TLSRequirement
    tlsa: tuple[TLSARecord, ...] = ()
    source: RequirementSource = RequirementSource.POLICY


@dataclass(frozen=True)
class HostSkipped:
    """The host must not be used at all; TLS_FAILURE is set when that counts as the host
    failing a TLS requirement (confidential mail then goes to pickup)."""

    detail: str
    tls_failure: TLSFailureReason | None = None


@dataclass(frozen=True)
class TLSEvidence:
    """What one completed handshake showed.

    chain_verified: OpenSSL's PKIX verdict on the chain against the system store and
    ca_file (the host name is checked here, by `certificate_names_host`); None when the
    session's context did not verify, so nothing is known.
    """

    version: str | None
    cipher: str | None
    chain: tuple[bytes, ...] = ()
    chain_verified: bool | None = None
    chain_detail: str = ""             # why the chain did not verify, when it did not


@dataclass(frozen=True)
class TLSVerdict:
    met: bool
    detail: str
    authentication: Authentication = Authentication.NONE
    failure: TLSFailureReason | None = None
    # Opportunistic TLS whose handshake broke: like Postfix at level "may", the message goes
    # in plaintext on a new connection instead (a broken TLS stack is no reason to defer).
    fallback_to_plaintext: bool = False

    @property
    def verified(self) -> bool:
        return self.authentication is not Authentication.NONE


def sts_allows(policy: STSPolicy | None, host: str) -> bool:
    """RFC 8461 5: under an enforced policy only the listed mx hosts may be used."""
    return policy is None or not policy.enforced or policy.matches(host)


def host_requirement(route: TLSRequirement, host: str, tlsa: TLSALookup | None,
                     sts: STSPolicy | None) -> HostRequirement | HostSkipped:
    """What HOST must offer for mail on ROUTE, given its TLSA look-up (None: DANE off) and
    the domain's MTA-STS policy (None: none found)."""
    if tlsa is not None and tlsa.status is TLSAStatus.TEMPFAIL:
        return HostSkipped(f"{host}: TLSA lookup failed ({tlsa.detail}); not using this host")
    if not sts_allows(sts, host):
        return HostSkipped(f"MTA-STS enforce: {host} not in policy mx",
                           TLSFailureReason.MTA_STS_MISMATCH)
    if tlsa is not None and tlsa.status is TLSAStatus.USABLE:
        return HostRequirement(TLSRequirement.DANE, tuple(tlsa.usable), RequirementSource.DANE)
    if sts is not None and sts.enforced:
        return HostRequirement(route.at_least(TLSRequirement.VERIFIED), (),
                               RequirementSource.MTA_STS)
    if tlsa is not None and tlsa.status is TLSAStatus.UNUSABLE:
        return HostRequirement(route.at_least(TLSRequirement.ENCRYPTED), (),
                               RequirementSource.DANE)
    return HostRequirement(route)


def judge_no_starttls(need: HostRequirement, host: str) -> TLSVerdict:
    """The host offered no STARTTLS (or plaintext is what was asked for)."""
    if not need.requirement.needs_tls:
        return TLSVerdict(True, "plaintext, no STARTTLS")
    return TLSVerdict(False, f"{host}: no STARTTLS", failure=TLSFailureReason.NO_STARTTLS)


def judge_handshake_failure(need: HostRequirement, host: str, detail: str,
                            chain_rejected: bool) -> TLSVerdict:
    """STARTTLS was refused or the handshake failed; CHAIN_REJECTED when it failed because
    a verifying context rejected the certificate chain."""
    fallback = need.requirement is TLSRequirement.OPPORTUNISTIC
    failure = _verification_failure(need) if chain_rejected else TLSFailureReason.HANDSHAKE_FAILED
    return TLSVerdict(False, detail, failure=failure, fallback_to_plaintext=fallback)


def judge(need: HostRequirement, host: str, evidence: TLSEvidence) -> TLSVerdict:
    """Whether a completed handshake with HOST met NEED, and how the peer was authenticated."""
    requirement = need.requirement
    if requirement is TLSRequirement.DANE:
        check = verify_detail(need.tlsa, list(evidence.chain), host)
        if check.verdict is not DaneVerdict.MATCH:
            return TLSVerdict(False, f"{host}: DANE: {check.detail}",
                              failure=TLSFailureReason.DANE_MISMATCH)
        usage = check.record.usage if check.record is not None else DANE_EE
        how = Authentication.DANE_EE if usage == DANE_EE else Authentication.DANE_TA
        return TLSVerdict(True, "DANE-verified", how)
    if requirement is TLSRequirement.VERIFIED:
        problem = _pkix_problem(host, evidence)
        if problem:
            prefix = "MTA-STS enforce: " if need.source is RequirementSource.MTA_STS else ""
            return TLSVerdict(False, f"{prefix}{host}: {problem}",
                              failure=_verification_failure(need))
        if need.source is RequirementSource.MTA_STS:
            return TLSVerdict(True, "MTA-STS-verified", Authentication.MTA_STS)
        return TLSVerdict(True, "certificate verified", Authentication.PKIX)
    if requirement is TLSRequirement.ENCRYPTED:
        if need.source is RequirementSource.DANE:
            return TLSVerdict(True, "TLS required by unusable DANE records")
        return TLSVerdict(True, "certificate not checked")
    return TLSVerdict(True, f"STARTTLS, {evidence.version}")


def _verification_failure(need: HostRequirement) -> TLSFailureReason:
    if need.source is RequirementSource.MTA_STS:
        return TLSFailureReason.MTA_STS_MISMATCH
    return TLSFailureReason.CERT_NOT_VERIFIED


def _pkix_problem(host: str, evidence: TLSEvidence) -> str:
    if evidence.chain_verified is not True:
        return f"certificate not verified: {evidence.chain_detail or 'unknown'}"
    if not evidence.chain or not certificate_names_host(evidence.chain[0], host):
        return "certificate name does not match"
    return ""


def certificate_names_host(leaf_der: bytes, host: str) -> bool:
    """The leaf's subjectAltName covers HOST: a DNS name (one-label wildcards, RFC 6125 as
    narrowed by RFC 8461 4.1), or an IP address for a next hop given as an address.

    The subject CN is never consulted (OpenSSL, as Python configures it, would fall back to
    it for a certificate without DNS names; MTA-STS and RFC 6125 forbid that)."""
    try:
        cert = x509.load_der_x509_certificate(leaf_der)
    except ValueError:
        return False
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return any(dns_name_matches(name, host) for name in san_dns_names(cert))
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return False
    return address in san.value.get_values_for_type(x509.IPAddress)


def server_name(host: str, name_for_an_address: str) -> str:
    """The name to send in SNI and to check the certificate against when connecting to
    HOST: HOST itself, or NAME_FOR_AN_ADDRESS when HOST is an IP address (SNI carries host
    names only, RFC 6066 3)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host
    return name_for_an_address
