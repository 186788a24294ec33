"""`sealgate probe DOMAIN`: what each MX host of a domain offers, what the domain
publishes (MTA-STS, DANE), and what Sealgate would therefore do with mail to it in
each routing mode.

The probe is a diagnosis for admins, not an input to routing: delivery enforces TLS
during the real attempt. It predicts by calling the functions delivery calls
(gateway.tls.verdict: host_requirement, then judge on what the session showed), so the
two cannot disagree, and says which rule decided.

Per host it makes up to two connections: one with an unverified context to see what
the host presents even when verification would fail, and, when that worked, one with
a verifying context to get OpenSSL's own PKIX verdict for system roots + ca_file.
"""

from __future__ import annotations

import asyncio
import datetime
import enum
import os
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import aiosmtplib
import dns.asyncresolver
import dns.exception
import dns.name

from gateway.delivery.mx import LookupStatus, MXHost, MXLookup, MXResolver
from gateway.delivery.nexthop import nexthop_hosts
from gateway.diagnostics.dnssec_check import ResolverCheck, check_resolver
from gateway.diagnostics.route import span
from gateway.tls.dane import DaneVerdict, TLSALookup, TLSAStatus, lookup_tlsa, verify_detail
from gateway.tls.inspect import CertFacts, cert_facts, presented_chain
from gateway.tls.mta_sts import STSLookup, STSMode, STSStatus, fetch_policy
from gateway.tls.verdict import (
    HostRequirement,
    HostSkipped,
    RequirementSource,
    TLSEvidence,
    TLSRequirement,
    TLSVerdict,
    certificate_names_host,
    host_requirement,
    judge,
    judge_handshake_failure,
    judge_no_starttls,
    server_name,
)

if TYPE_CHECKING:
    from gateway.classify.policy import NextHop

__all__ = [
    "MODES",
    "HostProbe",
    "PKIXStatus",
    "ProbeReport",
    "RouteAction",
    "RoutePrediction",
    "format_report",
    "predict_route",
    "probe",
]

MODES = ("require-tls", "require-verified-tls", "pickup", "not-confidential")
_CLOSE_GRACE = 2.0  # seconds a host gets to finish the TLS shutdown after QUIT
_CERT_INVALID = "certificate not valid: "


class PKIXStatus(enum.Enum):
    VALID = "valid"            # chains to a trusted root (system store + ca_file)
    INVALID = "invalid"
    UNKNOWN = "unknown"        # no TLS, or the checking connection failed


class RouteAction(enum.Enum):
    DELIVER_TLS = "deliver-tls"
    DELIVER_OPPORTUNISTIC = "deliver-opportunistic"
    PICKUP = "pickup"
    DEFER = "defer"
    BOUNCE = "bounce"


@dataclass(frozen=True)
class RoutePrediction:
    action: RouteAction
    text: str
    host: str = ""
    address: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action.value, "text": self.text, "host": self.host,
                "address": self.address}


