"""The queue runner in-process, with an injectable clock: time-dependent behaviour without
sleeps."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import Iterator

import pytest

from gateway.config import Config
from gateway.serve import build_runner
from gateway.storage.protocols import Attempt
from gateway.storage.store import Route, Store
from tests.conftest import wait_for_mail
from tests.fakes.dns_server import FakeDNS
from tests.fakes.mx_host import FakeMX
from tests.journey import queued_status
from tests.portal_fixtures import FakeClock, clock, store

__all__ = ["clock", "store"]  # shared fixtures, used here by name

MESSAGE = b"From: doctor@relay.test\r\nTo: x@slow.test\r\nSubject: Referral\r\n\r\nPrivate body\r\n"
DAY = 86400.0


@pytest.fixture(scope="module")
def slow_host(fake_dns: FakeDNS, mx_port: int) -> Iterator[FakeMX]:
    fake_dns.add("slow.test", "MX", "10 mx.slow.test.")
    fake_dns.add("mx.slow.test", "A", "127.0.0.11")
    with FakeMX("127.0.0.11", mx_port, name="mx.slow.test", rcpt_reply="451 4.3.0 busy") as host:
        yield host


def run(config: Config, store: Store, rounds: list[list[Route]] | None = None) -> None:
    """Process what is due; with ROUNDS, enqueue and process each round on one runner."""
    async def main() -> None:
        runner = build_runner(config, store)
        try:
            for routes in rounds or [[]]:
                if routes:
                    store.enqueue("doctor@relay.test", routes, MESSAGE, client="127.0.0.1")
                await runner.process_due()
        finally:
            await runner.close()
    asyncio.run(main())


def state_of(store: Store, rcpt: str) -> str:
    """RCPT's state in the test's own message (not in notifications and DSNs Sealgate wrote)."""
    found = queued_status(store, rcpt)
    assert found is not None, f"nothing queued to {rcpt}"
    return found.state


def attempts_to(store: Store, rcpt: str) -> list[Attempt]:
    """The delivery history of RCPT in every message to it."""
    return [a for m in store.messages_to(rcpt) for r in m.recipients if r.rcpt == rcpt
            for a in r.attempt_history]


def reports_to(relay: FakeMX, sender: str) -> list[email.message.Message]:
    """The DSNs that reached SENDER's mail server (relay.test is the relay sink)."""
    return [email.message_from_bytes(m.content, policy=email.policy.default)
            for m in relay.messages if sender in m.rcpt_tos and m.mail_from == "<>"]


def test_mail_still_deferred_at_the_end_of_its_lifetime_bounces_with_a_dsn(
        runner_config: Config, store: Store, clock: FakeClock, slow_host: FakeMX,
        mx_hosts: dict[str, FakeMX], unique: str) -> None:
    sender = f"{unique}@relay.test"
    store.enqueue(sender, [Route("x@slow.test")], MESSAGE, client="127.0.0.1")
    run(runner_config, store)
    assert state_of(store, "x@slow.test") == "deferred"
    clock.now += 5 * DAY + 1
    run(runner_config, store)
    assert state_of(store, "x@slow.test") == "bounced"
    run(runner_config, store)  # delivers the DSN
    [dsn] = [r for r in reports_to(mx_hosts["relay"], sender) if "Undelivered" in r["Subject"]]
    assert "Action: failed" in dsn.as_string() and "Status: 4.4.7" in dsn.as_string()
    assert "Private body" not in dsn.as_string()


def test_delay_warning_is_sent_once_after_delay_warning(
        runner_config: Config, store: Store, clock: FakeClock, slow_host: FakeMX,
        mx_hosts: dict[str, FakeMX], unique: str) -> None:
    sender = f"{unique}@relay.test"
    store.enqueue(sender, [Route("x@slow.test")], MESSAGE, client="127.0.0.1")
    run(runner_config, store)
    run(runner_config, store)
    assert reports_to(mx_hosts["relay"], sender) == []
    for _ in range(3):
        clock.now += 4 * 3600 + 1
        run(runner_config, store)
    run(runner_config, store)  # delivers what the last round queued
    warnings = [r for r in reports_to(mx_hosts["relay"], sender)
                if r["Subject"].startswith("Delayed")]
    assert len(warnings) == 1
    assert "Action: delayed" in warnings[0].as_string()
    assert state_of(store, "x@slow.test") == "deferred"


