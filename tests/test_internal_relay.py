"""Mail queued for the internal relay (portal replies) goes to internal.relay, not to MX hosts."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.storage.store import Route, Store
from tests.conftest import make_message, wait_for_mail
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess, GatewaySettings


@pytest.fixture
def stopped_gateway(gateway_settings: GatewaySettings, tmp_path: Path) -> Iterator[GatewayProcess]:
    process = GatewayProcess(tmp_path / "gw", dataclasses.replace(gateway_settings))
    yield process
    process.stop()


def test_internal_route_is_delivered_to_the_internal_relay(
        stopped_gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    # plain.test's MX is 127.0.0.3; the internal relay is 127.0.0.5: the mail must go to the latter.
    rcpt = f"{unique}@plain.test"
    store = Store(stopped_gateway.storage_dir)
    message = make_message(f"{unique}@patients.test", rcpt, "Re: results", "Thanks, doctor.")
    store.enqueue(f"{unique}@patients.test", [Route(rcpt, mode="internal")],
                  message.as_bytes(policy=message.policy.clone(linesep="\r\n")))
    store.close()
    stopped_gateway.start()
    received = wait_for_mail(mx_hosts["relay"], rcpt)
    assert b"Thanks, doctor." in received.content
    assert not [m for m in mx_hosts["plain"].messages if rcpt in m.rcpt_tos]