@dataclass
class HostProbe:
    name: str
    preference: int
    address: str
    connected: bool = False
    error: str = ""                      # connection or SMTP failure before TLS
    banner: str = ""
    starttls_offered: bool = False
    tls_version: str | None = None
    cipher: str | None = None
    tls_error: str = ""                  # STARTTLS refused or handshake failed
    chain: list[CertFacts] = field(default_factory=list)
    chain_der: list[bytes] = field(default_factory=list, repr=False)
    pkix: PKIXStatus = PKIXStatus.UNKNOWN
    pkix_detail: str = ""
    name_match: bool | None = None
    dane: TLSALookup | None = None
    dane_verdict: DaneVerdict | None = None
    dane_detail: str = ""
    sts_match: bool | None = None        # None: the domain has no MTA-STS policy
    tls_name: str = ""                   # a nexthop's: the name its certificate must carry
    dnssec: bool = False                 # its MX and address answers were validated

    @property
    def checked_name(self) -> str:
        """The name require-verified-tls checks the certificate for."""
        return self.tls_name or self.name

    @property
    def label(self) -> str:
        return f"{self.name} [{self.address}]"

    @property
    def tls(self) -> bool:
        return self.tls_version is not None

    @property
    def pkix_verified(self) -> bool:
        """What `require-verified-tls` and MTA-STS need: trusted chain and MX name (a
        nexthop's checked name)."""
        return self.pkix is PKIXStatus.VALID and bool(self.name_match)

    def as_dict(self) -> dict[str, Any]:
        dane = self.dane
        return {
            "name": self.name, "preference": self.preference, "address": self.address,
            "connected": self.connected, "error": self.error, "banner": self.banner,
            "starttls_offered": self.starttls_offered, "tls_version": self.tls_version,
            "cipher": self.cipher, "tls_error": self.tls_error,
            "certificates": [c.as_dict() for c in self.chain],
            "pkix": {"status": self.pkix.value, "detail": self.pkix_detail,
                     "name_match": self.name_match, "verified": self.pkix_verified},
            "dane": {
                "status": dane.status.value if dane else None,
                "tlsa_name": dane.name if dane else None,
                "records": [r.to_text() for r in dane.records] if dane else [],
                "verdict": self.dane_verdict.value if self.dane_verdict else None,
                "detail": self.dane_detail or (dane.detail if dane else ""),
            },
            "mta_sts_match": self.sts_match,
            "certificate_name": self.checked_name,
            "dnssec": self.dnssec,
        }


@dataclass
class ProbeReport:
    domain: str
    port: int
    probed_at: datetime.datetime
    mx_status: LookupStatus
    mx_detail: str = ""
    hosts: list[HostProbe] = field(default_factory=list)
    sts: STSLookup | None = None
    routes: dict[str, RoutePrediction] = field(default_factory=dict)
    nexthop: dict[str, Any] | None = None  # the policy's nexthop and what is checked on it
    # What the gateway's MTA-STS cache holds for the domain (mta_sts.cache_status): the
    # probe fetches live, delivery uses the cache; the difference is what admins ask about.
    sts_cache: dict[str, Any] | None = None
    mx_dnssec: bool = False                # the MX answer (or its denial) was validated
    resolver: ResolverCheck | None = None  # whether the resolver validates DNSSEC at all

    def as_dict(self) -> dict[str, Any]:
        sts = self.sts
        return {
            "domain": self.domain, "port": self.port, "probed_at": self.probed_at.isoformat(),
            "mx": {"status": self.mx_status.value, "detail": self.mx_detail,
                   "dnssec": self.mx_dnssec},
            "resolver": self.resolver.as_dict() if self.resolver else None,
            "hosts": [h.as_dict() for h in self.hosts],
            "mta_sts": {
                "status": sts.status.value if sts else None,
                "detail": sts.detail if sts else "",
                "policy": sts.policy.as_dict() if sts and sts.policy else None,
            },
            "routes": {mode: route.as_dict() for mode, route in self.routes.items()},
            "nexthop": self.nexthop,
            "mta_sts_cache": self.sts_cache,
        }


# -- probing -----------------------------------------------------------------------------


def _unverified_context() -> ssl.SSLContext:
    # Like delivery for require-tls: any certificate, but never below TLS 1.2.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _chain_context(ca_file: str) -> ssl.SSLContext:
    """Chain only; the name is checked separately so the report can say which failed."""
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


async def probe(domain: str, *, resolver: dns.asyncresolver.Resolver, port: int, ca_file: str,
                https_port: int = 443, timeout: float = 10,
                helo_name: str = "localhost", nexthop: NextHop | None = None,
                nexthop_rule: str = "",
                dnssec_names: tuple[str, str] | None = None) -> ProbeReport:
    """Probe DOMAIN's MX hosts on PORT; raises ValueError for a malformed domain name.
    NEXTHOP (the policy's, from the rule at NEXTHOP_RULE): probe its hosts instead, on its
    port, as delivery uses them: no MTA-STS, DANE only for hosts found by name.
    DNSSEC_NAMES (a signed name, a bogus one): check that the resolver validates."""
    report = await _probe(domain, resolver=resolver, port=port, ca_file=ca_file,
                          https_port=https_port, timeout=timeout, helo_name=helo_name,
                          nexthop=nexthop, nexthop_rule=nexthop_rule)
    if dnssec_names is not None:
        report.resolver = await check_resolver(resolver, *dnssec_names)
    return report


