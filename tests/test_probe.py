"""`sealgate probe` against real fake hosts: FakeMX servers with and without STARTTLS
and with good and bad certificates, the fake DNS (MX, TLSA with and without AD) and the
fake HTTPS server publishing MTA-STS policies. Asserts the report's fields, the route
predicted for every mode, the admin-facing text and the JSON form.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import trustme
from cryptography import x509

from gateway.delivery.mx import LookupStatus, make_resolver
from gateway.diagnostics.probe import PKIXStatus, ProbeReport, RouteAction, format_report, probe
from gateway.tls.dane import DaneVerdict, TLSAStatus
from gateway.tls.inspect import spki_der
from gateway.tls.mta_sts import STSMode, STSStatus
from tests.fakes.certs import make_ca, write_ca_pem
from tests.fakes.dns_server import FakeDNS
from tests.fakes.https_server import FakeHTTPS
from tests.fakes.mx_host import FakeMX
from tests.fakes.ports import free_port

IPS = {"tls-ok": "127.0.0.25", "no-tls": "127.0.0.26", "wrong-cert": "127.0.0.27",
       "https": "127.0.0.28", "dane-ee": "127.0.0.29", "unreachable": "127.0.0.31"}


@dataclass
class World:
    dns: FakeDNS
    https: FakeHTTPS
    port: int
    ca_file: str
    tls_chain: list[str]           # PEM of leaf and intermediate of mx.tls-ok.test

    def probe(self, domain: str) -> ProbeReport:
        resolver = make_resolver([self.dns.nameserver], timeout=2.0)
        return asyncio.run(probe(domain, resolver=resolver, port=self.port, ca_file=self.ca_file,
                                 https_port=self.https.port, timeout=5, helo_name="probe.test"))


def spki_sha256(cert: trustme.LeafCert) -> str:
    leaf = x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes())
    return hashlib.sha256(spki_der(leaf)).hexdigest()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    ca = make_ca()
    ca_file = str(write_ca_pem(ca, tmp_path_factory.mktemp("probe-ca") / "ca.pem"))
    intermediate = ca.create_child_ca()
    stranger = make_ca()                                     # not in ca_file
    tls_cert = intermediate.issue_cert("mx.tls-ok.test")
    dane_cert = stranger.issue_cert("self.dane-ee.invalid")  # only DANE-EE can vouch for it
    port = free_port(*IPS.values())
    mxs = [
        FakeMX(IPS["tls-ok"], port, name="mx.tls-ok.test", tls_cert=tls_cert),
        FakeMX(IPS["no-tls"], port, name="mx.no-tls.test"),
        FakeMX(IPS["wrong-cert"], port, name="mx.wrong-cert.test",
               tls_cert=stranger.issue_cert("somewhere-else.invalid")),
        FakeMX(IPS["dane-ee"], port, name="mx.dane-ee.test", tls_cert=dane_cert),
    ]
    with FakeDNS() as zone, FakeHTTPS(IPS["https"], free_port(IPS["https"]), ca) as https:
        for mx in mxs:
            mx.start()
        try:
            for scenario in ("tls-ok", "no-tls", "wrong-cert", "dane-ee", "unreachable"):
                zone.add(f"{scenario}.test", "MX", f"10 mx.{scenario}.test.")
                zone.add(f"mx.{scenario}.test", "A", IPS[scenario])
            # Mixed: the preferred host has no TLS, the backup has.
            zone.add("mixed.test", "MX", "10 mx.no-tls.test.", "20 mx.tls-ok.test.")
            zone.add("nullmx.test", "MX", "0 .")
            # DANE: TLSA for mx.dane-ee.test, validated; the same for mx.no-ad.test unvalidated;
            # a validated record that matches nothing for mx.dane-mismatch.test.
            tlsa = f"3 1 1 {spki_sha256(dane_cert)}"
            zone.add(f"_{port}._tcp.mx.dane-ee.test", "TLSA", tlsa)
            zone.set_authenticated(f"_{port}._tcp.mx.dane-ee.test", True)
            zone.add("no-ad.test", "MX", "10 mx.no-ad.test.")
            zone.add("mx.no-ad.test", "A", IPS["dane-ee"])
            zone.add(f"_{port}._tcp.mx.no-ad.test", "TLSA", tlsa)
            zone.add("dane-mismatch.test", "MX", "10 mx.dane-mismatch.test.")
            zone.add("mx.dane-mismatch.test", "A", IPS["tls-ok"])
            zone.add(f"_{port}._tcp.mx.dane-mismatch.test", "TLSA", "3 1 1 " + "00" * 32)
            zone.set_authenticated(f"_{port}._tcp.mx.dane-mismatch.test", True)
            # MTA-STS: enforce policies listing / not listing the MX host.
            for domain, pattern in (("enforce-match.test", "*.tls-ok.test"),
                                    ("enforce-mismatch.test", "mx.elsewhere.test")):
                zone.add(domain, "MX", "10 mx.tls-ok.test.")
                zone.set_authenticated(domain, True)
                zone.add(f"_mta-sts.{domain}", "TXT", '"v=STSv1; id=probe1"')
                zone.add(f"mta-sts.{domain}", "A", IPS["https"])
                https.serve_policy(domain, f"version: STSv1\nmode: enforce\nmx: {pattern}\n"
                                           "max_age: 604800\n")
            # A signed zone: MX and address answers are validated, so DANE applies
            # (RFC 7672 2.2.1); TLSA answers are validated where set above.
            for scenario in ("tls-ok", "no-tls", "wrong-cert", "dane-ee", "unreachable",
                             "mixed", "no-ad", "dane-mismatch"):
                zone.set_authenticated(f"{scenario}.test", True)
                zone.set_authenticated(f"mx.{scenario}.test", True)
            yield World(zone, https, port, ca_file,
                        [blob.bytes().decode() for blob in tls_cert.cert_chain_pems])
        finally:
            for mx in mxs:
                mx.stop()


def routes(report: ProbeReport) -> dict[str, str]:
    return {mode: route.text for mode, route in report.routes.items()}


def actions(report: ProbeReport) -> dict[str, RouteAction]:
    return {mode: route.action for mode, route in report.routes.items()}


# ---------------------------------------------------------------------------- hosts


def test_tls_host(world: World) -> None:
    report = world.probe("tls-ok.test")
    assert report.mx_status is LookupStatus.OK
    (host,) = report.hosts
    assert (host.name, host.address, host.preference) == ("mx.tls-ok.test", IPS["tls-ok"], 10)
    assert host.connected and host.banner == "mx.tls-ok.test" and host.starttls_offered
    assert host.tls_version in {"TLSv1.2", "TLSv1.3"} and host.cipher
    assert len(host.chain) == 2                       # leaf and intermediate, as sent
    assert host.chain[0].dns_names == ["mx.tls-ok.test"]
    assert host.chain[0].issuer == host.chain[1].subject
    assert host.pkix is PKIXStatus.VALID and host.name_match and host.pkix_verified
    assert host.dane is not None and host.dane.status is TLSAStatus.NONE
    assert host.sts_match is None
    assert report.sts is not None and report.sts.status is STSStatus.NO_POLICY
    target = f"mx.tls-ok.test [{IPS['tls-ok']}]"
    assert routes(report) == {
        "require-tls": f"deliver over TLS to {target} (certificate not checked)",
        "require-verified-tls": f"deliver over TLS to {target} (certificate verified)",
        "pickup": "pickup (policy: always pickup)",
        "not-confidential": f"deliver opportunistically to {target} (STARTTLS, {host.tls_version})",
    }


def test_no_tls_host(world: World) -> None:
    report = world.probe("no-tls.test")
    (host,) = report.hosts
    assert host.connected and not host.starttls_offered and not host.tls
    assert host.chain == [] and host.pkix is PKIXStatus.UNKNOWN
    assert actions(report) == {
        "require-tls": RouteAction.PICKUP, "require-verified-tls": RouteAction.PICKUP,
        "pickup": RouteAction.PICKUP, "not-confidential": RouteAction.DELIVER_OPPORTUNISTIC,
    }
    assert routes(report)["require-tls"] == "pickup (mx.no-tls.test: no STARTTLS)"
    assert routes(report)["not-confidential"] == (
        f"deliver opportunistically to mx.no-tls.test [{IPS['no-tls']}] (plaintext, no STARTTLS)")


def test_bad_cert_host(world: World) -> None:
    report = world.probe("wrong-cert.test")
    (host,) = report.hosts
    assert host.tls and host.chain[0].dns_names == ["somewhere-else.invalid"]
    assert host.pkix is PKIXStatus.INVALID
    assert host.pkix_detail == "unable to get local issuer certificate"
    assert host.name_match is False and not host.pkix_verified
    assert actions(report)["require-tls"] is RouteAction.DELIVER_TLS
    verified = report.routes["require-verified-tls"]
    assert verified.action is RouteAction.PICKUP
    assert verified.text == ("pickup (mx.wrong-cert.test: certificate not verified:"
                             " unable to get local issuer certificate)")
    assert actions(report)["not-confidential"] is RouteAction.DELIVER_OPPORTUNISTIC


def test_mixed_hosts_in_preference_order(world: World) -> None:
    report = world.probe("mixed.test")
    assert [h.name for h in report.hosts] == ["mx.no-tls.test", "mx.tls-ok.test"]
    assert report.routes["require-tls"].host == "mx.tls-ok.test"
    assert report.routes["not-confidential"].host == "mx.no-tls.test"


def test_unreachable_host_defers(world: World) -> None:
    report = world.probe("unreachable.test")
    (host,) = report.hosts
    assert not host.connected and host.error == "connection failed: Connection refused"
    assert actions(report) == {
        "require-tls": RouteAction.DEFER, "require-verified-tls": RouteAction.DEFER,
        "pickup": RouteAction.PICKUP, "not-confidential": RouteAction.DEFER,
    }
    assert routes(report)["require-tls"] == (
        f"defer (no MX host usable: mx.unreachable.test [{IPS['unreachable']}]:"
        " connection failed: Connection refused)")


def test_null_mx_bounces(world: World) -> None:
    report = world.probe("nullmx.test")
    assert report.mx_status is LookupStatus.NULL_MX and report.hosts == []
    assert routes(report)["not-confidential"] == "bounce (nullmx.test publishes a null MX: no mail)"


# ---------------------------------------------------------------------------- DANE


def test_dane_ee_verifies_an_otherwise_untrusted_certificate(world: World) -> None:
    report = world.probe("dane-ee.test")
    (host,) = report.hosts
    assert host.dane is not None and host.dane.status is TLSAStatus.USABLE
    assert host.dane_verdict is DaneVerdict.MATCH
    assert host.pkix is PKIXStatus.INVALID
    assert routes(report)["require-verified-tls"] == (
        f"deliver over TLS to mx.dane-ee.test [{IPS['dane-ee']}] (DANE-verified)")
    # DANE applies to all mail: not-confidential is delivered over verified TLS too.
    assert actions(report)["not-confidential"] is RouteAction.DELIVER_TLS


def test_tlsa_without_ad_is_ignored(world: World) -> None:
    report = world.probe("no-ad.test")
    (host,) = report.hosts
    assert host.dane is not None and host.dane.status is TLSAStatus.INSECURE
    assert host.dane_verdict is None
    assert actions(report)["require-verified-tls"] is RouteAction.PICKUP
    assert actions(report)["not-confidential"] is RouteAction.DELIVER_OPPORTUNISTIC


def test_dane_mismatch_blocks_even_plain_mail(world: World) -> None:
    report = world.probe("dane-mismatch.test")
    (host,) = report.hosts
    assert host.dane_verdict is DaneVerdict.MISMATCH
    assert host.pkix is PKIXStatus.VALID and host.name_match is False
    assert actions(report)["require-tls"] is RouteAction.PICKUP
    assert routes(report)["not-confidential"].startswith(
        "defer (mx.dane-mismatch.test: DANE: no DANE-EE record matches")


# ---------------------------------------------------------------------------- MTA-STS


def test_mta_sts_enforce_match(world: World) -> None:
    report = world.probe("enforce-match.test")
    assert report.sts is not None and report.sts.policy is not None
    assert report.sts.policy.mode is STSMode.ENFORCE
    assert report.sts.policy.mx_patterns == ["*.tls-ok.test"]
    (host,) = report.hosts
    assert host.sts_match is True
    assert routes(report)["not-confidential"] == (
        f"deliver over TLS to mx.tls-ok.test [{IPS['tls-ok']}] (MTA-STS-verified)")


def test_mta_sts_enforce_mismatch(world: World) -> None:
    report = world.probe("enforce-mismatch.test")
    (host,) = report.hosts
    assert host.sts_match is False
    assert routes(report)["not-confidential"] == (
        "defer (MTA-STS enforce: mx.tls-ok.test not in policy mx)")
    assert routes(report)["require-tls"] == (
        "pickup (MTA-STS enforce: mx.tls-ok.test not in policy mx)")


# ---------------------------------------------------------------------------- output


def test_format_report(world: World) -> None:
    report = world.probe("enforce-match.test")
    text = format_report(report)
    host = report.hosts[0]
    lines = text.splitlines()
    assert lines[0].startswith("Probe of enforce-match.test (SMTP port ")
    expected = [
        "MX hosts",
        f"   10 mx.tls-ok.test [{IPS['tls-ok']}]",
        "      banner        mx.tls-ok.test",
        "      STARTTLS      offered",
        f"      TLS           {host.tls_version}  {host.cipher}",
        f"      certificate   subject  {host.chain[0].subject}",
        "                    names    mx.tls-ok.test",
        "      PKIX          verified: chain valid, name matches",
        f"      DANE          none: no TLSA records at _{world.port}._tcp.mx.tls-ok.test",
        "      MTA-STS       mx matches policy",
        "MTA-STS",
        "  status        found",
        "  mode          enforce, id probe1",
        "  mx            *.tls-ok.test",
        "  max_age       604800 s",
        "                mx.tls-ok.test: matches",
        "Routing (what Sealgate would do now)",
        "  require-tls            deliver over TLS to mx.tls-ok.test [127.0.0.25]"
        " (MTA-STS-verified)",
        "  pickup                 pickup (policy: always pickup)",
    ]
    missing = [line for line in expected if line not in lines]
    assert not missing, text
    assert any(line.startswith("      chain [1]     subject  ") for line in lines)


def test_format_report_for_failures(world: World) -> None:
    text = format_report(world.probe("unreachable.test"))
    assert "      connection    connection failed: Connection refused" in text
    text = format_report(world.probe("nullmx.test"))
    assert "  lookup        null-mx: nullmx.test publishes a null MX: no mail" in text


def test_as_dict_is_json(world: World) -> None:
    report = world.probe("dane-ee.test")
    data = json.loads(json.dumps(report.as_dict()))
    assert data["domain"] == "dane-ee.test" and data["mx"]["status"] == "ok"
    (host,) = data["hosts"]
    assert host["dane"]["status"] == "usable" and host["dane"]["verdict"] == "match"
    assert host["pkix"] == {"status": "invalid", "detail": host["pkix"]["detail"],
                            "name_match": False, "verified": False}
    assert host["certificates"][0]["dns_names"] == ["self.dane-ee.invalid"]
    assert data["routes"]["require-verified-tls"]["action"] == "deliver-tls"
    assert data["mta_sts"]["status"] == "no-policy"


@pytest.mark.parametrize("bad", ["", "localhost", "a..b.test", "x" * 64 + ".test"])
def test_malformed_domain_is_a_clear_error(world: World, bad: str) -> None:
    with pytest.raises(ValueError, match="is not a valid domain name"):
        world.probe(bad)
