"""`sealgate keys` against a running gateway, on both back-ends: `keys list` shows each
epoch's key with its message count and destruction date, `keys rotate` gives later
messages new keys while the old ones still decrypt."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from gateway.storage.protocols import Pickup
from tests.conftest import make_message
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess
from tests.journey import opened_storage, stored_pickups


def stored_one(gateway: GatewayProcess, rcpt: str, subject: str, body: str = "results"
               ) -> Pickup:
    gateway.send(make_message("doctor@clinic.test", rcpt, f"[secure] {subject}", body))
    [pickup] = stored_pickups(gateway, rcpt)
    return pickup


def expected_epoch(pickup: Pickup) -> str:
    return datetime.fromtimestamp(pickup.expires, UTC).date().isoformat()


def listed(gateway: GatewayProcess) -> dict[str, dict[str, object]]:
    result = gateway.cli("keys", "list", "--json")
    assert result.returncode == 0, result.stderr
    return {row["key_id"]: row for row in json.loads(result.stdout)}


def test_keys_list_shows_a_messages_epoch_key_with_its_count_and_destruction_date(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    pickup = stored_one(gateway, f"{unique}@plain.test", "Listed")
    row = listed(gateway)[pickup.key_id]
    epoch = expected_epoch(pickup)
    end = datetime.fromisoformat(epoch).replace(tzinfo=UTC) + timedelta(days=1)
    assert (row["epoch"], row["state"]) == (epoch, "live")
    assert isinstance(row["messages"], int) and row["messages"] >= 1
    assert row["destroyed"] == end.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_keys_list_prints_one_line_per_key(gateway: GatewayProcess,
                                           mx_hosts: dict[str, FakeMX], unique: str) -> None:
    pickup = stored_one(gateway, f"{unique}@plain.test", "Table")
    result = gateway.cli("keys", "list")
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    assert header.split() == ["KEY", "EPOCH", "MESSAGES", "DESTROYED"]
    [line] = [line for line in lines if line.startswith(pickup.key_id + " ")]
    assert expected_epoch(pickup) in line and "from " in line


def test_keys_rotate_gives_later_messages_new_keys_and_old_ones_still_decrypt(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    before = stored_one(gateway, f"{unique}-1@plain.test", "Before rotation", "Old key")
    result = gateway.cli("keys", "rotate")
    assert result.returncode == 0 and result.stdout.startswith("key generation "), result
    after = stored_one(gateway, f"{unique}-2@plain.test", "After rotation", "New key")
    assert after.key_id != before.key_id
    with opened_storage(gateway.storage_dir) as storage:
        assert b"Old key" in storage.open_pickup(before.id)
        assert b"New key" in storage.open_pickup(after.id)


def test_purge_reports_the_keys_it_destroyed(gateway: GatewayProcess,
                                             mx_hosts: dict[str, FakeMX], unique: str) -> None:
    pickup = stored_one(gateway, f"{unique}@plain.test", "Kept")
    result = gateway.cli("purge")
    assert result.returncode == 0, result.stderr
    assert "destroyed 0 key-encryption keys that wrapped nothing else" in result.stdout
    assert pickup.key_id in listed(gateway)  # its epoch is not over: the key stays