async def _probe(domain: str, *, resolver: dns.asyncresolver.Resolver, port: int, ca_file: str,
                 https_port: int, timeout: float, helo_name: str, nexthop: NextHop | None,
                 nexthop_rule: str) -> ProbeReport:
    domain = domain.strip().rstrip(".").lower()
    try:
        dns.name.from_text(domain)
    except dns.exception.DNSException as exc:
        raise ValueError(f"{domain!r} is not a valid domain name: {exc}") from None
    if "." not in domain:
        raise ValueError(f"{domain!r} is not a valid domain name:"
                         " use the full name, e.g. example.org")
    now = datetime.datetime.now(datetime.UTC)
    if nexthop is not None:
        return await _probe_nexthop(domain, nexthop, nexthop_rule, now, resolver=resolver,
                                    port=port, ca_file=ca_file, timeout=timeout,
                                    helo_name=helo_name)
    sts_task = asyncio.ensure_future(
        fetch_policy(domain, resolver, https_port=https_port, ca_file=ca_file, timeout=timeout))
    try:
        try:
            lookup = await MXResolver(resolver).lookup(domain)
        except dns.exception.DNSException as exc:  # those MXResolver does not map itself
            lookup = MXLookup(LookupStatus.TEMPORARY, detail=f"{domain}: DNS lookup failed: {exc}")
        hosts: list[HostProbe] = []
        if lookup.status is LookupStatus.OK:
            hosts = await _probe_hosts(lookup.hosts, resolver, port, ca_file, timeout, helo_name)
    finally:
        sts = await sts_task  # never left running, even when the MX part raised
    report = ProbeReport(domain, port, now, lookup.status, lookup.detail, hosts, sts,
                         mx_dnssec=lookup.dnssec)
    policy = sts.policy if sts.status is STSStatus.FOUND else None
    for host in hosts:
        host.sts_match = policy.matches(host.name) if policy else None
    report.routes = {mode: predict_route(report, mode) for mode in MODES}
    return report


async def _probe_nexthop(domain: str, nexthop: NextHop, rule: str, now: datetime.datetime, *,
                         resolver: dns.asyncresolver.Resolver, port: int, ca_file: str,
                         timeout: float, helo_name: str) -> ProbeReport:
    from gateway.diagnostics.route import nexthop_checks

    port = nexthop.port or port
    try:
        lookup = await nexthop_hosts(MXResolver(resolver), nexthop, domain)
    except dns.exception.DNSException as exc:
        lookup = MXLookup(LookupStatus.TEMPORARY,
                          detail=f"{nexthop.text}: DNS lookup failed: {exc}")
    hosts: list[HostProbe] = []
    if lookup.status is LookupStatus.OK:
        hosts = await _probe_hosts(lookup.hosts, resolver, port, ca_file, timeout, helo_name,
                                   dane=not nexthop.is_address)
    report = ProbeReport(domain, port, now, lookup.status, lookup.detail, hosts, None,
                         nexthop={**nexthop_checks(nexthop, domain, port), "rule": rule},
                         mx_dnssec=lookup.dnssec)
    report.routes = {mode: predict_route(report, mode) for mode in MODES}
    return report


async def _probe_hosts(mx_hosts: list[MXHost], resolver: dns.asyncresolver.Resolver, port: int,
                       ca_file: str, timeout: float, helo_name: str,
                       dane: bool = True) -> list[HostProbe]:
    # DANE only for hosts found through validated answers (RFC 7672 2.2.1), as delivery.
    names = list(dict.fromkeys(h.name for h in mx_hosts if h.dnssec)) if dane else []
    answers = await asyncio.gather(*(lookup_tlsa(resolver, n, port) for n in names))
    tlsa = dict(zip(names, answers, strict=True))
    probes = [HostProbe(h.name, h.preference, address, tls_name=h.tls_name, dnssec=h.dnssec)
              for h in mx_hosts for address in h.addresses]
    unverified, verifying = _unverified_context(), _chain_context(ca_file)
    await asyncio.gather(*(_probe_host(p, port, unverified, verifying, timeout, helo_name)
                           for p in probes))
    for host in probes:
        if host.name in tlsa:
            _judge_dane(host, tlsa[host.name])
    return probes


