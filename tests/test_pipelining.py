"""Outbound PIPELINING (RFC 2920): MAIL FROM, every RCPT TO and DATA go in one write when the
server offers PIPELINING, one command at a time when it does not, with the same result per
recipient either way. Real aiosmtpd servers (FakeMX) on loopback, with and without
PIPELINING, plaintext and STARTTLS; the Deliverer hands mail to them as the internal relay
does (no DNS), which is the same transaction code every delivery uses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest

from gateway.delivery.deliverer import Deliverer, DeliverySettings, DomainResult, Outcome
from gateway.delivery.mx import MXResolver, make_resolver
from gateway.delivery.pipeline import data_payload
from tests.fakes.certs import leaf, make_ca
from tests.fakes.mx_host import FakeMX, ReceivedMessage
from tests.fakes.ports import free_port

IPS = {"pipelining": "127.0.0.71", "one-by-one": "127.0.0.72", "tls": "127.0.0.73"}
CONTENT = b"Subject: pipelined\r\n\r\nfirst line\r\n.a line that starts with a dot\r\n"


@pytest.fixture(scope="module")
def hosts() -> Iterator[dict[str, FakeMX]]:
    port = free_port(*IPS.values())
    servers = {
        "pipelining": FakeMX(IPS["pipelining"], port, name="mx.pipelining.test"),
        "one-by-one": FakeMX(IPS["one-by-one"], port, name="mx.one-by-one.test",
                             pipelining=False),
        "tls": FakeMX(IPS["tls"], port, name="mx.tls-pipelining.test",
                      tls_cert=leaf(make_ca(), "mx.tls-pipelining.test")),
    }
    for server in servers.values():
        server.start()
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture
def host(request: pytest.FixtureRequest, hosts: dict[str, FakeMX]) -> Iterator[FakeMX]:
    server = hosts[request.param]
    yield server
    server.rcpt_replies.clear()
    server.data_reply = None


def relay(mx: FakeMX, rcpts: list[str], times: int = 1,
          loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
          ) -> list[DomainResult]:
    """Hand the message to MX TIMES over one Deliverer (so its connection can be reused)."""
    async def run() -> list[DomainResult]:
        deliverer = Deliverer(MXResolver(make_resolver(["127.0.0.1:9"], timeout=1.0)),
                              DeliverySettings(port=mx.port, helo_name="gw.pipelining.test",
                                               timeout=10))
        try:
            return [await deliverer.relay(mx.ip, mx.port, "sender@clinic.test", rcpts, CONTENT)
                    for _ in range(times)]
        finally:
            await deliverer.close()

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(run())


def received_by(mx: FakeMX, rcpt: str) -> ReceivedMessage:
    (message,) = [m for m in mx.messages if rcpt in m.rcpt_tos]
    return message


@pytest.mark.parametrize("host", ["pipelining"], indirect=True)
def test_envelope_and_data_go_in_one_write_when_the_server_offers_pipelining(
        host: FakeMX, unique: str) -> None:
    rcpts = [f"{unique}-{n}@pipelining.test" for n in range(3)]
    (result,) = relay(host, rcpts)
    assert result.outcome is Outcome.DELIVERED and result.accepted == rcpts
    message = received_by(host, rcpts[0])
    assert message.pipelined and message.rcpt_tos == rcpts


@pytest.mark.parametrize("host", ["one-by-one"], indirect=True)
def test_commands_go_one_at_a_time_when_the_server_does_not_offer_pipelining(
        host: FakeMX, unique: str) -> None:
    rcpts = [f"{unique}-{n}@one-by-one.test" for n in range(3)]
    (result,) = relay(host, rcpts)
    assert result.outcome is Outcome.DELIVERED and result.accepted == rcpts
    assert not received_by(host, rcpts[0]).pipelined


@pytest.mark.parametrize("host", ["tls"], indirect=True)
def test_pipelining_works_inside_starttls(host: FakeMX, unique: str) -> None:
    rcpt = f"{unique}@tls-pipelining.test"
    (result,) = relay(host, [rcpt])
    assert result.outcome is Outcome.DELIVERED
    message = received_by(host, rcpt)
    assert message.tls and message.pipelined


@pytest.mark.parametrize("host", ["pipelining", "one-by-one"], indirect=True)
def test_each_recipient_keeps_its_own_reply(host: FakeMX, unique: str) -> None:
    ok, unknown, busy, also_ok = (f"{unique}-{n}@x.test" for n in ("ok", "unknown", "busy", "ok2"))
    host.rcpt_replies.update({unknown: "550 5.1.1 no such user", busy: "451 4.2.1 mailbox busy"})
    (result,) = relay(host, [ok, unknown, busy, also_ok])
    assert result.outcome is Outcome.DELIVERED
    assert result.accepted == [ok, also_ok]
    assert result.refused == {unknown: "550 5.1.1 no such user"}
    assert result.deferred == {busy: "451 4.2.1 mailbox busy"}
    assert received_by(host, ok).rcpt_tos == [ok, also_ok]


@pytest.mark.parametrize("host", ["pipelining", "one-by-one"], indirect=True)
def test_every_recipient_refused_sends_no_message_and_keeps_the_connection(
        host: FakeMX, unique: str) -> None:
    refused, later = f"{unique}-refused@x.test", f"{unique}-later@x.test"
    host.rcpt_replies[refused] = "550 5.1.1 no such user"
    results = _refuse_then_deliver(host, refused, later)
    assert results[0].outcome is Outcome.PERMANENT
    assert results[0].reply.endswith("refused every recipient: 550 5.1.1 no such user")
    assert results[1].outcome is Outcome.DELIVERED and results[1].accepted == [later]
    assert [m.rcpt_tos for m in host.messages if later in m.rcpt_tos] == [[later]]


def _refuse_then_deliver(mx: FakeMX, refused: str, later: str) -> list[DomainResult]:
    async def run() -> list[DomainResult]:
        deliverer = Deliverer(MXResolver(make_resolver(["127.0.0.1:9"], timeout=1.0)),
                              DeliverySettings(port=mx.port, timeout=10))
        try:
            results = [await deliverer.relay(mx.ip, mx.port, "s@clinic.test", [refused], CONTENT)]
            idle = deliverer.pool.idle_count()
            results.append(await deliverer.relay(mx.ip, mx.port, "s@clinic.test", [later],
                                                 CONTENT))
            assert idle == 1, "the refused transaction should leave its connection reusable"
            return results
        finally:
            await deliverer.close()

    return asyncio.run(run())


@pytest.mark.parametrize("host", ["pipelining", "one-by-one"], indirect=True)
def test_refused_data_bounces_every_recipient(host: FakeMX, unique: str) -> None:
    host.data_reply = "554 5.6.0 content rejected"
    rcpts = [f"{unique}-a@x.test", f"{unique}-b@x.test"]
    (result,) = relay(host, rcpts)
    assert result.outcome is Outcome.PERMANENT
    assert result.refused == dict.fromkeys(rcpts, "554 5.6.0 content rejected")


@pytest.mark.parametrize("host", ["pipelining"], indirect=True)
def test_a_reused_connection_pipelines_the_next_message_too(host: FakeMX, unique: str) -> None:
    rcpt = f"{unique}@pipelining.test"
    results = relay(host, [rcpt], times=3)
    assert [r.outcome for r in results] == [Outcome.DELIVERED] * 3
    mine = [m for m in host.messages if rcpt in m.rcpt_tos]
    assert len({m.peer_port for m in mine}) == 1 and all(m.pipelined for m in mine)
    assert all(m.content.endswith(b".a line that starts with a dot\r\n") for m in mine)


@pytest.mark.parametrize("host", ["tls", "pipelining"], indirect=True)
def test_pipelining_works_on_uvloop(host: FakeMX, unique: str) -> None:
    import uvloop  # a dependency: the runners use it

    rcpts = [f"{unique}-{n}@uvloop.test" for n in range(2)]
    results = relay(host, rcpts, times=2, loop_factory=uvloop.new_event_loop)
    assert [r.accepted for r in results] == [rcpts, rcpts]
    assert all(m.pipelined for m in host.messages if rcpts[0] in m.rcpt_tos)


@pytest.mark.parametrize(("content", "wire"), [
    (b"a\r\nb\r\n", b"a\r\nb\r\n.\r\n"),
    (b"a\nb", b"a\r\nb\r\n.\r\n"),                      # bare LF, no final line ending
    (b"a\rb\r\n", b"a\r\nb\r\n.\r\n"),                  # bare CR
    (b".a\r\nb\r\n..c\r\n", b"..a\r\nb\r\n...c\r\n.\r\n"),  # dot-stuffing (RFC 5321 4.5.2)
    (b"a\n.\nb\n", b"a\r\n..\r\nb\r\n.\r\n"),
    (b"", b"\r\n.\r\n"),
])
def test_message_payload_has_crlf_line_endings_and_stuffed_dots(content: bytes,
                                                                  wire: bytes) -> None:
    assert data_payload(content) == wire


@pytest.mark.parametrize("pipelining", [True, False])
def test_a_pooled_connection_the_server_dropped_is_replaced_without_losing_the_message(
        pipelining: bool, unique: str) -> None:
    ip = "127.0.0.74"
    port = free_port(ip)
    first, second = f"{unique}-1@x.test", f"{unique}-2@x.test"

    async def run(mx: FakeMX) -> list[DomainResult]:
        deliverer = Deliverer(MXResolver(make_resolver(["127.0.0.1:9"], timeout=1.0)),
                              DeliverySettings(port=port, timeout=10))
        try:
            results = [await deliverer.relay(ip, port, "s@clinic.test", [first], CONTENT)]
            assert deliverer.pool.idle_count() == 1
            mx.stop()   # drops every connection, the pooled one too
            mx.start()
            results.append(await deliverer.relay(ip, port, "s@clinic.test", [second], CONTENT))
            return results
        finally:
            await deliverer.close()

    with FakeMX(ip, port, name="mx.restarting.test", pipelining=pipelining) as mx:
        results = asyncio.run(run(mx))
        assert [r.outcome for r in results] == [Outcome.DELIVERED, Outcome.DELIVERED]
        messages = mx.messages
    assert [m.rcpt_tos for m in messages] == [[first], [second]]
    assert messages[0].peer_port != messages[1].peer_port  # on a new connection


@pytest.mark.parametrize("host", ["pipelining"], indirect=True)
def test_a_pooled_connection_closed_at_the_next_mail_is_replaced_at_once(
        host: FakeMX, unique: str) -> None:
    """No NOOP checks a pooled connection to a PIPELINING server; when the server turns out
    to have closed it, the message goes on a fresh connection in the same attempt."""
    first, second = f"{unique}-1@x.test", f"{unique}-2@x.test"

    async def run() -> list[DomainResult]:
        deliverer = Deliverer(MXResolver(make_resolver(["127.0.0.1:9"], timeout=1.0)),
                              DeliverySettings(port=host.port, timeout=10))
        try:
            results = [await deliverer.relay(host.ip, host.port, "s@x.test", [first], CONTENT)]
            host.drop_next_mail = True
            results.append(await deliverer.relay(host.ip, host.port, "s@x.test", [second],
                                                 CONTENT))
            return results
        finally:
            await deliverer.close()

    results = asyncio.run(run())
    assert [r.outcome for r in results] == [Outcome.DELIVERED, Outcome.DELIVERED]
    assert not host.drop_next_mail
    one, two = received_by(host, first), received_by(host, second)
    assert one.peer_port != two.peer_port


@pytest.mark.parametrize("host", ["tls"], indirect=True)
def test_a_new_connection_resumes_the_tls_session_of_the_last_one(
        host: FakeMX, unique: str) -> None:
    first, second = f"{unique}-1@x.test", f"{unique}-2@x.test"

    async def run() -> None:
        deliverer = Deliverer(MXResolver(make_resolver(["127.0.0.1:9"], timeout=1.0)),
                              DeliverySettings(port=host.port, timeout=10))
        try:
            await deliverer.relay(host.ip, host.port, "s@x.test", [first], CONTENT)
            await deliverer.pool.close_all()  # the next message needs a new connection
            await deliverer.relay(host.ip, host.port, "s@x.test", [second], CONTENT)
        finally:
            await deliverer.close()

    asyncio.run(run())
    one, two = received_by(host, first), received_by(host, second)
    assert one.tls and two.tls and one.peer_port != two.peer_port
    assert (one.tls_resumed, two.tls_resumed) == (False, True)
