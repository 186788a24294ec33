"""Delivery to the recipient domain's MX hosts with the TLS requirement of the route
enforced during the real attempt: a host that cannot meet it never gets the message.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import aiosmtplib

from gateway.delivery.dsn_options import DSNRequest
from gateway.delivery.mx import LookupStatus, MXHost, MXResolver
from gateway.delivery.pipeline import data_payload, envelope_lines, exchange
from gateway.delivery.pool import ConnectionPool, close_quietly
from gateway.ops import metrics
from gateway.tls.dane import TLSALookup, TLSARecord, TLSAStatus, lookup_tlsa
from gateway.tls.downgrade import DowngradeGuard, DowngradeKind
from gateway.tls.inspect import cert_facts, presented_chain
from gateway.tls.knowledge import TLSCache
from gateway.tls.mta_sts import MTASTSResolver, STSMode, STSPolicy, STSStatus
from gateway.tls.pkix import chain_verifies
from gateway.tls.sessions import ResumingContext
from gateway.tls.verdict import (
    Authentication,
    HostRequirement,
    HostSkipped,
    TLSEvidence,
    TLSFailureReason,
    TLSRequirement,
    TLSVerdict,
    host_requirement,
    judge,
    judge_handshake_failure,
    judge_no_starttls,
    server_name,
    sts_allows,
)
from gateway.tlsrpt.results import SessionRecorder, sessions_of

if TYPE_CHECKING:
    from gateway.classify.policy import NextHop

__all__ = [
    "INTERNAL", "REQUIREMENT_FOR_MODE", "Deliverer", "DeliverySettings", "DomainResult",
    "HostAttempt", "HostTLSPolicy", "Outcome", "STSPolicySource", "TLSFailure",
    "TLSRequirement", "tls_context",
]

log = logging.getLogger("sealgate.delivery")


# HostTLSPolicy was this module's name for what verdict.py calls HostRequirement.
HostTLSPolicy = HostRequirement
REQUIREMENT_FOR_MODE = {r.value: r for r in TLSRequirement if r is not TLSRequirement.DANE}
INTERNAL = "internal"  # route mode: hand to internal.relay (portal replies to senders)


class STSPolicySource(Protocol):
    """Where delivery gets a domain's MTA-STS policy (MTASTSResolver, with its cache)."""

    async def policy_for(self, domain: str) -> STSPolicy | None: ...


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    TLS_UNAVAILABLE = "tls-unavailable"  # every reachable host failed the TLS requirement
    TEMPORARY = "temporary"
    PERMANENT = "permanent"


@dataclass
class HostAttempt:
    host: str
    address: str
    reply: str = ""
    tls_version: str | None = None
    cipher: str | None = None
    verified: bool = False
    tls_failure: str | None = None  # a TLSFailureReason value (stored as is), or "policy"
    starttls_offered: bool | None = None  # None: never got as far as EHLO
    cert_subject: str = ""
    cert_issuer: str = ""
    authentication: Authentication = Authentication.NONE
    tlsa: tuple[TLSARecord, ...] = ()  # the host's usable TLSA records it was checked against
    tlsa_failed: bool = False          # its TLSA look-up failed (host not used)
    local_address: str = ""            # our end of the connection (sending-mta-ip)

    def note(self, verdict: TLSVerdict) -> None:
        self.authentication = verdict.authentication
        self.verified = verdict.verified


@dataclass
class DomainResult:
    """What happened to each recipient of one message at one domain."""

    outcome: Outcome
    reply: str
    accepted: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)      # permanent, per recipient
    deferred: dict[str, str] = field(default_factory=dict)     # temporary, per recipient
    attempts: list[HostAttempt] = field(default_factory=list)
    next_hop_dsn: bool = False  # the host that took it offers DSN: the request went with it

    @property
    def delivered_by(self) -> HostAttempt | None:
        """The attempt whose host took the message (the last one), if it was delivered."""
        return self.attempts[-1] if self.outcome is Outcome.DELIVERED and self.attempts \
            else None

    @property
    def tls_reason(self) -> str:
        reasons = [a.tls_failure for a in self.attempts if a.tls_failure]
        return reasons[-1] if reasons else TLSFailureReason.NO_STARTTLS.value


