"""One `sealgate serve` per store: a second one refuses to start before it binds a port or
touches a row, so the live leases of the first are never taken over. (Leases between the
runners of one store: tests/storage/test_contract_queue.py.)"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gateway.storage.lock import StoreInUse, lock_store
from tests.conftest import make_message, wait_for_mail
from tests.fakes.holding_mx import HoldingMX
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess
from tests.journey import recipient_state


def state_of(storage_dir: Path, rcpt: str) -> tuple[str, str]:
    found = recipient_state(storage_dir, rcpt)
    assert found is not None, f"nothing queued to {rcpt}"
    return found


def wait_until_state(gateway: GatewayProcess, rcpt: str, state: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while state_of(gateway.storage_dir, rcpt)[0] != state:
        assert time.monotonic() < deadline, f"{rcpt} never {state}:\n{gateway.log_tail()}"
        time.sleep(0.05)


def test_store_lock_is_refused_to_a_second_holder_naming_the_first(tmp_path: Path) -> None:
    first = lock_store(tmp_path, "first-owner")
    try:
        with pytest.raises(StoreInUse, match=r"another sealgate serve \(pid \d+\) is already"):
            lock_store(tmp_path, "second-owner")
    finally:
        first.release()


def test_next_lock_holder_learns_the_previous_owner(tmp_path: Path) -> None:
    lock_store(tmp_path, "first-owner").release()
    second = lock_store(tmp_path, "second-owner")
    second.release()
    assert second.previous_owner == "first-owner"


def test_second_serve_on_the_same_store_exits_with_one_clear_line(
        own_gateway: GatewayProcess, mx_hosts: dict[str, FakeMX]) -> None:
    own_gateway.start()
    second = own_gateway.cli("serve")
    assert second.returncode == 1
    output = (second.stdout + second.stderr).strip().splitlines()
    assert len(output) == 1, output
    assert "already using the store" in output[0] and "serve.lock" in output[0]


def test_second_serve_leaves_the_delivery_in_flight_of_the_first_alone(
        own_gateway: GatewayProcess, holding_mx: HoldingMX, unique: str) -> None:
    held = f"{unique}@held.test"
    own_gateway.start()
    own_gateway.send(make_message("doctor@clinic.test", held, "Held"))
    holding_mx.wait_for_copy(held)  # the first instance is waiting for the DATA reply
    in_flight = state_of(own_gateway.storage_dir, held)
    assert own_gateway.cli("serve").returncode == 1
    assert state_of(own_gateway.storage_dir, held) == in_flight
    holding_mx.release.set()
    wait_until_state(own_gateway, held, "delivered")
    assert holding_mx.copies_for(held) == 1


def test_first_serve_keeps_delivering_after_a_second_was_refused(
        own_gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    own_gateway.start()
    assert own_gateway.cli("serve").returncode == 1
    rcpt = f"{unique}@plain.test"
    own_gateway.send(make_message("doctor@clinic.test", rcpt, "After the second"))
    wait_for_mail(mx_hosts["plain"], rcpt)
