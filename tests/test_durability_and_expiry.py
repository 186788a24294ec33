"""Once accepted, a message survives kill -9; once expired, a stored message is gone."""

from __future__ import annotations

import time

import httpx
import pytest

from gateway.vault.sender_links import sender_link_url
from tests.conftest import make_message, wait_for_mail
from tests.fakes.dns_server import FakeDNS
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess
from tests.journey import opened_storage, stored_pickups


def test_accepted_message_survives_kill_9_and_is_delivered_after_restart(
        own_gateway: GatewayProcess, fake_dns: FakeDNS, mx_port: int, unique: str) -> None:
    # The domain's MX host is down when the message arrives, so it waits in the queue.
    fake_dns.add("later.test", "MX", "10 mx.later.test.")
    fake_dns.add("mx.later.test", "A", "127.0.0.6")
    rcpt = f"{unique}@later.test"
    own_gateway.start()
    reply = own_gateway.send(make_message("doctor@clinic.test", rcpt, "Survive", "Still here"))
    queue_id = reply.rsplit(" ", 1)[1]
    own_gateway.kill_hard()
    with opened_storage(own_gateway.storage_dir) as storage:
        assert b"Still here" in storage.read_spool(queue_id)

    with FakeMX("127.0.0.6", mx_port, name="mx.later.test") as later_host:
        own_gateway.start()
        received = wait_for_mail(later_host, rcpt, timeout=30)
    assert b"Still here" in received.content


def has_sealed_copy(gateway: GatewayProcess, pickup_id: str) -> bool:
    """Whether the store still holds the pickup's encrypted copy (file or chunks)."""
    return gateway.sealed_copy(pickup_id) is not None


def test_purge_destroys_expired_messages_on_disk_and_in_the_portal(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    rcpt = f"{unique}@plain.test"
    gateway.send(make_message("doctor@clinic.test", rcpt, "[secure] Old news", "Expiring",
                              X_Sealgate_Expires="5s"))
    pickup = stored_pickups(gateway, rcpt)[0]
    link = f"{gateway.portal_url}/m/{pickup.id}"
    assert has_sealed_copy(gateway, pickup.id) and httpx.get(link).status_code == 200

    time.sleep(max(0.0, pickup.expires - time.time()) + 0.5)
    result = gateway.cli("purge")

    assert result.returncode == 0, result.stderr
    assert not has_sealed_copy(gateway, pickup.id)
    with opened_storage(gateway.storage_dir) as storage:
        assert pickup.id not in [p.id for p in storage.list_pickups()]  # expired ones too
    assert httpx.get(link).status_code == 404


def test_purge_forgets_the_sender_links_of_expired_messages(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    rcpt = f"{unique}@plain.test"
    gateway.send(make_message("doctor@clinic.test", rcpt, "[secure] Old news", "Expiring",
                              X_Sealgate_Expires="5s"))
    pickup = stored_pickups(gateway, rcpt)[0]
    with opened_storage(gateway.storage_dir) as storage:
        url = sender_link_url(storage, gateway.portal_url, pickup.message_id, pickup.sender)
    assert httpx.get(url).status_code == 200

    time.sleep(max(0.0, pickup.expires - time.time()) + 0.5)
    result = gateway.cli("purge")

    assert result.returncode == 0, result.stderr
    assert "sender links of expired messages" in result.stdout
    with opened_storage(gateway.storage_dir) as storage:
        assert storage.forget_expired_sender_links() == 0  # purge (or serve) forgot it
    assert httpx.get(url).status_code == 404


def test_purge_keeps_messages_that_have_not_expired(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    rcpt = f"{unique}@plain.test"
    gateway.send(make_message("doctor@clinic.test", rcpt, "[secure] Fresh", "Keep me"))
    pickup = stored_pickups(gateway, rcpt)[0]
    assert gateway.cli("purge").returncode == 0
    assert has_sealed_copy(gateway, pickup.id)


def test_pickup_expires_after_the_configured_retention(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    rcpt = f"{unique}@plain.test"
    gateway.send(make_message("doctor@clinic.test", rcpt, "[secure] Retention"))
    pickup = stored_pickups(gateway, rcpt)[0]
    assert pickup.expires - pickup.created == pytest.approx(21 * 86400, abs=60)


def test_sender_shortens_retention_with_x_sealgate_expires(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    rcpt = f"{unique}@plain.test"
    gateway.send(make_message("doctor@clinic.test", rcpt, "[secure] Short-lived",
                              X_Sealgate_Expires="7d"))
    pickup = stored_pickups(gateway, rcpt)[0]
    assert pickup.expires - pickup.created == pytest.approx(7 * 86400, abs=60)
