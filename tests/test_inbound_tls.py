"""Optional inbound STARTTLS, when smtp.tls_cert and smtp.tls_key are set."""

from __future__ import annotations

import dataclasses
import smtplib
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.conftest import make_message, wait_for_mail
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess, GatewaySettings


@pytest.fixture
def tls_gateway(gateway_settings: GatewaySettings, ca: trustme.CA,
                tmp_path: Path) -> Iterator[GatewayProcess]:
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert_file, key_file = tmp_path / "gw.pem", tmp_path / "gw.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    extra = {**gateway_settings.extra,
             "smtp": {**gateway_settings.extra["smtp"], "tls_cert": str(cert_file),
                      "tls_key": str(key_file)}}
    process = GatewayProcess(tmp_path / "gw", dataclasses.replace(gateway_settings, extra=extra))
    process.start()
    yield process
    process.stop()


def test_inbound_starttls_is_offered_and_works(tls_gateway: GatewayProcess, ca: trustme.CA,
                                               mx_hosts: dict[str, FakeMX], unique: str) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    rcpt = f"{unique}@plain.test"
    with smtplib.SMTP("127.0.0.1", tls_gateway.smtp_port, timeout=30) as client:
        client.ehlo("mail.clinic.test")
        assert client.has_extn("starttls")
        client.starttls(context=context)
        client.send_message(make_message("doctor@clinic.test", rcpt, "Over TLS"))
    assert b"Over TLS" in wait_for_mail(mx_hosts["plain"], rcpt).content


def test_starttls_is_not_offered_without_a_certificate(gateway: GatewayProcess) -> None:
    with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=30) as client:
        client.ehlo("mail.clinic.test")
        assert not client.has_extn("starttls")
