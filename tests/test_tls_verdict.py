"""Delivery and `sealgate probe` reach the same TLS verdict for the same host.

Every scenario is a real fake MX host (aiosmtpd with a trustme certificate), real DNS answers
from the loopback fake DNS (MX, A, TLSA with and without usable records) and a real MTA-STS
policy over HTTPS. For each routing mode the test delivers a message with the Deliverer and
asks the probe what it predicts; the two must name the same action.

Domains, named for their scenario (all under agree.test):
  verified           certificate from the trusted CA for the MX name
  plain              no STARTTLS
  sts-unusable-tlsa  MTA-STS enforce lists the host; DNSSEC-valid TLSA records, none usable;
                     certificate from a CA nobody trusts: MTA-STS still needs PKIX
  sts-unlisted-dane  MTA-STS enforce does not list the host; a usable TLSA record matches it:
                     the host is still not used (a DANE match does not override the mx list)
  cn-only            trusted CA, MX name only in the subject CN (no subjectAltName): not a
                     verified name, although OpenSSL's own host check would accept it
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import dns.asyncresolver
import pytest
import trustme
from cryptography import x509

from gateway.delivery.deliverer import REQUIREMENT_FOR_MODE, Deliverer, DeliverySettings, Outcome
from gateway.delivery.mx import MXResolver, make_resolver
from gateway.diagnostics.probe import RouteAction, probe
from gateway.tls.inspect import spki_der
from gateway.tls.mta_sts import STSPolicy, STSStatus, fetch_policy
from tests.fakes.certs import cn_only_leaf, make_ca, write_ca_pem
from tests.fakes.dns_server import FakeDNS
from tests.fakes.https_server import FakeHTTPS
from tests.fakes.mx_host import FakeMX
from tests.fakes.ports import free_port

HTTPS_IP = "127.0.0.60"
HOSTS = {"verified": "127.0.0.61", "plain": "127.0.0.62", "sts-unusable-tlsa": "127.0.0.63",
         "sts-unlisted-dane": "127.0.0.64", "cn-only": "127.0.0.65"}
MODES = ("require-tls", "require-verified-tls", "not-confidential")


class FetchedPolicies:
    """The domain's MTA-STS policy fetched afresh each time (real DNS and HTTPS, no cache)."""

    def __init__(self, world: World) -> None:
        self.world = world

    async def policy_for(self, domain: str) -> STSPolicy | None:
        lookup = await fetch_policy(domain, self.world.resolver(), https_port=self.world.https_port,
                                    ca_file=self.world.ca_file, timeout=5)
        return lookup.policy if lookup.status is STSStatus.FOUND else None


@dataclass
class World:
    nameserver: str
    port: int
    https_port: int
    ca_file: str

    def resolver(self) -> dns.asyncresolver.Resolver:
        return make_resolver([self.nameserver], timeout=2.0)

    def probe_action(self, domain: str, mode: str) -> str:
        report = asyncio.run(probe(domain, resolver=self.resolver(), port=self.port,
                                   ca_file=self.ca_file, https_port=self.https_port, timeout=5,
                                   helo_name="probe.agree.test"))
        action = report.routes[mode].action
        return "deliver" if action in (RouteAction.DELIVER_TLS,
                                       RouteAction.DELIVER_OPPORTUNISTIC) else action.value

    def delivery_action(self, domain: str, mode: str) -> str:
        async def deliver() -> Outcome:
            deliverer = Deliverer(MXResolver(self.resolver()),
                                  DeliverySettings(port=self.port, helo_name="gw.agree.test",
                                                   ca_file=self.ca_file, timeout=5),
                                  mta_sts=FetchedPolicies(self))
            try:
                route = REQUIREMENT_FOR_MODE.get(mode, REQUIREMENT_FOR_MODE["opportunistic"])
                result = await deliverer.deliver(domain, "sender@clinic.test",
                                                 [f"someone@{domain}"], b"Subject: x\r\n\r\nhi\r\n",
                                                 route)
            finally:
                await deliverer.close()
            return result.outcome

        outcome = asyncio.run(deliver())
        confidential = mode != "not-confidential"
        return {Outcome.DELIVERED: "deliver", Outcome.PERMANENT: "bounce",
                Outcome.TEMPORARY: "defer",
                Outcome.TLS_UNAVAILABLE: "pickup" if confidential else "defer"}[outcome]


