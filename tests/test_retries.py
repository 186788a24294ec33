"""Temporary failures are retried; a dead MX host falls through to the next one."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.conftest import make_message, wait_for_mail
from tests.fakes.dns_server import FakeDNS
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess
from tests.journey import recipient_state as queued_state


@pytest.fixture(scope="module")
def busy_host(fake_dns: FakeDNS, mx_port: int) -> Iterator[FakeMX]:
    fake_dns.add("busy.test", "MX", "10 mx.busy.test.")
    fake_dns.add("mx.busy.test", "A", "127.0.0.8")
    # The first MX host of fallback.test is an address where nothing listens.
    fake_dns.add("fallback.test", "MX", "10 mx-dead.fallback.test.", "20 mx.plain.test.")
    fake_dns.add("mx-dead.fallback.test", "A", "127.0.0.10")
    with FakeMX("127.0.0.8", mx_port, name="mx.busy.test") as host:
        yield host


def recipient_state(gateway: GatewayProcess, rcpt: str) -> str | None:
    found = queued_state(gateway.storage_dir, rcpt)
    return found[0] if found else None


def wait_for_state(gateway: GatewayProcess, rcpt: str, state: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while recipient_state(gateway, rcpt) != state:
        assert time.monotonic() < deadline, f"{rcpt} never became {state}"
        time.sleep(0.05)


def test_temporary_failure_is_retried_until_it_succeeds(
        gateway: GatewayProcess, busy_host: FakeMX, unique: str) -> None:
    rcpt = f"{unique}@busy.test"
    busy_host.rcpt_reply = "451 4.3.0 try again later"
    try:
        gateway.send(make_message("doctor@clinic.test", rcpt, "Retry me"))
        wait_for_state(gateway, rcpt, "deferred")
    finally:
        busy_host.rcpt_reply = None
    assert b"Retry me" in wait_for_mail(busy_host, rcpt).content
    wait_for_state(gateway, rcpt, "delivered")


def test_unreachable_first_mx_host_falls_back_to_the_next(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], busy_host: FakeMX,
        unique: str) -> None:
    rcpt = f"{unique}@fallback.test"
    gateway.send(make_message("doctor@clinic.test", rcpt, "Second host"))
    assert b"Second host" in wait_for_mail(mx_hosts["plain"], rcpt).content


def test_queue_cli_lists_shows_and_deletes_waiting_mail(
        gateway: GatewayProcess, busy_host: FakeMX, unique: str) -> None:
    rcpt = f"{unique}@busy.test"
    busy_host.rcpt_reply = "451 4.3.0 try again later"
    try:
        reply = gateway.send(make_message("doctor@clinic.test", rcpt, "Queued"))
        queue_id = reply.rsplit(" ", 1)[1]
        wait_for_state(gateway, rcpt, "deferred")
        listing = gateway.cli("queue", "list")
        assert queue_id in listing.stdout and "451 4.3.0" in listing.stdout
        assert rcpt in gateway.cli("queue", "show", queue_id).stdout
        assert gateway.cli("queue", "delete", queue_id).returncode == 0
        assert queue_id not in gateway.cli("queue", "list").stdout
        assert gateway.cli("queue", "show", queue_id).returncode == 1
    finally:
        busy_host.rcpt_reply = None
