"""`sealgate probe` and DNSSEC: it says in one line whether the configured resolver
validates (the AD bit on a signed name, SERVFAIL on a bogus one, both played by the
loopback DNS), shows whether the MX and address answers were validated, and applies DANE
only where they were (RFC 7672 2.2.1), as delivery does.

Names of the loopback DNS:
  signed.example    the "signed" name the check asks for (AD set unless a test clears it)
  bogus.example     the "bogus" name (SERVFAIL unless a test makes it answer)
  dane.test         validated MX and A, a validated TLSA record
  unsigned.test     the same host and TLSA behind an MX answer without AD
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.delivery.mx import make_resolver
from gateway.diagnostics.dnssec_check import ResolverCheck, ResolverVerdict, check_resolver
from gateway.diagnostics.probe import ProbeReport, format_report, probe
from gateway.tls.dane import TLSAStatus
from tests.fakes.dns_server import FakeDNS
from tests.fakes.mx_host import FakeMX
from tests.fakes.ports import free_port

REPO = Path(__file__).resolve().parent.parent
SIGNED, BOGUS = "signed.example", "bogus.example"
MX_IP = "127.0.0.82"  # mx.dane.test: a fake MX host without STARTTLS
CLOSED_IP = "127.0.0.83"  # nothing listens there


@pytest.fixture(scope="module")
def port() -> int:
    return free_port(MX_IP)


@pytest.fixture(scope="module")
def mx_host(port: int) -> Iterator[FakeMX]:
    with FakeMX(MX_IP, port, name="mx.dane.test") as host:
        yield host


@pytest.fixture
def zone(port: int) -> Iterator[FakeDNS]:
    with FakeDNS() as dns:
        dns.add(SIGNED, "SOA", "ns.signed.example. admin.signed.example. 1 7200 900 1209600 300")
        dns.set_authenticated(SIGNED, True)
        dns.add(BOGUS, "SOA", "ns.bogus.example. admin.bogus.example. 1 7200 900 1209600 300")
        dns.set_rcode(BOGUS, "SERVFAIL")
        dns.add("mx.dane.test", "A", MX_IP)
        dns.add(f"_{port}._tcp.mx.dane.test", "TLSA", "3 1 1 " + "ab" * 32)
        dns.add("dane.test", "MX", "10 mx.dane.test.")
        dns.add("unsigned.test", "MX", "10 mx.dane.test.")
        for name in ("dane.test", "mx.dane.test", f"_{port}._tcp.mx.dane.test"):
            dns.set_authenticated(name, True)
        yield dns


def check(zone: FakeDNS) -> ResolverCheck:
    resolver = make_resolver([zone.nameserver], timeout=2.0)
    return asyncio.run(check_resolver(resolver, SIGNED, BOGUS))


def probed(zone: FakeDNS, domain: str, port: int) -> ProbeReport:
    return asyncio.run(probe(domain, resolver=make_resolver([zone.nameserver], timeout=2.0),
                             port=port, ca_file="", https_port=1, timeout=2,
                             dnssec_names=(SIGNED, BOGUS)))


def test_a_validating_resolver_is_reported_as_validating(zone: FakeDNS) -> None:
    found = check(zone)
    assert found.verdict is ResolverVerdict.VALIDATES
    assert found.line == f"validates (AD bit on {SIGNED}, SERVFAIL on {BOGUS})"


def test_a_resolver_without_the_ad_bit_does_not_validate(zone: FakeDNS) -> None:
    zone.set_authenticated(SIGNED, False)
    found = check(zone)
    assert found.verdict is ResolverVerdict.DOES_NOT_VALIDATE
    assert f"no AD bit on the signed name {SIGNED}" in found.line and "DANE is off" in found.line


def test_a_resolver_answering_the_bogus_name_does_not_validate(zone: FakeDNS) -> None:
    zone.set_rcode(BOGUS, "NOERROR")
    found = check(zone)
    assert found.verdict is ResolverVerdict.DOES_NOT_VALIDATE
    assert f"answered the bogus name {BOGUS}" in found.line


def test_an_unreachable_resolver_cannot_be_checked() -> None:
    resolver = make_resolver([f"{CLOSED_IP}:{free_port(CLOSED_IP)}"], timeout=0.5)
    found = asyncio.run(check_resolver(resolver, SIGNED, BOGUS))
    assert found.verdict is ResolverVerdict.UNKNOWN and found.line.startswith("could not be")


@pytest.mark.usefixtures("mx_host")
def test_the_probe_report_starts_with_the_resolver_line(zone: FakeDNS, port: int) -> None:
    text = format_report(probed(zone, "dane.test", port))
    assert text.splitlines()[2] == (f"DNS resolver  validates (AD bit on {SIGNED},"
                                    f" SERVFAIL on {BOGUS})")


@pytest.mark.usefixtures("mx_host")
def test_the_probe_shows_validated_mx_and_address_answers(zone: FakeDNS, port: int) -> None:
    report = probed(zone, "dane.test", port)
    assert report.mx_dnssec and [h.dnssec for h in report.hosts] == [True]
    dane = report.hosts[0].dane
    assert dane is not None and dane.status is TLSAStatus.USABLE  # DANE applies
    text = format_report(report)
    assert "DNSSEC        MX answer validated" in text
    assert "DNSSEC        MX and address answers validated" in text


@pytest.mark.usefixtures("mx_host")
def test_the_probe_does_not_apply_dane_behind_an_unvalidated_mx_answer(
        zone: FakeDNS, port: int) -> None:
    report = probed(zone, "unsigned.test", port)
    assert not report.mx_dnssec and report.hosts[0].dane is None
    assert "DANE          not applied: its MX or address answers are not DNSSEC-validated" \
        in format_report(report)


@pytest.mark.usefixtures("mx_host")
def test_sealgate_probe_checks_the_configured_resolver(zone: FakeDNS, port: int,
                                                       tmp_path: Path) -> None:
    config = tmp_path / "sealgate.toml"
    config.write_text(f'[storage]\ndir = "{tmp_path / "var"}"\n'
                      f'[dns]\nnameservers = ["{zone.nameserver}"]\ntimeout = "2s"\n'
                      f'dnssec_check_signed = "{SIGNED}"\ndnssec_check_bogus = "{BOGUS}"\n'
                      f'[delivery]\nport = {port}\nconnect_timeout = "2s"\n')
    shown = subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(config),
                            "probe", "dane.test", "--json"],
                           cwd=REPO, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["resolver"]["verdict"] == "validates"


def test_config_check_names_a_dnssec_check_name_that_is_not_a_domain(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "p.toml").write_text('[default]\nmode = "require-tls"\n')
    config = tmp_path / "sealgate.toml"
    config.write_text(f'[storage]\ndir = "{tmp_path / "var"}"\n'
                      f'[policy]\ndir = "{tmp_path / "policies"}"\n'
                      '[dns]\ndnssec_check_bogus = "not a name"\n')
    shown = subprocess.run([sys.executable, "-m", "gateway.cli", "config", "check", "--json",
                            "--config", str(config)],
                           cwd=REPO, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 1
    assert json.loads(shown.stdout)["errors"] == [
        "dns.dnssec_check_bogus: 'not a name' is not a fully qualified domain name"
        " (e.g. isc.org)"]