@dataclass(frozen=True)
class DeliverySettings:
    port: int = 25
    helo_name: str = "localhost"
    ca_file: str = ""
    timeout: float = 30.0


_RELEARN_AFTER = 60.0   # seconds before unchanged TLS facts of a host are written again
_MAX_LEARNED = 10_000   # (domain, host) pairs remembered for that

_TLS_FACTS = ("starttls_offered", "tls_version", "cipher", "verified", "cert_subject",
              "cert_issuer",
              "authentication", "local_address")


class TLSFailure(Exception):
    def __init__(self, verdict: TLSVerdict) -> None:
        super().__init__(verdict.detail)
        self.verdict = verdict

    @property
    def reason(self) -> str:
        return (self.verdict.failure or TLSFailureReason.HANDSHAKE_FAILED).value


def tls_context(requirement: TLSRequirement, ca_file: str) -> ssl.SSLContext:
    """The client context for REQUIREMENT. VERIFIED has OpenSSL verify the chain only: the
    host name is checked by verdict.judge(), the same function the probe uses. All but
    DANE's resume TLS sessions (DANE-TA needs the full chain of a full handshake)."""
    if requirement is TLSRequirement.DANE:
        context = ssl.create_default_context()
    else:
        context = ResumingContext()
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    if requirement is not TLSRequirement.VERIFIED:  # DANE checks the chain against TLSA itself
        # Unverified TLS still beats plaintext against passive eavesdroppers (RFC 7435).
        context.verify_mode = ssl.CERT_NONE
    return context