def test_retry_backoff_doubles_from_the_initial_delay(
        runner_config: Config, store: Store, clock: FakeClock, slow_host: FakeMX) -> None:
    runner_config.delivery.retry_initial, runner_config.delivery.retry_max = "5m", "4000s"
    store.enqueue("doctor@relay.test", [Route("x@slow.test")], MESSAGE, client="127.0.0.1")
    delays = []
    for _ in range(6):
        run(runner_config, store)
        [waiting] = store.waiting_recipients()
        next_attempt = waiting.next_attempt
        delays.append(round(next_attempt - clock.now))
        clock.now = next_attempt
    assert delays == [300, 600, 1200, 2400, 4000, 4000]


def test_domain_seen_without_starttls_goes_to_pickup_without_a_connection(
        runner_config: Config, store: Store, clock: FakeClock, mx_hosts: dict[str, FakeMX]) -> None:
    secure = [Route("first@plain.test", True, "require-tls")]
    store.enqueue("doctor@relay.test", secure, MESSAGE, client="127.0.0.1")
    run(runner_config, store)
    store.enqueue("doctor@relay.test", [Route("second@plain.test", True, "require-tls")], MESSAGE,
                  client="127.0.0.1")
    run(runner_config, store)
    assert state_of(store, "first@plain.test") == "pickup" == state_of(store, "second@plain.test")
    [attempt] = attempts_to(store, "second@plain.test")
    assert attempt.reason == "no-starttls" and "TLS cache" in attempt.reply


def test_tls_knowledge_expires_after_its_ttl(
        runner_config: Config, store: Store, clock: FakeClock, mx_hosts: dict[str, FakeMX]) -> None:
    store.enqueue("doctor@relay.test", [Route("a@plain.test", True, "require-tls")], MESSAGE)
    run(runner_config, store)
    clock.now += 3601
    store.enqueue("doctor@relay.test", [Route("b@plain.test", True, "require-tls")], MESSAGE)
    run(runner_config, store)
    [attempt] = attempts_to(store, "b@plain.test")
    assert attempt.address == "127.0.0.3"


def test_every_attempt_is_recorded_with_its_tls_parameters(
        runner_config: Config, store: Store, mx_hosts: dict[str, FakeMX]) -> None:
    store.enqueue("doctor@relay.test", [Route("rec@tls.test", True, "require-verified-tls")],
                  MESSAGE)
    run(runner_config, store)
    [attempt] = attempts_to(store, "rec@tls.test")
    assert attempt.host == "mx.tls.test" and attempt.address == "127.0.0.2"
    assert attempt.tls_version in ("TLSv1.2", "TLSv1.3") and attempt.cipher
    assert attempt.verified
    assert attempt.reply.startswith("mx.tls.test[127.0.0.2] said: 250")


