"""TLS-Required: No (RFC 8689 5), end to end: ordinary mail carrying it is delivered even
where the recipient domain's MTA-STS or DANE would stop it; confidential mail never is,
and loses the field before it is relayed.

Domains, named for their scenario (both served by mx.tls.test's fake host):
  tlsno-sts.test    MTA-STS enforce listing only mx.elsewhere.test
  tlsno-dane.test   validated MX and address answers, a validated TLSA record matching nothing
"""

from __future__ import annotations

import time

import pytest

from tests.conftest import POLICY_HTTPS_IP, assert_no_mail, make_message, wait_for_mail
from tests.fakes.dns_server import FakeDNS
from tests.fakes.https_server import FakeHTTPS
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess
from tests.journey import recipient_state, stored_pickups


@pytest.fixture(scope="module")
def tls_policies(fake_dns: FakeDNS, policy_https: FakeHTTPS, mx_port: int) -> None:
    fake_dns.add("tlsno-sts.test", "MX", "10 mx.tls.test.")
    fake_dns.add("_mta-sts.tlsno-sts.test", "TXT", '"v=STSv1; id=tlsno1;"')
    fake_dns.add("mta-sts.tlsno-sts.test", "A", POLICY_HTTPS_IP)
    policy_https.serve_policy(
        "tlsno-sts.test", "version: STSv1\nmode: enforce\nmx: mx.elsewhere.test\nmax_age: 86400\n")
    fake_dns.add("tlsno-dane.test", "MX", "10 mx.tlsno-dane.test.")
    fake_dns.add("mx.tlsno-dane.test", "A", "127.0.0.2")  # mx.tls.test's fake host
    tlsa = f"_{mx_port}._tcp.mx.tlsno-dane.test"
    fake_dns.add(tlsa, "TLSA", "3 1 1 " + "ab" * 32)
    for name in ("tlsno-dane.test", "mx.tlsno-dane.test", tlsa):
        fake_dns.set_authenticated(name, True)


def wait_for_state(gateway: GatewayProcess, rcpt: str, state: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (found := recipient_state(gateway.storage_dir, rcpt)) is None or found[0] != state:
        assert time.monotonic() < deadline, f"{rcpt}: {found}, wanted {state}"
        time.sleep(0.05)


@pytest.mark.usefixtures("tls_policies")
def test_ordinary_mail_waits_for_a_host_the_mta_sts_policy_lists(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    rcpt = f"{unique}@tlsno-sts.test"
    gateway.send(make_message("doctor@clinic.test", rcpt, "Plain"))
    wait_for_state(gateway, rcpt, "deferred")
    assert_no_mail(mx_hosts["tls"], rcpt)


@pytest.mark.usefixtures("tls_policies")
def test_tls_required_no_lets_ordinary_mail_past_an_mta_sts_mismatch(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    rcpt = f"{unique}@tlsno-sts.test"
    gateway.send(make_message("doctor@clinic.test", rcpt, "Plain", TLS_Required="No"))
    assert b"TLS-Required: No" in wait_for_mail(mx_hosts["tls"], rcpt).content


@pytest.mark.usefixtures("tls_policies")
def test_ordinary_mail_is_not_delivered_to_a_host_failing_dane(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    rcpt = f"{unique}@tlsno-dane.test"
    gateway.send(make_message("doctor@clinic.test", rcpt, "Plain"))
    wait_for_state(gateway, rcpt, "deferred")
    assert_no_mail(mx_hosts["tls"], rcpt)


@pytest.mark.usefixtures("tls_policies")
def test_tls_required_no_lets_ordinary_mail_past_a_dane_mismatch(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    rcpt = f"{unique}@tlsno-dane.test"
    gateway.send(make_message("doctor@clinic.test", rcpt, "Plain", TLS_Required="no"))
    assert wait_for_mail(mx_hosts["tls"], rcpt).tls  # still opportunistic TLS


@pytest.mark.usefixtures("tls_policies")
def test_tls_required_no_is_not_honoured_for_confidential_mail(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    rcpt = f"{unique}@tlsno-sts.test"
    gateway.send(make_message("doctor@clinic.test", rcpt, "[secure] Results", "Secret",
                              TLS_Required="No"))
    stored_pickups(gateway, rcpt)
    assert "doctor@clinic.test" not in {m.mail_from for m in mx_hosts["tls"].messages
                                        if rcpt in m.rcpt_tos}


def test_tls_required_is_removed_from_confidential_mail_before_relaying(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    rcpt = f"{unique}@verified.test"
    gateway.send(make_message("doctor@clinic.test", rcpt, "[secure] Results", "Secret",
                              TLS_Required="No"))
    received = wait_for_mail(mx_hosts["tls"], rcpt)
    assert b"TLS-Required" not in received.content and b"Secret" in received.content
