"""`nexthop` in a [[domain]] rule: mail for the domain goes to that host instead of its MX
hosts (like a Postfix transport map entry), with the mode's TLS requirement applied to it.

Real loopback servers: nexthop hosts on 127.0.0.40-42 with certificates from the test CA,
every test domain's MX pointing at mx.plain.test (127.0.0.3), so mail that went the MX
way instead is seen there."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.classify.policy import check_policy
from gateway.delivery import nexthop as nexthop_module
from gateway.delivery.nexthop import PolicyNexthops
from tests.conftest import TEST_POLICY, assert_no_mail, make_message, wait_for_mail
from tests.fakes.certs import leaf
from tests.fakes.dns_server import FakeDNS
from tests.fakes.mx_host import FakeMX
from tests.fakes.ports import free_port
from tests.gateway_process import GatewayProcess, GatewaySettings
from tests.journey import stored_pickups

HOP_TLS = "127.0.0.40"      # STARTTLS, certificate for hop/gw/direct/dane-hop.partner.test
HOP_PLAIN = "127.0.0.41"    # no STARTTLS
HOP_IPNAME = "127.0.0.42"   # STARTTLS, certificate for ipname.test only
TLS_NAMES = ("hop.partner.test", "gw.partner.test", "direct.partner.test",
             "dane-hop.partner.test")
SENDER = "doctor@clinic.test"


@pytest.fixture(scope="module")
def hop_port() -> int:
    return free_port(HOP_TLS, HOP_PLAIN, HOP_IPNAME)


@pytest.fixture(scope="module")
def hop_cert(ca: trustme.CA) -> trustme.LeafCert:
    return leaf(ca, *TLS_NAMES)


@pytest.fixture(scope="module")
def hops(ca: trustme.CA, hop_port: int, hop_cert: trustme.LeafCert) -> Iterator[dict[str, FakeMX]]:
    hosts = {"tls": FakeMX(HOP_TLS, hop_port, name="hop.partner.test", tls_cert=hop_cert),
             "plain": FakeMX(HOP_PLAIN, hop_port, name="plain-hop.partner.test"),
             "ipname": FakeMX(HOP_IPNAME, hop_port, name="ipname-hop.partner.test",
                              tls_cert=leaf(ca, "ipname.test"))}
    for host in hosts.values():
        host.start()
    yield hosts
    for host in hosts.values():
        host.stop()


def rules(port: int) -> str:
    return textwrap.dedent(f"""\
        [[domain]]
        match = "bank.test"
        mode = "require-verified-tls"
        nexthop = "[{HOP_TLS}]:{port}"
        tls_name = "hop.partner.test"

        [[domain]]
        match = "named.test"
        mode = "require-verified-tls"
        nexthop = "gw.partner.test:{port}"

        [[domain]]
        match = "bracket.test"
        mode = "require-tls"
        nexthop = "[direct.partner.test]:{port}"

        [[domain]]
        match = "notls.test"
        mode = "require-tls"
        nexthop = "[{HOP_PLAIN}]:{port}"

        [[domain]]
        match = "wrongname.test"
        mode = "require-verified-tls"
        nexthop = "[{HOP_IPNAME}]:{port}"

        [[domain]]
        match = "ipname.test"
        mode = "require-verified-tls"
        nexthop = "[{HOP_IPNAME}]:{port}"

        [[domain]]
        match = "dane.test"
        mode = "require-tls"
        nexthop = "[dane-hop.partner.test]:{port}"

        [[domain]]
        match = "danematch.test"
        mode = "require-tls"
        nexthop = "[hop.partner.test]:{port}"
        """)


@pytest.fixture(scope="module")
def hop_dns(fake_dns: FakeDNS, hop_port: int, hop_cert: trustme.LeafCert) -> FakeDNS:
    for domain in ("bank", "named", "bracket", "notls", "wrongname", "ipname", "dane",
                   "danematch"):
        fake_dns.add(f"{domain}.test", "MX", "10 mx.plain.test.")
    fake_dns.add("gw.partner.test", "MX", "10 mx.gw.partner.test.")
    fake_dns.add("mx.gw.partner.test", "A", HOP_TLS)
    fake_dns.add("direct.partner.test", "A", HOP_TLS)
    fake_dns.add("direct.partner.test", "MX", "10 mx.plain.test.")  # must not be used
    fake_dns.add("dane-hop.partner.test", "A", HOP_TLS)
    # DANE applies only to hosts whose address answers are validated (RFC 7672 2.2.1).
    fake_dns.set_authenticated("dane-hop.partner.test", True)
    tlsa = f"_{hop_port}._tcp.dane-hop.partner.test"
    fake_dns.add(tlsa, "TLSA", "3 1 1 " + "ab" * 32)  # matches no certificate
    fake_dns.set_authenticated(tlsa, True)
    fake_dns.add("hop.partner.test", "A", HOP_TLS)
    fake_dns.set_authenticated("hop.partner.test", True)
    matching = f"_{hop_port}._tcp.hop.partner.test"
    fake_dns.add(matching, "TLSA", f"3 1 1 {spki_sha256(hop_cert)}")
    fake_dns.set_authenticated(matching, True)
    return fake_dns


def spki_sha256(cert: trustme.LeafCert) -> str:
    parsed = x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes())
    spki = parsed.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


@pytest.fixture(scope="module")
def hop_gateway(gateway_settings: GatewaySettings, hop_dns: FakeDNS, hops: dict[str, FakeMX],
                mx_hosts: dict[str, FakeMX], hop_port: int,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    policies = tmp_path_factory.mktemp("nexthop-policies")
    (policies / "policy.toml").write_text(TEST_POLICY + "\n" + rules(hop_port))
    settings = dataclasses.replace(gateway_settings, policy_dir=policies)
    process = GatewayProcess(tmp_path_factory.mktemp("nexthop-gateway"), settings)
    process.start()
    yield process
    process.stop()


def attempts_for(gateway: GatewayProcess, rcpt: str) -> list[dict[str, object]]:
    """The delivery attempts `queue show` lists for RCPT, once there is one."""
    message_id = stored_pickups(gateway, rcpt)[0].message_id
    deadline = time.monotonic() + 30
    while True:
        shown = json.loads(gateway.cli("queue", "show", message_id, "--json").stdout)
        history = [a for r in shown["recipients"] if r["rcpt"] == rcpt
                   for a in r["attempt_history"]]
        if history or time.monotonic() > deadline:
            return history
        time.sleep(0.1)


# -- routing --------------------------------------------------------------------------


def test_mail_to_a_domain_with_a_nexthop_goes_to_the_nexthop_and_not_to_its_mx(
        hop_gateway: GatewayProcess, hops: dict[str, FakeMX], mx_hosts: dict[str, FakeMX],
        unique: str) -> None:
    rcpt = f"{unique}@bank.test"
    hop_gateway.send(make_message(SENDER, rcpt, "Statement", "Plain news."))
    received = wait_for_mail(hops["tls"], rcpt)
    assert b"Plain news." in received.content
    assert_no_mail(mx_hosts["plain"], rcpt)


def test_confidential_mail_is_delivered_to_an_address_nexthop_whose_certificate_names_tls_name(
        hop_gateway: GatewayProcess, hops: dict[str, FakeMX], unique: str) -> None:
    rcpt = f"{unique}@bank.test"
    hop_gateway.send(make_message(SENDER, rcpt, "[secure] Statement", "Balance: 12."))
    received = wait_for_mail(hops["tls"], rcpt)
    assert received.tls and b"Balance: 12." in received.content


def test_named_nexthop_is_reached_through_its_mx_and_verified_for_the_name_given(
        hop_gateway: GatewayProcess, hops: dict[str, FakeMX], mx_hosts: dict[str, FakeMX],
        unique: str) -> None:
    # gw.partner.test's MX is mx.gw.partner.test (127.0.0.40); its certificate names
    # gw.partner.test, the nexthop as written, not the MX host.
    rcpt = f"{unique}@named.test"
    hop_gateway.send(make_message(SENDER, rcpt, "[secure] Contract", "Signed."))
    received = wait_for_mail(hops["tls"], rcpt)
    assert received.tls
    assert_no_mail(mx_hosts["plain"], rcpt)


def test_bracketed_name_nexthop_is_used_without_an_mx_lookup(
        hop_gateway: GatewayProcess, hop_dns: FakeDNS, hops: dict[str, FakeMX],
        mx_hosts: dict[str, FakeMX], unique: str) -> None:
    rcpt = f"{unique}@bracket.test"
    hop_gateway.send(make_message(SENDER, rcpt, "[secure] Lab", "Results."))
    assert wait_for_mail(hops["tls"], rcpt).tls
    assert_no_mail(mx_hosts["plain"], rcpt)
    assert ("direct.partner.test", "MX") not in hop_dns.queries
    assert ("direct.partner.test", "A") in hop_dns.queries


def test_confidential_mail_goes_to_pickup_when_the_nexthop_offers_no_starttls(
        hop_gateway: GatewayProcess, hops: dict[str, FakeMX], mx_hosts: dict[str, FakeMX],
        unique: str) -> None:
    rcpt = f"{unique}@notls.test"
    hop_gateway.send(make_message(SENDER, rcpt, "[secure] Results", "Secret body " + unique))
    assert [(a["address"], a["reason"]) for a in attempts_for(hop_gateway, rcpt)] == [
        (HOP_PLAIN, "no-starttls")]
    notification = wait_for_mail(hops["plain"], rcpt)  # the notice goes the nexthop way too
    assert ("Secret body " + unique).encode() not in notification.content
    assert not [m for m in hops["plain"].messages
                if rcpt in m.rcpt_tos and b"Secret body" in m.content]
    assert_no_mail(mx_hosts["plain"], rcpt)


def test_mail_that_is_not_confidential_is_relayed_in_plaintext_to_a_nexthop_without_starttls(
        hop_gateway: GatewayProcess, hops: dict[str, FakeMX], unique: str) -> None:
    rcpt = f"{unique}@notls.test"
    hop_gateway.send(make_message(SENDER, rcpt, "Lunch", "At noon."))
    received = wait_for_mail(hops["plain"], rcpt)
    assert not received.tls and b"At noon." in received.content


def test_address_nexthop_without_tls_name_needs_a_certificate_for_the_recipient_domain(
        hop_gateway: GatewayProcess, hops: dict[str, FakeMX], unique: str) -> None:
    rcpt = f"{unique}@ipname.test"
    hop_gateway.send(make_message(SENDER, rcpt, "[secure] Scan", "Image."))
    assert wait_for_mail(hops["ipname"], rcpt).tls


def test_confidential_mail_goes_to_pickup_when_the_nexthop_certificate_names_another_domain(
        hop_gateway: GatewayProcess, hops: dict[str, FakeMX], unique: str) -> None:
    rcpt = f"{unique}@wrongname.test"
    hop_gateway.send(make_message(SENDER, rcpt, "[secure] Scan", "Image " + unique))
    assert [(a["address"], a["reason"]) for a in attempts_for(hop_gateway, rcpt)] == [
        (HOP_IPNAME, "cert-not-verified")]
    assert not [m for m in hops["ipname"].messages
                if rcpt in m.rcpt_tos and ("Image " + unique).encode() in m.content]


def test_dane_records_of_a_named_nexthop_are_enforced(
        hop_gateway: GatewayProcess, hops: dict[str, FakeMX], unique: str) -> None:
    # Its TLSA record matches no certificate: the host must not get confidential mail.
    rcpt = f"{unique}@dane.test"
    hop_gateway.send(make_message(SENDER, rcpt, "[secure] Bill", "Owed " + unique))
    assert [(a["address"], a["reason"]) for a in attempts_for(hop_gateway, rcpt)] == [
        (HOP_TLS, "dane-mismatch")]
    assert not [m for m in hops["tls"].messages if rcpt in m.rcpt_tos]


def test_dane_records_matching_the_nexthop_certificate_let_confidential_mail_through(
        hop_gateway: GatewayProcess, hops: dict[str, FakeMX], unique: str) -> None:
    rcpt = f"{unique}@danematch.test"
    hop_gateway.send(make_message(SENDER, rcpt, "[secure] Bill", "Paid."))
    assert wait_for_mail(hops["tls"], rcpt).tls


# -- policy files ---------------------------------------------------------------------


def policy_errors(tmp_path: Path, rule: str) -> list[str]:
    (tmp_path / "10-partners.toml").write_text(
        '[[domain]]\nmatch = "partner.test"\nmode = "require-tls"\n' + rule)
    return check_policy(tmp_path).errors


@pytest.mark.parametrize("value, problem", [
    ('"192.0.2.10"', "an address is used as is: write [192.0.2.10]"),
    ('"[192.0.2.10]:0"', "port '0' must be a number from 1 to 65535"),
    ('"mail.partner.test:smtp"', "port 'smtp' must be a number"),
    ('"[999.0.2.10]"', "'999.0.2.10' is not a valid IP address"),
    ('"bad_host.test"', "'bad_host.test' is not a host name"),
    ('"lmtp:[192.0.2.10]"', "transport 'lmtp' is not supported"),
    ('"2001:db8::1"', "an IPv6 address goes in brackets"),
    ('""', 'expected "host", "host:port"'),
    ("25", 'expected "host", "host:port"'),
])
def test_bad_nexthop_is_an_error_at_its_file_and_line(tmp_path: Path, value: str,
                                                       problem: str) -> None:
    errors = policy_errors(tmp_path, f"nexthop = {value}\n")
    assert len(errors) == 1 and errors[0].startswith(f"{tmp_path / '10-partners.toml'}:4: ")
    assert problem in errors[0]


def test_tls_name_without_a_nexthop_is_an_error_at_its_line(tmp_path: Path) -> None:
    errors = policy_errors(tmp_path, 'tls_name = "mail.partner.test"\n')
    assert errors == [f"{tmp_path / '10-partners.toml'}:4: tls_name applies to a nexthop;"
                      " this rule has none"]


def test_bad_tls_name_is_an_error_at_its_line(tmp_path: Path) -> None:
    errors = policy_errors(tmp_path, 'nexthop = "[192.0.2.10]"\n\ntls_name = "not a name"\n')
    assert len(errors) == 1 and errors[0].startswith(f"{tmp_path / '10-partners.toml'}:6: ")


@pytest.mark.parametrize("value, host, port, mx_lookup", [
    ("mail.partner.test", "mail.partner.test", None, True),
    ("mail.partner.test:2525", "mail.partner.test", 2525, True),
    ("[mail.partner.test]", "mail.partner.test", None, False),
    ("[192.0.2.10]:25", "192.0.2.10", 25, False),
    ("[ipv6:2001:db8::1]:25", "2001:db8::1", 25, False),
    ("smtp:[192.0.2.10]", "192.0.2.10", None, False),
])
def test_nexthop_forms_of_a_postfix_transport_map_are_read(
        tmp_path: Path, value: str, host: str, port: int | None, mx_lookup: bool) -> None:
    assert policy_errors(tmp_path, f'nexthop = "{value}"\n') == []
    policy = check_policy(tmp_path).policy
    assert policy is not None
    nexthop = policy.rules[0].nexthop
    assert nexthop is not None
    assert (nexthop.host, nexthop.port, nexthop.mx_lookup) == (host, port, mx_lookup)


def test_runner_keeps_the_previous_nexthop_when_the_changed_policy_does_not_load(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nexthop_module, "RECHECK_INTERVAL", 0.0)
    policy = tmp_path / "10-partners.toml"
    policy.write_text('[[domain]]\nmatch = "partner.test"\nmode = "require-tls"\n'
                      'nexthop = "[192.0.2.10]"\n')
    nexthops = PolicyNexthops(tmp_path)
    policy.write_text('[[domain]]\nmatch = "partner.test"\nmode = "require-tls"\n'
                      'nexthop = "[192.0.2.11]:99999"\n')
    found = nexthops("partner.test")
    assert found is not None and found.host == "192.0.2.10"


def test_runner_follows_a_changed_nexthop(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nexthop_module, "RECHECK_INTERVAL", 0.0)
    policy = tmp_path / "10-partners.toml"
    policy.write_text('[[domain]]\nmatch = "partner.test"\nmode = "require-tls"\n'
                      'nexthop = "[192.0.2.10]"\n')
    nexthops = PolicyNexthops(tmp_path)
    policy.write_text('[[domain]]\nmatch = "partner.test"\nmode = "require-tls"\n'
                      'nexthop = "[192.0.2.11]:2525"\n')
    found = nexthops("partner.test")
    assert found is not None and (found.host, found.port) == ("192.0.2.11", 2525)


# -- route and probe ------------------------------------------------------------------


def test_route_shows_the_nexthop_and_the_name_its_certificate_is_checked_for(
        hop_gateway: GatewayProcess, hop_port: int) -> None:
    shown = hop_gateway.cli("route", "--from", SENDER, "--to", "a@bank.test",
                            "--subject", "[secure] x")
    assert shown.returncode == 0, shown.stderr
    assert f"nexthop:      [{HOP_TLS}]:{hop_port} (" in shown.stdout
    assert "checks the certificate for hop.partner.test" in shown.stdout
    assert "mta-sts:      not applied (nexthop route)" in shown.stdout
    assert (f"outcome:      delivered directly if nexthop [{HOP_TLS}]:{hop_port} completes"
            " verified TLS (certificate for hop.partner.test)") in shown.stdout


def test_route_json_says_dane_is_not_looked_up_for_an_address_nexthop(
        hop_gateway: GatewayProcess) -> None:
    shown = json.loads(hop_gateway.cli("route", "--from", SENDER, "--to", "a@bank.test",
                                       "--json").stdout)
    assert shown["domain"]["nexthop"]["host"] == HOP_TLS
    assert shown["domain"]["nexthop"]["dane"].startswith("not looked up for an address")
    assert shown["domain"]["dane"] == []


def test_probe_connects_to_the_nexthop_and_checks_its_certificate_for_the_checked_name(
        hop_gateway: GatewayProcess, hop_port: int) -> None:
    shown = hop_gateway.cli("probe", "bank.test")
    assert shown.returncode == 0, shown.stderr
    assert f"Nexthop [{HOP_TLS}]:{hop_port} (" in shown.stdout
    assert f"  0 {HOP_TLS} [{HOP_TLS}]" in shown.stdout
    assert "name matches hop.partner.test" in shown.stdout
    assert "mx.plain.test" not in shown.stdout
    report = json.loads(hop_gateway.cli("probe", "bank.test", "--json").stdout)
    assert report["routes"]["require-verified-tls"]["action"] == "deliver-tls"
    assert report["nexthop"]["mta_sts"].startswith("not applied")


def test_probe_predicts_pickup_for_a_nexthop_without_starttls(
        hop_gateway: GatewayProcess) -> None:
    report = json.loads(hop_gateway.cli("probe", "notls.test", "--json").stdout)
    assert [h["address"] for h in report["hosts"]] == [HOP_PLAIN]
    assert report["routes"]["require-tls"]["action"] == "pickup"
    assert report["routes"]["not-confidential"]["action"] == "deliver-opportunistic"