def test_connection_is_reused_for_the_next_message_to_the_same_host(
        runner_config: Config, store: Store, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    first, second = f"a-{unique}@tls.test", f"b-{unique}@tls.test"
    run(runner_config, store, rounds=[[Route(first, True, "require-tls")],
                                      [Route(second, True, "require-tls")]])
    received = {r: wait_for_mail(mx_hosts["tls"], r) for r in (first, second)}
    assert received[first].tls and received[second].tls
    assert received[first].peer_port == received[second].peer_port
    [attempt] = attempts_to(store, second)
    assert attempt.tls_version == received[second].tls_version


def test_connection_secured_for_a_lower_requirement_is_not_reused(
        runner_config: Config, store: Store, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    plain_tls, verified = f"a-{unique}@tls.test", f"b-{unique}@verified.test"
    run(runner_config, store, rounds=[[Route(plain_tls, True, "require-tls")],
                                      [Route(verified, True, "require-verified-tls")]])
    first = wait_for_mail(mx_hosts["tls"], plain_tls)
    second = wait_for_mail(mx_hosts["tls"], verified)
    assert first.peer_port != second.peer_port


def test_claimed_recipients_are_delivering_until_settled_and_due_again_after_a_crash(
        store: Store) -> None:
    store.enqueue("doctor@relay.test", [Route("x@slow.test")], MESSAGE, client="127.0.0.1")
    [claimed] = store.claim_due()
    assert state_of(store, "x@slow.test") == "delivering"
    assert store.claim_due() == []
    restarted = Store(store.directory, store.clock)  # the next process, holding the store lock
    try:
        assert restarted.expire_leases(store.owner) == 1  # the previous owner is dead
        assert [i.rcpt for i in restarted.claim_due()] == [claimed.rcpt]
    finally:
        restarted.close()


def test_spool_stays_while_another_domain_of_the_message_is_being_delivered(store: Store) -> None:
    message_id = store.enqueue("doctor@relay.test", [Route("a@one.test"), Route("b@two.test")],
                               MESSAGE)
    store.claim_due()
    store.settle(message_id, {"a@one.test": "250 ok"}, "delivered")
    assert store.read_spool(message_id) == MESSAGE
    store.settle(message_id, {"b@two.test": "250 ok"}, "delivered")
    assert not store.spool_files.exists(message_id)


def test_policy_pickup_is_recorded_with_reason_policy(runner_config: Config, store: Store) -> None:
    store.enqueue("doctor@relay.test", [Route("p@patients.test", True, "pickup")], MESSAGE)
    run(runner_config, store)
    assert state_of(store, "p@patients.test") == "pickup"
    [attempt] = attempts_to(store, "p@patients.test")
    assert attempt.reason == "policy" and attempt.host == ""


def test_dsn_is_queued_only_together_with_the_bounce_it_reports(
        runner_config: Config, store: Store) -> None:
    # A real failure between queueing the DSN and recording the bounce: SQLite refuses the
    # state change (as a full disk would). Nothing may be left that sends a second DSN.
    store.db.execute("CREATE TRIGGER refuse_bounce BEFORE UPDATE OF state ON recipients"
                     " WHEN NEW.state = 'bounced' BEGIN SELECT RAISE(ABORT, 'disk is full'); END")
    message_id = store.enqueue("doctor@relay.test", [Route("x@no-such-domain.test")], MESSAGE,
                               client="127.0.0.1")

    async def main() -> None:
        runner = build_runner(runner_config, store)
        try:
            await runner.process_due()
            assert store.message_count() == 1  # no DSN without its bounce
            assert list(store.spool_dir.iterdir()) == [store.spool_files.path(message_id)]
            store.db.execute("DROP TRIGGER refuse_bounce")
            await runner.process_due()
        finally:
            await runner.close()
    asyncio.run(main())
    dsns = [m for m in store.messages_to("doctor@relay.test")
            if m.recipients[0].reason == "delivery status notification"]
    assert len(dsns) == 1 and state_of(store, "x@no-such-domain.test") == "bounced"


def test_outcome_the_store_refused_is_recorded_on_a_later_turn_without_a_second_delivery(
        runner_config: Config, store: Store, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    rcpt = f"{unique}@plain.test"
    store.db.execute("CREATE TRIGGER refuse_outcome BEFORE UPDATE OF state ON recipients"
                     " WHEN NEW.state = 'delivered' BEGIN SELECT RAISE(ABORT, 'disk is full'); END")
    store.enqueue("doctor@relay.test", [Route(rcpt)], MESSAGE, client="127.0.0.1")

    async def main() -> None:
        runner = build_runner(runner_config, store)
        try:
            await runner.process_due()
            assert state_of(store, rcpt) == "delivering"  # kept, not requeued: it was delivered
            store.db.execute("DROP TRIGGER refuse_outcome")
            await runner.process_due()
        finally:
            await runner.close()
    asyncio.run(main())
    assert state_of(store, rcpt) == "delivered"
    assert len([m for m in mx_hosts["plain"].messages if rcpt in m.rcpt_tos]) == 1


def test_a_burst_to_one_host_reuses_every_connection_of_the_burst_before(
        runner_config: Config, store: Store, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    bursts = [[f"{n}-{burst}-{unique}@plain.test" for n in range(5)] for burst in range(2)]

    async def main() -> None:
        runner = build_runner(runner_config, store)
        try:
            for burst in bursts:
                for rcpt in burst:
                    store.enqueue("doctor@relay.test", [Route(rcpt)], MESSAGE)
                await runner.process_due()
        finally:
            await runner.close()

    asyncio.run(main())
    ports = [{wait_for_mail(mx_hosts["plain"], r).peer_port for r in burst} for burst in bursts]
    assert len(ports[0]) == 5  # the first burst went out side by side
    assert ports[1] <= ports[0]
