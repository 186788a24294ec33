"""RET=FULL (RFC 3461 4.3) fails closed: a message confidential for one recipient is
queued with RET=HDRS, so a failure report to any of its recipients returns only headers."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.conftest import TEST_POLICY, make_message, wait_for_mail
from tests.dsn_mail import returned_part, send_with_dsn, status_blocks
from tests.fakes.certs import leaf
from tests.fakes.dns_server import FakeDNS
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess, GatewaySettings

MIXED_MX_IP = "127.0.0.93"
CONFIDENTIAL_FOR_SECRET_TEST = """
[[rule]]
name = "secret-domain"
recipient_domain = ["secret.test"]
confidential = true
"""


@pytest.fixture(scope="module")
def refusing_both(fake_dns: FakeDNS, mx_port: int, ca: trustme.CA) -> Iterator[FakeMX]:
    """MX of open.test and secret.test: TLS, refuses every recipient."""
    for domain in ("open.test", "secret.test"):
        fake_dns.add(domain, "MX", "10 mx.mixed.test.")
    fake_dns.add("mx.mixed.test", "A", MIXED_MX_IP)
    with FakeMX(MIXED_MX_IP, mx_port, name="mx.mixed.test", tls_cert=leaf(ca, "mx.mixed.test"),
                rcpt_reply="550 5.1.1 no such user here") as host:
        yield host


@pytest.fixture(scope="module")
def rule_gateway(gateway_settings: GatewaySettings, mx_hosts: dict[str, FakeMX],
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    policies = tmp_path_factory.mktemp("ret-policies")
    Path(policies / "policy.toml").write_text(TEST_POLICY + CONFIDENTIAL_FOR_SECRET_TEST)
    process = GatewayProcess(tmp_path_factory.mktemp("ret-gateway"),
                             dataclasses.replace(gateway_settings, policy_dir=policies))
    process.start()
    yield process
    process.stop()


def test_ret_full_returns_only_headers_when_another_recipient_finds_it_confidential(
        rule_gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], refusing_both: FakeMX,
        unique: str) -> None:
    sender, open_rcpt = f"{unique}@relay.test", f"{unique}@open.test"
    send_with_dsn(rule_gateway, make_message(sender, open_rcpt, "Claim", "Claim body text"),
                  {open_rcpt: [], f"{unique}@secret.test": ["NOTIFY=NEVER"]}, ["RET=FULL"])
    dsn = wait_for_mail(mx_hosts["relay"], sender).content
    assert [b["Final-Recipient"] for b in status_blocks(dsn)[1:]] == [f"rfc822; {open_rcpt}"]
    assert returned_part(dsn).get_content_type() == "text/rfc822-headers"
    assert b"Claim body text" not in dsn


def test_ret_full_returns_the_message_when_no_recipient_finds_it_confidential(
        rule_gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], refusing_both: FakeMX,
        unique: str) -> None:
    sender, open_rcpt = f"{unique}@relay.test", f"{unique}@open.test"
    send_with_dsn(rule_gateway, make_message(sender, open_rcpt, "Claim", "Claim body text"),
                  {open_rcpt: []}, ["RET=FULL"])
    dsn = wait_for_mail(mx_hosts["relay"], sender).content
    assert returned_part(dsn).get_content_type() == "message/rfc822"
    assert b"Claim body text" in dsn