async def _probe_host(host: HostProbe, port: int, unverified: ssl.SSLContext,
                      verifying: ssl.SSLContext, timeout: float, helo_name: str) -> None:
    if not await _session(host, port, unverified, timeout, helo_name, record=True):
        return
    host.name_match = bool(host.chain_der) and certificate_names_host(host.chain_der[0],
                                                                      host.checked_name)
    check = HostProbe(host.name, host.preference, host.address, tls_name=host.tls_name)
    if await _session(check, port, verifying, timeout, helo_name, record=False):
        host.pkix, host.pkix_detail = PKIXStatus.VALID, "chain verified"
    elif check.tls_error.startswith(_CERT_INVALID):
        host.pkix, host.pkix_detail = PKIXStatus.INVALID, check.tls_error[len(_CERT_INVALID):]
    else:
        host.pkix_detail = f"could not check: {check.error or check.tls_error}"


async def _session(host: HostProbe, port: int, context: ssl.SSLContext, timeout: float,
                   helo_name: str, *, record: bool) -> bool:
    """Connect, EHLO, STARTTLS with CONTEXT, QUIT; fills HOST (with the TLS facts when
    RECORD) and says whether the TLS handshake succeeded."""
    client = aiosmtplib.SMTP(hostname=host.address, port=port, start_tls=False, timeout=timeout,
                             local_hostname=helo_name)
    try:
        await client.connect()
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        host.error = f"connection failed: {_connect_error(exc)}"
        return False
    raw = client.transport  # the TCP transport, before STARTTLS wraps it
    try:
        host.connected = True
        try:
            ehlo = await client.ehlo()
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            host.error = f"EHLO failed: {_text(exc)}"
            return False
        host.banner = ehlo.message.splitlines()[0] if ehlo.message else ""
        host.starttls_offered = client.supports_extension("starttls")
        if not host.starttls_offered:
            return False
        try:
            sni = server_name(host.name, host.checked_name)
            await client.starttls(server_hostname=sni, tls_context=context)
        except aiosmtplib.SMTPResponseException as exc:
            host.tls_error = f"STARTTLS refused: {exc.code} {exc.message}"
            return False
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            host.tls_error = _tls_failure(exc)
            return False
        ssl_object = client.get_transport_info("ssl_object")
        if record and ssl_object is not None:
            cipher = ssl_object.cipher()
            host.tls_version, host.cipher = ssl_object.version(), cipher[0] if cipher else None
            host.chain_der = presented_chain(ssl_object)
            host.chain = [_facts(der) for der in host.chain_der]
        return True
    finally:
        await _close(client, raw)



def _facts(der: bytes) -> CertFacts:
    """cert_facts(), or a placeholder saying why not: one odd certificate must not
    abort the whole report."""
    try:
        return cert_facts(der)
    except ValueError as exc:
        return CertFacts(f"(unparsable certificate: {exc})", "",
                         datetime.datetime.min.replace(tzinfo=datetime.UTC), [])


def _tls_failure(exc: BaseException) -> str:
    cause = exc if isinstance(exc, ssl.SSLError) else exc.__cause__ or exc.__context__ or exc
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"{_CERT_INVALID}{cause.verify_message or cause}"
    if "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return f"{_CERT_INVALID}{_text(exc)}"
    return f"TLS handshake failed: {_text(exc)}"