class Deliverer:
    def __init__(self, resolver: MXResolver, settings: DeliverySettings,
                 tls_cache: TLSCache | None = None, mta_sts: STSPolicySource | None = None,
                 dane: bool = True,
                 nexthops: Callable[[str], NextHop | None] | None = None,
                 downgrade: DowngradeGuard | None = None) -> None:
        self.resolver = resolver
        self.downgrade = downgrade  # delivery.downgrade_protection (gateway/tls/downgrade.py)
        self.nexthops = nexthops  # domain -> the policy's nexthop for it (delivery/nexthop.py)
        self.settings = settings
        self.tls_cache = tls_cache
        self.mta_sts = mta_sts
        self.dane = dane
        self.pool = ConnectionPool()
        self._contexts = {r: tls_context(r, settings.ca_file) for r in TLSRequirement}
        # (domain, host) -> the TLS facts last written to the cache, and when (monotonic).
        self._learned: dict[tuple[str, str], tuple[tuple[bool, bool, str], float]] = {}
        self.tls_sessions: SessionRecorder | None = None  # TLS reporting (RFC 8460), when on

    @metrics.timed_delivery("mx")
    async def deliver(self, domain: str, sender: str, rcpts: list[str], content: bytes,
                      requirement: TLSRequirement, smtputf8: bool = False,
                      dsn: DSNRequest | None = None, domain_policies: bool = True,
                      requiretls: bool = False) -> DomainResult:
        """SMTPUTF8: the message was received with it, so only a next hop offering SMTPUTF8
        may take it (RFC 6531 3.4); one that does not gets it bounced with 5.6.7. DSN: the
        sender's DSN request, passed on to a host that offers DSN.
        DOMAIN_POLICIES off ("TLS-Required: No", RFC 8689 5): neither the domain's MTA-STS
        policy nor its hosts' TLSA records are looked up or applied.
        REQUIRETLS (RFC 8689 4.2.1): MX hosts found securely (DNSSEC or MTA-STS enforce),
        a verified certificate (PKIX and name, or DANE), a host offering REQUIRETLS, and the
        message relayed with it; otherwise TLS_UNAVAILABLE."""
        if requiretls:
            requirement = requirement.at_least(TLSRequirement.VERIFIED)
        nexthop = self.nexthops(domain) if self.nexthops is not None else None
        if nexthop is not None:
            return await self._deliver_to_nexthop(domain, nexthop, sender, rcpts, content,
                                                  requirement, smtputf8, dsn, requiretls)
        lookup = await self.resolver.lookup(domain)
        if lookup.status is LookupStatus.TEMPORARY:
            return DomainResult(Outcome.TEMPORARY, f"4.4.3 {lookup.detail}")
        if lookup.status is not LookupStatus.OK:
            code = "5.1.10" if lookup.status is LookupStatus.NULL_MX else "5.1.2"
            return DomainResult(Outcome.PERMANENT, f"{code} {lookup.detail}")
        if requirement.needs_tls and self._known_without_tls(domain, lookup.hosts):
            return DomainResult(Outcome.TLS_UNAVAILABLE,
                                "every MX host was recently seen without STARTTLS",
                                attempts=[HostAttempt(h.name, "", "known from the TLS cache",
                                                      tls_failure=TLSFailureReason.NO_STARTTLS.value)
                                          for h in lookup.hosts])
        sts, sts_failure = await self._sts_policy(domain) if domain_policies else (None, "")
        if requiretls and not (lookup.dnssec or (sts is not None and sts.enforced)):
            return _mx_not_secure(domain, lookup.hosts)
        hosts = [h for h in lookup.hosts if sts_allows(sts, h.name)]
        if lookup.hosts and not hosts:
            result = _sts_mismatch(lookup.hosts, requirement)
        else:
            result = await self._try_hosts(hosts, sender, rcpts, content, requirement,
                                           sts=sts, standards=domain_policies,
                                           smtputf8=smtputf8, dsn=dsn, requiretls=requiretls)
            self._learn(domain, result.attempts)
        if self.tls_sessions is not None and domain_policies:  # else checked against none
            self.tls_sessions.record(domain, sessions_of(domain, result.attempts, sts,
                                                         sts_failure))
        return result

    async def _deliver_to_nexthop(self, domain: str, nexthop: NextHop, sender: str,
                                  rcpts: list[str], content: bytes,
                                  requirement: TLSRequirement, smtputf8: bool,
                                  dsn: DSNRequest | None = None, requiretls: bool = False
                                  ) -> DomainResult:
        """The policy's nexthop instead of DOMAIN's MX hosts: the route's requirement on
        its hosts, DANE for hosts found by name, no MTA-STS (RFC 8461 is about MX hosts)."""
        from gateway.delivery.nexthop import nexthop_hosts

        lookup = await nexthop_hosts(self.resolver, nexthop, domain)
        if lookup.status is not LookupStatus.OK:
            return DomainResult(Outcome.TEMPORARY, f"4.4.4 {lookup.detail}")
        if requirement.needs_tls and self._known_without_tls(domain, lookup.hosts):
            return DomainResult(Outcome.TLS_UNAVAILABLE,
                                f"nexthop {nexthop.text} was recently seen without STARTTLS",
                                attempts=[HostAttempt(h.name, "", "known from the TLS cache",
                                                      tls_failure=TLSFailureReason.NO_STARTTLS.value)
                                          for h in lookup.hosts])
        result = await self._try_hosts(lookup.hosts, sender, rcpts, content, requirement,
                                       nexthop.port, standards=not nexthop.is_address,
                                       smtputf8=smtputf8, dsn=dsn, requiretls=requiretls)
        self._learn(domain, result.attempts)
        return result

    async def _sts_policy(self, domain: str) -> tuple[STSPolicy | None, str]:
        """The domain's policy, and why a published one could not be fetched ("" when it
        could, or when there is none: for TLS reports)."""
        if self.mta_sts is None:
            return None, ""
        failure = ""
        try:
            if isinstance(self.mta_sts, MTASTSResolver):
                found = await self.mta_sts.lookup(domain)
                policy = found.policy
                if found.status is STSStatus.FETCH_FAILED:
                    failure = found.detail
            else:
                policy = await self.mta_sts.policy_for(domain)
        except Exception:  # a broken policy host must not stop delivery: RFC 8461 5.1
            log.exception("MTA-STS lookup for %s failed", domain)
            return None, ""
        metrics.sts_policy_seen(policy)
        if policy is not None and policy.mode is STSMode.TESTING:
            log.info("%s publishes an MTA-STS policy in testing mode (logged only)", domain)
        return policy, failure

    async def host_requirement(self, host: MXHost, requirement: TLSRequirement, port: int,
                               sts: STSPolicy | None) -> HostRequirement | HostSkipped:
        """What HOST must offer (verdict.host_requirement), after its TLSA look-up."""
        return (await self._host_need(host, requirement, port, sts))[0]

    async def _host_need(self, host: MXHost, requirement: TLSRequirement, port: int,
                         sts: STSPolicy | None
                         ) -> tuple[HostRequirement | HostSkipped, TLSALookup | None]:
        """DANE applies only to a host whose MX and address answers were DNSSEC-validated
        (RFC 7672 2.2.1): records reached through forgeable answers prove nothing."""
        looked_up = self.dane and host.dnssec
        tlsa = await lookup_tlsa(self.resolver.resolver, host.name, port) if looked_up else None
        metrics.tlsa_looked_up(tlsa)
        return host_requirement(requirement, host.name, tlsa, sts), tlsa

    def _known_without_tls(self, domain: str, hosts: list[MXHost]) -> bool:
        return self.tls_cache is not None and self.tls_cache.none_offer_starttls(
            domain, [h.name for h in hosts])

    def _learn(self, domain: str, attempts: list[HostAttempt]) -> None:
        """Tell the TLS cache what each reached host offered. The same facts about a host are
        written again only after a while (a tenth of the cache's TTL, at most a minute): a
        write per message was a database commit per message, on the event loop."""
        if self.tls_cache is None:
            return
        now = time.monotonic()
        refresh = min(_RELEARN_AFTER, self.tls_cache.ttl / 10)
        for attempt in attempts:
            if attempt.starttls_offered is None:
                continue
            facts = (attempt.starttls_offered, attempt.verified,
                     attempt.tls_failure or attempt.tls_version or "")
            key = (domain.lower(), attempt.host.lower())
            known = self._learned.get(key)
            if known is not None and known[0] == facts and now - known[1] < refresh:
                continue
            self.tls_cache.record(domain, attempt.host, *facts)
            if len(self._learned) >= _MAX_LEARNED:
                self._learned.clear()
            self._learned[key] = (facts, now)

    @metrics.timed_delivery("internal")
    async def relay(self, host: str, port: int, sender: str, rcpts: list[str],
                    content: bytes, dsn: DSNRequest | None = None) -> DomainResult:
        """Hand a message to the organization's own mail server (portal replies), no MX lookup."""
        try:
            ipaddress.ip_address(host)
            addresses = [host]
        except ValueError:
            addresses = await self.resolver.addresses(host)
        if not addresses:
            return DomainResult(Outcome.TEMPORARY, f"4.4.3 internal relay {host} has no address")
        return await self._try_hosts([MXHost(host, 0, addresses)], sender, rcpts, content,
                                     TLSRequirement.OPPORTUNISTIC, port, standards=False,
                                     dsn=dsn)

    async def _try_hosts(self, hosts: list[MXHost], sender: str, rcpts: list[str], content: bytes,
                         requirement: TLSRequirement, port: int | None = None,
                         sts: STSPolicy | None = None, standards: bool = True,
                         smtputf8: bool = False, dsn: DSNRequest | None = None,
                         requiretls: bool = False) -> DomainResult:
        """Try HOSTS in order; STANDARDS off (the internal relay) skips DANE lookups."""
        attempts: list[HostAttempt] = []
        port = port or self.settings.port
        for host in hosts:
            need: HostRequirement | HostSkipped = HostRequirement(requirement)
            tlsa: TLSALookup | None = None
            if standards:
                need, tlsa = await self._host_need(host, requirement, port, sts)
            if isinstance(need, HostSkipped):
                failure = need.tls_failure.value if need.tls_failure else None
                failed = tlsa is not None and tlsa.status is TLSAStatus.TEMPFAIL
                attempts.append(HostAttempt(host.name, "", need.detail, tls_failure=failure,
                                            tlsa_failed=failed))
                continue
            for address in host.addresses:
                attempt = HostAttempt(host.name, address, tlsa=need.tlsa)
                attempts.append(attempt)
                result = await self._try_host(host.name, address, sender, rcpts, content,
                                              need, attempt, port, smtputf8,
                                              host.tls_name or host.name, dsn, requiretls)
                if result is not None:
                    result.attempts = attempts
                    return result
        return _no_host_took_it(attempts, requirement)

    async def _try_host(self, name: str, address: str, sender: str, rcpts: list[str],
                        content: bytes, need: HostRequirement,
                        attempt: HostAttempt, port: int, smtputf8: bool = False,
                        tls_name: str = "", dsn: DSNRequest | None = None,
                        requiretls: bool = False) -> DomainResult | None:
        """A final result from this host, or None to try the next one. TLS_NAME: the name
        its certificate must carry (a nexthop's), when not NAME."""
        try:
            result = await self._transaction(name, address, sender, rcpts, content, need,
                                             attempt, port, smtputf8, tls_name or name, dsn,
                                             requiretls)
            if result is not None:
                attempt.reply = result.reply
            return result
        except TLSFailure as exc:
            failure = exc
            if exc.verdict.fallback_to_plaintext:
                # A handshake that breaks where STARTTLS used to work is a downgrade too.
                refusal = self._downgrade_refusal(name, need, starttls=False, verified=False)
                if refusal is None:
                    plaintext = HostRequirement(TLSRequirement.NONE)
                    return await self._try_host(name, address, sender, rcpts, content,
                                                plaintext, attempt, port, smtputf8, tls_name,
                                                dsn)
                failure = refusal
            attempt.tls_failure, attempt.reply = failure.reason, str(failure)
        except aiosmtplib.SMTPResponseException as exc:
            attempt.reply = f"{exc.code} {exc.message}"
            if exc.code >= 500:
                return DomainResult(Outcome.PERMANENT, f"{name}[{address}] said: {attempt.reply}",
                                    refused={r: attempt.reply for r in rcpts})
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            attempt.reply = f"{name}[{address}]: {exc or type(exc).__name__}"
        log.info("host %s[%s]: %s", name, address, attempt.reply)
        return None

    async def _transaction(self, name: str, address: str, sender: str, rcpts: list[str],
                           content: bytes, need: HostRequirement,
                           attempt: HostAttempt, port: int, smtputf8: bool = False,
                           tls_name: str = "", dsn: DSNRequest | None = None,
                           requiretls: bool = False) -> DomainResult | None:
        tls_name = tls_name or name
        key = (name, address, port, need, tls_name)
        reused = await self._reuse(key, attempt)
        client = reused or await self._open(name, address, port, need, attempt, tls_name)
        try:
            try:
                result = await self._send(client, name, address, sender, rcpts, content,
                                          smtputf8, reused=reused is not None, dsn=dsn,
                                          requiretls=requiretls)
            except _StaleConnection:
                # The server closed the idle connection before our envelope reached it: no
                # message went out, so a fresh connection may carry it.
                await close_quietly(client, wait=True)
                client = await self._open(name, address, port, need, attempt, tls_name)
                result = await self._send(client, name, address, sender, rcpts, content,
                                          smtputf8, dsn=dsn, requiretls=requiretls)
        except BaseException:
            await close_quietly(client, wait=True)
            raise
        context = self._contexts[need.requirement]
        if reused is None and attempt.tls_version and isinstance(context, ResumingContext):
            # Once per connection: reading SSLObject.session is costly (about 0.1 ms).
            context.remember(name, client.get_transport_info("ssl_object"))
        await self.pool.give(key, client, {f: getattr(attempt, f) for f in _TLS_FACTS})
        return result

    async def _reuse(self, key: tuple[object, ...], attempt: HostAttempt) -> aiosmtplib.SMTP | None:
        """An idle connection for KEY. One to a PIPELINING server is not checked with a NOOP
        (a round trip per message): a stale one shows in the pipelined envelope instead."""
        while (idle := await self.pool.take(key, verify=False)) is not None:
            if idle.client.supports_extension("pipelining"):
                break
            try:
                await idle.client.noop()
                break
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                await close_quietly(idle.client)
        if idle is None:
            return None
        for field_name, value in idle.tls.items():
            setattr(attempt, field_name, value)
        return idle.client

    async def _open(self, name: str, address: str, port: int, need: HostRequirement,
                    attempt: HostAttempt, tls_name: str = "") -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(hostname=address, port=port, start_tls=False,
                                 local_hostname=self.settings.helo_name,
                                 timeout=self.settings.timeout)
        await client.connect()
        sockname = client.get_transport_info("sockname")
        attempt.local_address = str(sockname[0]) if sockname else ""
        try:
            if need.requirement is not TLSRequirement.NONE:
                await self._secure(client, name, need, attempt, tls_name or name)
        except BaseException:
            await close_quietly(client, wait=True)
            raise
        return client

    async def close(self) -> None:
        await self.pool.close_all()

    async def _secure(self, client: aiosmtplib.SMTP, name: str, need: HostRequirement,
                      attempt: HostAttempt, tls_name: str = "") -> None:
        """STARTTLS as NEED asks; raises TLSFailure with the verdict when NEED is not met.
        TLS_NAME (a nexthop's) is what a verified certificate must name, and the SNI when
        NAME is an address; DANE checks against NAME, whose TLSA records were used."""
        tls_name = tls_name or name
        await client.ehlo()
        attempt.starttls_offered = client.supports_extension("starttls")
        if not attempt.starttls_offered:
            if refusal := self._downgrade_refusal(name, need, starttls=False, verified=False):
                raise refusal
            verdict = judge_no_starttls(need, name)
            if not verdict.met:
                raise TLSFailure(verdict)
            return
        try:
            await client.starttls(server_hostname=server_name(name, tls_name),
                                  tls_context=self._contexts[need.requirement])
        except aiosmtplib.SMTPResponseException as exc:
            raise TLSFailure(judge_handshake_failure(
                need, name, f"{name} refused STARTTLS: {exc.code} {exc.message}",
                chain_rejected=False)) from None
        except (aiosmtplib.SMTPException, ssl.SSLError, OSError) as exc:
            rejected = (isinstance(exc, ssl.SSLCertVerificationError)
                        or "CERTIFICATE_VERIFY" in str(exc))
            if rejected:
                self._sighted_unverified(name)
            raise TLSFailure(judge_handshake_failure(need, name, f"{name}: TLS failed: {exc}",
                                                     chain_rejected=rejected)) from None
        checked = name if need.requirement is TLSRequirement.DANE else tls_name
        evidence = self._evidence(client, need, attempt)
        verdict = judge(need, checked, evidence)
        if not verdict.met:
            self._sighted_unverified(name)
            raise TLSFailure(verdict)
        if self.downgrade is not None:
            verified = verdict.verified or chain_verifies(evidence.chain, checked,
                                                          self.settings.ca_file)
            if refusal := self._downgrade_refusal(name, need, starttls=True, verified=verified):
                raise refusal
        attempt.note(verdict)

    def _sighted_unverified(self, name: str) -> None:
        """A verifying session (require-verified-tls, MTA-STS, DANE) was refused NAME's
        certificate: the mail is not sent anyway, but a host that verified before is
        downgraded, and the admins hear of it."""
        if self.downgrade is not None:
            self.downgrade.sighting(name, starttls=True, verified=False)

    def _downgrade_refusal(self, name: str, need: HostRequirement, *, starttls: bool,
                           verified: bool) -> TLSFailure | None:
        """Why this session must not carry the message, when NAME is downgraded: mail that
        needs TLS never goes to a downgraded host; other mail waits out the hold."""
        if self.downgrade is None:
            return None
        downgrade = self.downgrade.sighting(name, starttls, verified)
        if downgrade is None:
            return None
        if not need.requirement.needs_tls and not downgrade.held(self.downgrade.store.clock()):
            return None  # the hold is over: ordinary opportunistic delivery resumes
        failure = (TLSFailureReason.NO_STARTTLS if downgrade.kind is DowngradeKind.NO_STARTTLS
                   else TLSFailureReason.CERT_NOT_VERIFIED)
        detail = downgrade.detail
        if not need.requirement.needs_tls:
            detail += f"; mail to it waits until {_when(downgrade.hold_until)}"
        return TLSFailure(TLSVerdict(False, detail, failure=failure))

    @staticmethod
    def _evidence(client: aiosmtplib.SMTP, need: HostRequirement,
                  attempt: HostAttempt) -> TLSEvidence:
        """The session's TLS facts, recorded on ATTEMPT too."""
        ssl_object = client.get_transport_info("ssl_object")
        chain = presented_chain(ssl_object) if ssl_object else []
        cipher = ssl_object.cipher() if ssl_object else None
        attempt.tls_version = ssl_object.version() if ssl_object else None
        attempt.cipher = cipher[0] if cipher else None
        if chain:
            facts = cert_facts(chain[0])
            attempt.cert_subject, attempt.cert_issuer = facts.subject, facts.issuer
        # The VERIFIED context let the handshake finish only with a chain OpenSSL verified.
        verified = True if need.requirement is TLSRequirement.VERIFIED else None
        return TLSEvidence(attempt.tls_version, attempt.cipher, tuple(chain), verified)

    async def _send(self, client: aiosmtplib.SMTP, name: str, address: str, sender: str,
                    rcpts: list[str], content: bytes, smtputf8: bool = False,
                    reused: bool = False, dsn: DSNRequest | None = None,
                    requiretls: bool = False) -> DomainResult:
        if client.is_ehlo_or_helo_needed:  # a plaintext retry has not greeted yet
            await _greet(client)
        if smtputf8 and not client.supports_extension("smtputf8"):
            reply = (f"5.6.7 {name}[{address}] does not offer SMTPUTF8, which this message"
                     " needs (RFC 6531)")
            return DomainResult(Outcome.PERMANENT, reply, refused={r: reply for r in rcpts})
        options, encoding = (["SMTPUTF8"], "utf-8") if smtputf8 else ([], "ascii")
        # RFC 3461 6.2.1: the request goes on only to a host that offers DSN.
        passed = dsn if dsn is not None and not dsn.empty and \
            client.supports_extension("dsn") else None
        options += passed.mail_options() if passed else []
        rcpt_options = {r: passed.rcpt_options(r) for r in rcpts} if passed else {}
        if requiretls:
            _check_requiretls(client, name, address)
            options = [*options, "REQUIRETLS"]
        if client.supports_extension("pipelining"):
            result = await self._send_pipelined(client, f"{name}[{address}]", sender, rcpts,
                                                content, options, encoding, reused, rcpt_options)
            result.next_hop_dsn = client.supports_extension("dsn")
            return result
        await client.mail(sender, options=options, encoding=encoding)
        result = DomainResult(Outcome.DELIVERED, "", next_hop_dsn=client.supports_extension("dsn"))
        for rcpt in rcpts:
            try:
                await client.rcpt(rcpt, options=rcpt_options.get(rcpt, []), encoding=encoding)
                result.accepted.append(rcpt)
            except aiosmtplib.SMTPRecipientRefused as exc:
                _refused(result, rcpt, exc.code, exc.message)
        if not result.accepted:
            await client.rset()
            return _every_recipient_refused(result, f"{name}[{address}]")
        response = await client.data(content)
        result.reply = f"{name}[{address}] said: {response.code} {response.message}"
        return result

    async def _send_pipelined(self, client: aiosmtplib.SMTP, peer: str, sender: str,
                              rcpts: list[str], content: bytes, options: list[str],
                              encoding: str, reused: bool = False,
                              rcpt_options: dict[str, list[str]] | None = None) -> DomainResult:
        """RFC 2920: MAIL, every RCPT and DATA in one write, the replies read in order; then
        the message. Two round trips instead of 3 + recipients; same results per recipient.
        REUSED: the connection sat idle in the pool; if the server has dropped it meanwhile
        (closed, or 421 closing), _StaleConnection says so before anything was sent."""
        timeout = self.settings.timeout
        group = envelope_lines(sender, rcpts, options, encoding, rcpt_options)
        try:
            mail, *rcpt_replies, data = await exchange(client, group, len(rcpts) + 2, timeout)
        except aiosmtplib.SMTPServerDisconnected:
            if reused:
                raise _StaleConnection() from None
            raise
        if reused and mail.code == 421:
            raise _StaleConnection()
        if mail.code != 250:
            raise aiosmtplib.SMTPSenderRefused(mail.code, mail.message, sender)
        result = DomainResult(Outcome.DELIVERED, "")
        for rcpt, reply in zip(rcpts, rcpt_replies, strict=True):
            if reply.code in (250, 251):
                result.accepted.append(rcpt)
            else:
                _refused(result, rcpt, reply.code, reply.message)
        if not result.accepted:
            if data.code == 354:  # a server that takes DATA without recipients: end it empty
                await exchange(client, b".\r\n", 1, timeout)
            await client.rset()
            return _every_recipient_refused(result, peer)
        if data.code != 354:
            raise aiosmtplib.SMTPDataError(data.code, data.message)
        (final,) = await exchange(client, data_payload(content), 1, timeout)
        if final.code != 250:
            raise aiosmtplib.SMTPDataError(final.code, final.message)
        result.reply = f"{peer} said: {final.code} {final.message}"
        return result



