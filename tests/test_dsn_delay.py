"""Delay warnings honour NOTIFY (RFC 3461 4.1): only recipients that asked for DELAY, or
gave no NOTIFY at all, are warned; the warning names their ORCPT and the message's ENVID.
The queue runner in-process with an injectable clock, so no test waits four hours."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import Iterator

import pytest

from gateway.config import Config
from gateway.serve import build_runner
from gateway.storage.protocols import EnvelopeDSN
from gateway.storage.store import Route, Store
from tests.dsn_mail import status_blocks
from tests.fakes.dns_server import FakeDNS
from tests.fakes.mx_host import FakeMX
from tests.portal_fixtures import FakeClock, clock, store

__all__ = ["clock", "store"]  # shared fixtures, used here by name

MESSAGE = b"From: doctor@relay.test\r\nSubject: Referral\r\n\r\nPrivate body\r\n"
PAST_THE_WARNING = 4 * 3600 + 1  # delivery.delay_warning's default is 4 h
SLOW_MX_IP = "127.0.0.92"


@pytest.fixture(scope="module")
def busy_host(fake_dns: FakeDNS, mx_port: int) -> Iterator[FakeMX]:
    fake_dns.add("dsn-busy.test", "MX", "10 mx.dsn-busy.test.")
    fake_dns.add("mx.dsn-busy.test", "A", SLOW_MX_IP)
    with FakeMX(SLOW_MX_IP, mx_port, name="mx.dsn-busy.test",
                rcpt_reply="451 4.3.0 busy") as host:
        yield host


def run_twice_past_the_warning(config: Config, store: Store, clock: FakeClock) -> None:
    """A deferral, then one past the delay warning, then the delivery of what it queued."""
    async def main() -> None:
        runner = build_runner(config, store)
        try:
            await runner.process_due()
            clock.now += PAST_THE_WARNING
            await runner.process_due()
            await runner.process_due()
        finally:
            await runner.close()
    asyncio.run(main())


def delay_warnings(relay: FakeMX, sender: str) -> list[bytes]:
    return [m.content for m in relay.messages if sender in m.rcpt_tos
            and email.message_from_bytes(m.content, policy=email.policy.default)["Subject"]
            .startswith("Delayed")]


def test_only_recipients_asking_for_delay_or_giving_no_notify_are_warned(
        runner_config: Config, store: Store, clock: FakeClock, busy_host: FakeMX,
        mx_hosts: dict[str, FakeMX], unique: str) -> None:
    sender = f"{unique}@relay.test"
    store.enqueue(sender, [Route("a@dsn-busy.test", notify="FAILURE"),
                           Route("b@dsn-busy.test", notify="DELAY"),
                           Route("c@dsn-busy.test")], MESSAGE, client="127.0.0.1")
    run_twice_past_the_warning(runner_config, store, clock)
    warned = {block["Final-Recipient"] for warning in delay_warnings(mx_hosts["relay"], sender)
              for block in status_blocks(warning)[1:]}
    assert warned == {"rfc822; b@dsn-busy.test", "rfc822; c@dsn-busy.test"}


def test_a_delay_warning_names_the_original_recipient_and_envelope_id(
        runner_config: Config, store: Store, clock: FakeClock, busy_host: FakeMX,
        mx_hosts: dict[str, FakeMX], unique: str) -> None:
    sender = f"{unique}@relay.test"
    store.enqueue(sender, [Route("a@dsn-busy.test", notify="DELAY",
                                 orcpt="rfc822;Ward-7@clinic.test")], MESSAGE,
                  client="127.0.0.1", dsn=EnvelopeDSN("FULL", "referral-7"))
    run_twice_past_the_warning(runner_config, store, clock)
    [warning] = delay_warnings(mx_hosts["relay"], sender)
    message_block, block = status_blocks(warning)
    assert message_block["Original-Envelope-Id"] == "referral-7"
    assert (block["Original-Recipient"], block["Action"]) == ("rfc822; Ward-7@clinic.test",
                                                             "delayed")
    assert b"Private body" not in warning  # RET=FULL is for failures only (RFC 3461 4.3)