def spki_sha256(cert: trustme.LeafCert) -> str:
    leaf = x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes())
    return hashlib.sha256(spki_der(leaf)).hexdigest()


def publish_sts(dns: FakeDNS, https: FakeHTTPS, domain: str, listed: str) -> None:
    dns.add(f"_mta-sts.{domain}", "TXT", '"v=STSv1; id=agree1"')
    dns.add(f"mta-sts.{domain}", "A", HTTPS_IP)
    https.serve_policy(domain, f"version: STSv1\nmode: enforce\nmx: {listed}\nmax_age: 86400\n")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    trusted, stranger = make_ca(), make_ca()
    ca_file = str(write_ca_pem(trusted, tmp_path_factory.mktemp("agree-ca") / "ca.pem"))
    port = free_port(*HOSTS.values())
    names = {scenario: f"mx.{scenario}.agree.test" for scenario in HOSTS}
    dane_cert = stranger.issue_cert(names["sts-unlisted-dane"])
    certs: dict[str, trustme.LeafCert | None] = {
        "verified": trusted.issue_cert(names["verified"]), "plain": None,
        "sts-unusable-tlsa": stranger.issue_cert(names["sts-unusable-tlsa"]),
        "sts-unlisted-dane": dane_cert, "cn-only": cn_only_leaf(trusted, names["cn-only"])}
    hosts = [FakeMX(HOSTS[s], port, name=names[s], tls_cert=certs[s]) for s in HOSTS]
    with FakeDNS() as dns, FakeHTTPS(HTTPS_IP, free_port(HTTPS_IP), trusted) as https:
        for host in hosts:
            host.start()
        try:
            for scenario, ip in HOSTS.items():
                dns.add(f"{scenario}.agree.test", "MX", f"10 {names[scenario]}.")
                dns.add(names[scenario], "A", ip)
                # A signed zone: DANE applies only behind validated answers (RFC 7672 2.2.1).
                dns.set_authenticated(f"{scenario}.agree.test", True)
                dns.set_authenticated(names[scenario], True)
            unusable = f"_{port}._tcp.{names['sts-unusable-tlsa']}"
            dns.add(unusable, "TLSA", "1 1 1 " + "ab" * 32)  # PKIX-EE: unusable for SMTP
            dns.set_authenticated(unusable, True)
            publish_sts(dns, https, "sts-unusable-tlsa.agree.test", names["sts-unusable-tlsa"])
            usable = f"_{port}._tcp.{names['sts-unlisted-dane']}"
            dns.add(usable, "TLSA", f"3 1 1 {spki_sha256(dane_cert)}")
            dns.set_authenticated(usable, True)
            publish_sts(dns, https, "sts-unlisted-dane.agree.test", "mx.elsewhere.agree.test")
            yield World(dns.nameserver, port, https.port, ca_file)
        finally:
            for host in hosts:
                host.stop()


EXPECTED = {
    "verified": {"require-tls": "deliver", "require-verified-tls": "deliver",
                 "not-confidential": "deliver"},
    "plain": {"require-tls": "pickup", "require-verified-tls": "pickup",
              "not-confidential": "deliver"},
    "sts-unusable-tlsa": {"require-tls": "pickup", "require-verified-tls": "pickup",
                          "not-confidential": "defer"},
    "sts-unlisted-dane": {"require-tls": "pickup", "require-verified-tls": "pickup",
                          "not-confidential": "defer"},
    "cn-only": {"require-tls": "deliver", "require-verified-tls": "pickup",
                "not-confidential": "deliver"},
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("scenario", list(EXPECTED))
def test_probe_predicts_what_delivery_does(world: World, scenario: str, mode: str) -> None:
    domain = f"{scenario}.agree.test"
    assert (world.delivery_action(domain, mode), world.probe_action(domain, mode)) == (
        EXPECTED[scenario][mode], EXPECTED[scenario][mode])
