"""DKIM: mail Sealgate writes is signed when [dkim] is configured; bad keys fail at start-up."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import make_message, wait_for_mail
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess, GatewaySettings


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def dns_record(key: rsa.RSAPrivateKey) -> bytes:
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def signing_gateway(settings: GatewaySettings, directory: Path, key_file: Path,
                    **dkim_extra: object) -> GatewayProcess:
    extra = {**settings.extra, "dkim": {"domain": "clinic.test", "selector": "sg1",
                                        "key_file": str(key_file), **dkim_extra}}
    return GatewayProcess(directory, dataclasses.replace(settings, extra=extra))


@pytest.fixture
def key_file(rsa_key: rsa.RSAPrivateKey, tmp_path: Path) -> Path:
    path = tmp_path / "dkim.key"
    path.write_bytes(rsa_key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return path


@pytest.fixture
def dkim_gateway(gateway_settings: GatewaySettings, key_file: Path,
                 tmp_path: Path) -> Iterator[GatewayProcess]:
    process = signing_gateway(gateway_settings, tmp_path / "gw", key_file)
    process.start()
    yield process
    process.stop()


def verifies(content: bytes, key: rsa.RSAPrivateKey) -> bool:
    record = dns_record(key)

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"sg1._domainkey.clinic.test."
        return record

    return bool(dkim.verify(content, dnsfunc=lookup))


def test_pickup_notification_carries_a_valid_dkim_signature(
        dkim_gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], rsa_key: rsa.RSAPrivateKey,
        unique: str) -> None:
    rcpt = f"{unique}@plain.test"
    dkim_gateway.send(make_message("doctor@clinic.test", rcpt, "[secure] Signed notice"))
    notification = wait_for_mail(mx_hosts["plain"], rcpt)
    assert notification.content.startswith(b"DKIM-Signature:")
    assert verifies(notification.content, rsa_key)


def test_relayed_mail_is_not_signed_unless_asked(
        dkim_gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    rcpt = f"{unique}@plain.test"
    dkim_gateway.send(make_message("doctor@clinic.test", rcpt, "Ordinary"))
    assert b"DKIM-Signature" not in wait_for_mail(mx_hosts["plain"], rcpt).content


def test_unreadable_key_stops_start_up_with_a_clear_error(
        gateway_settings: GatewaySettings, tmp_path: Path) -> None:
    bad = tmp_path / "not-a-key.pem"
    bad.write_text("hello")
    process = signing_gateway(gateway_settings, tmp_path / "gw", bad)
    with pytest.raises(AssertionError, match="not a usable private key"):
        process.start(timeout=10)


def test_relayed_mail_is_signed_with_sign_relayed(
        gateway_settings: GatewaySettings, key_file: Path, tmp_path: Path,
        mx_hosts: dict[str, FakeMX], rsa_key: rsa.RSAPrivateKey, unique: str) -> None:
    process = signing_gateway(gateway_settings, tmp_path / "gw2", key_file, sign_relayed=True)
    process.start()
    try:
        rcpt = f"{unique}@plain.test"
        process.send(make_message("doctor@clinic.test", rcpt, "Ordinary but signed"))
        assert verifies(wait_for_mail(mx_hosts["plain"], rcpt).content, rsa_key)
    finally:
        process.stop()