def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))


class _StaleConnection(Exception):
    """A pooled connection turned out closed before its envelope was taken."""


async def _greet(client: aiosmtplib.SMTP) -> None:
    """EHLO, or HELO for a server that does not know EHLO (as aiosmtplib would)."""
    try:
        await client.ehlo()
    except aiosmtplib.SMTPHeloError:
        await client.helo()


def _refused(result: DomainResult, rcpt: str, code: int, message: str) -> None:
    bucket = result.refused if code >= 500 else result.deferred
    bucket[rcpt] = f"{code} {message}"


def _every_recipient_refused(result: DomainResult, peer: str) -> DomainResult:
    result.outcome = Outcome.PERMANENT if not result.deferred else Outcome.TEMPORARY
    replies = "; ".join(sorted(set(result.refused.values()) | set(result.deferred.values())))
    result.reply = f"{peer} refused every recipient: {replies}"
    return result


def _check_requiretls(client: aiosmtplib.SMTP, name: str, address: str) -> None:
    """RFC 8689 4.2.1: a REQUIRETLS message goes on only to a host that offers REQUIRETLS
    over this TLS session (its EHLO after STARTTLS), which then has to honour it too."""
    if client.get_transport_info("ssl_object") is None or \
            not client.supports_extension("requiretls"):
        raise TLSFailure(TLSVerdict(
            False, f"{name}[{address}] does not offer REQUIRETLS, which this message needs"
            " (RFC 8689)", failure=TLSFailureReason.REQUIRETLS))