def _text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _connect_error(exc: BaseException) -> str:
    """"Connection refused" rather than aiosmtplib's sentence repeating address and port,
    which the report already shows."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, OSError) and cause.errno:
        return os.strerror(cause.errno)
    if isinstance(exc, (TimeoutError, aiosmtplib.SMTPTimeoutError)) or \
            isinstance(cause, TimeoutError):
        return "timed out"
    return _text(exc)


async def _close(client: aiosmtplib.SMTP, raw: asyncio.BaseTransport | None) -> None:
    """QUIT, then wait until the TCP connection is really gone.

    Closing a TLS transport only starts the close_notify exchange; the TCP transport
    underneath closes later. The probe usually runs under asyncio.run(), which would
    otherwise end first and leave that socket to the garbage collector.
    """
    if client.is_connected:
        try:
            await client.quit()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            client.close()
    if raw is None:
        return
    for _ in range(int(_CLOSE_GRACE / 0.01)):
        if raw.is_closing():
            break
        await asyncio.sleep(0.01)
    else:
        cast(asyncio.Transport, raw).abort()  # the peer never finished the TLS shutdown
    for _ in range(2):  # let the transport's scheduled connection_lost close the socket
        await asyncio.sleep(0)


def _judge_dane(host: HostProbe, lookup: TLSALookup) -> None:
    host.dane = lookup
    if lookup.status is not TLSAStatus.USABLE:
        return
    if not host.chain_der:
        host.dane_verdict, host.dane_detail = DaneVerdict.MISMATCH, "no TLS: nothing to verify"
        return
    check = verify_detail(lookup.records, host.chain_der, host.name)
    host.dane_verdict, host.dane_detail = check.verdict, check.detail


# -- route prediction --------------------------------------------------------------------


@dataclass(frozen=True)
class _HostFit:
    ok: bool
    why: str               # what made it fit or not, for the route text
    tls_failure: bool = False   # reached, but could not meet a TLS requirement
    standard: str = ""     # "DANE" / "MTA-STS" when a published policy applied


_ROUTE_REQUIREMENT = {"require-tls": TLSRequirement.ENCRYPTED,
                      "require-verified-tls": TLSRequirement.VERIFIED,
                      "not-confidential": TLSRequirement.OPPORTUNISTIC}
_STANDARD = {RequirementSource.DANE: "DANE", RequirementSource.MTA_STS: "MTA-STS",
             RequirementSource.POLICY: ""}


def _fit(host: HostProbe, mode: str, report: ProbeReport) -> _HostFit:
    """Delivery's verdict for HOST in MODE, from what the probe saw: the same functions of
    gateway.tls.verdict that delivery calls during the real attempt."""
    if not host.connected or host.error:
        return _HostFit(False, f"{host.label}: {host.error}")
    policy = report.sts.policy if report.sts and report.sts.status is STSStatus.FOUND else None
    need = host_requirement(_ROUTE_REQUIREMENT[mode], host.name, host.dane, policy)
    if isinstance(need, HostSkipped):
        failed = need.tls_failure is not None
        return _HostFit(False, need.detail, tls_failure=failed,
                        standard="MTA-STS" if failed else "")
    verdict = _verdict(host, need)
    if verdict.fallback_to_plaintext:
        return _HostFit(True, "plaintext after failed STARTTLS")
    return _HostFit(verdict.met, verdict.detail, tls_failure=not verdict.met,
                    standard=_STANDARD[need.source])


def _verdict(host: HostProbe, need: HostRequirement) -> TLSVerdict:
    if host.tls:
        chain_verified = {PKIXStatus.VALID: True, PKIXStatus.INVALID: False}.get(host.pkix)
        evidence = TLSEvidence(host.tls_version, host.cipher, tuple(host.chain_der),
                               chain_verified, host.pkix_detail or host.pkix.value)
        checked = host.name if need.requirement is TLSRequirement.DANE else host.checked_name
        return judge(need, checked, evidence)
    if host.tls_error:
        # The probe's first session does not verify: its handshake never rejects a chain.
        return judge_handshake_failure(need, host.name, f"{host.name}: {host.tls_error}",
                                       chain_rejected=False)
    return judge_no_starttls(need, host.name)


def predict_route(report: ProbeReport, mode: str) -> RoutePrediction:
    """What delivery would do now for a recipient at the domain in MODE."""
    if mode == "pickup":
        return RoutePrediction(RouteAction.PICKUP, "pickup (policy: always pickup)")
    if report.mx_status is LookupStatus.TEMPORARY:
        return RoutePrediction(RouteAction.DEFER, f"defer ({report.mx_detail})")
    if report.mx_status is not LookupStatus.OK:
        return RoutePrediction(RouteAction.BOUNCE, f"bounce ({report.mx_detail})")
    fits = [(host, _fit(host, mode, report)) for host in report.hosts]
    for host, fit in fits:
        if fit.ok:
            return _deliver(host, fit, mode)
    failures = [fit for _, fit in fits]
    why = "; ".join(dict.fromkeys(fit.why for fit in failures))
    confidential = mode != "not-confidential"
    if confidential and any(fit.tls_failure for fit in failures):
        # Like delivery: a reached host that cannot meet the requirement means pickup.
        return RoutePrediction(RouteAction.PICKUP, f"pickup ({why})")
    if any(fit.standard for fit in failures):
        return RoutePrediction(RouteAction.DEFER, f"defer ({why})")
    return RoutePrediction(RouteAction.DEFER, f"defer (no MX host usable: {why})")


def _deliver(host: HostProbe, fit: _HostFit, mode: str) -> RoutePrediction:
    if mode == "not-confidential" and not fit.standard:
        return RoutePrediction(RouteAction.DELIVER_OPPORTUNISTIC,
                               f"deliver opportunistically to {host.label} ({fit.why})",
                               host.name, host.address)
    return RoutePrediction(RouteAction.DELIVER_TLS,
                           f"deliver over TLS to {host.label} ({fit.why})", host.name, host.address)


# -- report ------------------------------------------------------------------------------

_LABEL = 14


def _line(label: str, value: str, indent: int = 4) -> str:
    return f"{' ' * indent}{label:<{_LABEL}}{value}".rstrip()


def format_report(report: ProbeReport) -> str:
    out = [f"Probe of {report.domain} (SMTP port {report.port}, "
           f"{report.probed_at.strftime('%Y-%m-%d %H:%M:%S UTC')})", ""]
    if report.resolver is not None:
        out += [f"DNS resolver  {report.resolver.line}", ""]
    nexthop = report.nexthop
    if nexthop:
        out += [f"Nexthop {nexthop['nexthop']} ({nexthop['rule']})",
                _line("hosts", f"{nexthop['hosts']}, port {nexthop['port']}", 2),
                _line("certificate", f"require-verified-tls checks it for"
                      f" {nexthop['certificate_name']}", 2),
                _line("DANE", nexthop["dane"], 2),
                _line("MTA-STS", nexthop["mta_sts"], 2), ""]
    out.append("Nexthop hosts" if nexthop else "MX hosts")
    if report.mx_status is not LookupStatus.OK:
        out.append(_line("lookup", f"{report.mx_status.value}: {report.mx_detail}", 2))
    else:
        out.append(_line("DNSSEC", "MX answer validated" if report.mx_dnssec
                         else "MX answer NOT validated (no AD bit)", 2))
    for host in report.hosts:
        out.append(f"  {host.preference:>3} {host.label}")
        out.extend(_host_lines(host, report.probed_at))
    out += ["", "MTA-STS"]
    out.extend(_sts_lines(report))
    out.extend(_sts_cache_lines(report))
    out += ["", "Routing (what Sealgate would do now)"]
    width = max(len(m) for m in MODES) + 3
    for mode, route in report.routes.items():
        out.append(f"  {mode:<{width}}{route.text}")
    return "\n".join(out) + "\n"


def _host_lines(host: HostProbe, now: datetime.datetime) -> list[str]:
    if not host.connected or host.error:
        return [_line("connection", host.error or "failed", 6)]
    lines = [_line("banner", host.banner, 6),
             _line("STARTTLS", "offered" if host.starttls_offered else "not offered", 6)]
    if host.tls_error:
        lines.append(_line("TLS", host.tls_error, 6))
    if host.tls:
        lines.append(_line("TLS", f"{host.tls_version}  {host.cipher}", 6))
    for position, cert in enumerate(host.chain):
        title = "certificate" if position == 0 else f"chain [{position}]"
        days = (cert.not_after - now).days
        expiry = f"{cert.not_after:%Y-%m-%d} ({'EXPIRED' if days < 0 else f'in {days} days'})"
        lines.append(_line(title, f"subject  {cert.subject or '(empty)'}", 6))
        lines.append(_line("", f"issuer   {cert.issuer or '(empty)'}", 6))
        lines.append(_line("", f"expires  {expiry}", 6))
        if position == 0:
            lines.append(_line("", f"names    {', '.join(cert.dns_names) or '(none)'}", 6))
    if host.tls:
        matched = f"matches {host.tls_name}" if host.tls_name else "matches"
        name = matched if host.name_match else f"does NOT match {host.checked_name}"
        verdict = "verified" if host.pkix_verified else "NOT verified"
        why = f" ({host.pkix_detail})" if host.pkix is not PKIXStatus.VALID else ""
        lines.append(_line("PKIX", f"{verdict}: chain {host.pkix.value}{why}, name {name}", 6))
    lines.append(_line("DNSSEC", "MX and address answers validated" if host.dnssec
                       else "MX or address answers NOT validated", 6))
    lines.append(_line("DANE", _dane_text(host), 6))
    if host.sts_match is not None:
        lines.append(_line("MTA-STS", "mx matches policy" if host.sts_match
                           else "mx NOT in policy", 6))
    return lines


def _dane_text(host: HostProbe) -> str:
    dane = host.dane
    if dane is None and not host.dnssec:
        return "not applied: its MX or address answers are not DNSSEC-validated (RFC 7672 2.2.1)"
    if dane is None:
        return "not checked"
    if dane.status is TLSAStatus.USABLE and host.dane_verdict is not None:
        return f"{host.dane_verdict.value}: {host.dane_detail}"
    return f"{dane.status.value}: {dane.detail}"


def _sts_cache_lines(report: ProbeReport) -> list[str]:
    """The cached policy delivery uses, with its age, and failed fetches held back."""
    status = report.sts_cache
    if status is None or report.nexthop:
        return []
    cached, failed = status.get("cached"), status.get("failed_fetches")
    now = report.probed_at.timestamp()
    lines = []
    if cached:
        expiry = ("expired" if cached["expired"]
                  else f"expires in {span(cached['expires'] - now)}")
        lines.append(_line("cached", f"{cached['mode']}, id {cached['id']}, fetched"
                           f" {span(cached['age_seconds'])} ago, {expiry}", 2))
    else:
        lines.append(_line("cached", "no policy in the gateway's cache", 2))
    if failed:
        retry = datetime.datetime.fromtimestamp(failed["retry_at"], datetime.timezone.utc)
        lines.append(_line("fetches", f"failed {failed['failures']}x in a row"
                           f" ({failed['detail']}); next try after {retry:%Y-%m-%d %H:%M:%S}"
                           " UTC", 2))
    return lines


def _sts_lines(report: ProbeReport) -> list[str]:
    sts = report.sts
    if sts is None and report.nexthop:
        return [_line("status", "not applied (nexthop route)", 2)]
    if sts is None:
        return [_line("status", "not checked", 2)]
    shown = sts.detail if sts.detail and sts.status is not STSStatus.FOUND else ""
    lines = [_line("status", sts.status.value + (f" ({shown})" if shown else ""), 2)]
    policy = sts.policy
    if policy is not None:
        note = "" if policy.mode is STSMode.ENFORCE else " (not enforced)"
        lines.append(_line("mode", f"{policy.mode.value}{note}, id {policy.id}", 2))
        lines.append(_line("mx", ", ".join(policy.mx_patterns) or "(none)", 2))
        lines.append(_line("max_age", f"{policy.max_age} s", 2))
        for host in dict.fromkeys(h.name for h in report.hosts):
            verdict = "matches" if policy.matches(host) else "NOT in policy"
            lines.append(_line("", f"{host}: {verdict}", 2))
    return lines
