"""SIGTERM drains: no new mail or claims, deliveries in flight finish (up to
delivery.shutdown_timeout), then exit, so a restart never sends a message a second time."""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import make_message
from tests.fakes.holding_mx import HoldingMX
from tests.gateway_process import GatewayProcess, GatewaySettings
from tests.journey import recipient_state, wait_until


def state_of(gateway: GatewayProcess, rcpt: str) -> str:
    found = recipient_state(gateway.storage_dir, rcpt)
    assert found is not None, f"nothing queued to {rcpt}"
    return found[0]


def terminate_mid_delivery(gateway: GatewayProcess, holding_mx: HoldingMX, rcpt: str) -> None:
    """Start GATEWAY, get a message to RCPT to the point where the MX has the data and
    holds its reply, then SIGTERM the gateway and wait until it is shutting down."""
    gateway.start()
    gateway.send(make_message("doctor@clinic.test", rcpt, "Drain me", "Exactly once"))
    holding_mx.wait_for_copy(rcpt)
    assert gateway.process is not None
    gateway.process.send_signal(signal.SIGTERM)
    wait_until("shutting down", lambda: "shutting down" in gateway.log_tail(), gateway)


def exit_code(gateway: GatewayProcess, timeout: float = 30) -> int:
    assert gateway.process is not None
    code = gateway.process.wait(timeout=timeout)
    gateway.process = None
    return code


@pytest.fixture
def impatient_gateway(gateway_settings: GatewaySettings, tmp_path: Path
                      ) -> Iterator[GatewayProcess]:
    extra = {**gateway_settings.extra,
             "delivery": {**gateway_settings.extra.get("delivery", {}), "shutdown_timeout": "1s"}}
    process = GatewayProcess(tmp_path / "gw", dataclasses.replace(gateway_settings, extra=extra))
    yield process
    process.stop()


def test_sigterm_lets_the_delivery_in_flight_finish_and_a_restart_sends_no_second_copy(
        own_gateway: GatewayProcess, holding_mx: HoldingMX, unique: str) -> None:
    rcpt = f"{unique}@held.test"
    terminate_mid_delivery(own_gateway, holding_mx, rcpt)
    holding_mx.release.set()
    assert exit_code(own_gateway) == 0
    own_gateway.start()
    wait_until("delivered", lambda: state_of(own_gateway, rcpt) == "delivered", own_gateway)
    assert holding_mx.copies_for(rcpt) == 1


def test_sigterm_waits_no_longer_than_shutdown_timeout(
        impatient_gateway: GatewayProcess, holding_mx: HoldingMX, unique: str) -> None:
    rcpt = f"{unique}@held.test"
    terminate_mid_delivery(impatient_gateway, holding_mx, rcpt)  # the reply never comes
    assert exit_code(impatient_gateway) == 0
    assert "still in flight after 1 s were stopped" in impatient_gateway.log_tail()
    assert state_of(impatient_gateway, rcpt) == "delivering"  # due again at the next start