def _mx_not_secure(domain: str, hosts: list[MXHost]) -> DomainResult:
    """RFC 8689 4.2.1: the MX hosts of a REQUIRETLS message must be found securely, by a
    DNSSEC-validated MX answer or an MTA-STS policy in enforce mode; no host is tried."""
    detail = (f"REQUIRETLS: the MX hosts of {domain} were not found securely (no DNSSEC-"
              "validated MX answer, no MTA-STS policy in enforce mode)")
    attempts = [HostAttempt(h.name, "", detail, tls_failure=TLSFailureReason.REQUIRETLS.value)
                for h in hosts]
    return DomainResult(Outcome.TLS_UNAVAILABLE, f"5.7.10 {detail}", attempts=attempts)


def _sts_mismatch(hosts: list[MXHost], requirement: TLSRequirement) -> DomainResult:
    """MTA-STS enforce and no MX host matches the policy: never deliver to them (RFC 8461 5)."""
    attempts = [HostAttempt(h.name, "", f"{h.name} is not in the domain's MTA-STS policy",
                            tls_failure=TLSFailureReason.MTA_STS_MISMATCH.value) for h in hosts]
    reply = "4.7.5 no MX host matches the domain's MTA-STS policy"
    outcome = Outcome.TLS_UNAVAILABLE if requirement.needs_tls else Outcome.TEMPORARY
    return DomainResult(outcome, reply, attempts=attempts)


def _no_host_took_it(attempts: list[HostAttempt], requirement: TLSRequirement) -> DomainResult:
    """Pickup when a host was reached but could not meet the TLS requirement, and no host
    failed for a reason that might let it take the message securely later."""
    tls_failed = [a for a in attempts if a.tls_failure]
    secure_but_busy = [a for a in attempts if a.tls_version and not a.tls_failure]
    summary = "; ".join(a.reply for a in attempts)[:900] or "no MX host reachable"
    if tls_failed and not secure_but_busy and requirement.needs_tls:
        return DomainResult(Outcome.TLS_UNAVAILABLE, summary, attempts=attempts)
    return DomainResult(Outcome.TEMPORARY, f"4.4.1 {summary}", attempts=attempts)
