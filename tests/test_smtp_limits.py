"""Session limits and advertised extensions: the idle timeout counts silence (421 4.4.2),
connection caps (421 4.7.0), no AUTH, PIPELINING handled in order."""

from __future__ import annotations

import socket
import ssl
import time

import trustme

from gateway.inbound import codes
from tests.conftest import LIMITED_IDLE_TIMEOUT, LIMITED_PER_CLIENT, LIMITED_TOTAL, bad_input_case
from tests.gateway_process import GatewayProcess
from tests.smtp_talk import RawSMTP

MESSAGE = b"From: a@clinic.test\r\nTo: b@plain.test\r\nSubject: hi\r\n\r\nhello\r\n"


def extensions(ehlo_reply: str) -> set[str]:
    return {line[4:].split(" ")[0] for line in ehlo_reply.splitlines()[1:]}


def wait_until_closed(smtp: RawSMTP, timeout: float = 30.0) -> None:
    smtp.sock.settimeout(timeout)
    assert smtp.sock.recv(1024) == b""


def test_ehlo_advertises_only_what_is_implemented(gateway: GatewayProcess) -> None:
    with RawSMTP(gateway.smtp_port) as smtp:
        assert extensions(smtp.command("EHLO client.clinic.test")) == {
            "SIZE", "8BITMIME", "SMTPUTF8", "PIPELINING", "DSN", "ENHANCEDSTATUSCODES", "HELP"}


def test_auth_is_not_advertised_after_starttls(starttls_gateway: GatewayProcess,
                                               ca: trustme.CA) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with RawSMTP(starttls_gateway.smtp_port) as smtp:
        assert "STARTTLS" in extensions(smtp.command("EHLO client.clinic.test"))
        assert smtp.command("STARTTLS").startswith("220")
        smtp.sock = context.wrap_socket(smtp.sock, server_hostname="127.0.0.1")
        assert extensions(smtp.command("EHLO client.clinic.test")) == {  # RFC 8689: after TLS
            "SIZE", "8BITMIME", "SMTPUTF8", "PIPELINING", "DSN", "ENHANCEDSTATUSCODES",
            "REQUIRETLS", "HELP"}
        assert smtp.command("AUTH PLAIN AGZvbwBiYXI=") == codes.AUTH_NOT_OFFERED


def test_auth_command_is_refused_as_not_offered(gateway: GatewayProcess) -> None:
    with RawSMTP(gateway.smtp_port) as smtp:
        smtp.command("EHLO client.clinic.test")
        assert smtp.command("AUTH LOGIN") == codes.AUTH_NOT_OFFERED


def test_pipelined_batch_gets_every_reply_in_order(gateway: GatewayProcess) -> None:
    with RawSMTP(gateway.smtp_port) as smtp:
        smtp.command("EHLO client.clinic.test")
        smtp.sock.sendall(b"MAIL FROM:<doctor@clinic.test>\r\nRCPT TO:<a@plain.test>\r\n"
                          b"RCPT TO:<b@[192.0.2.1]>\r\nRCPT TO:<c@plain.test>\r\nDATA\r\n")
        replies = [smtp.reply() for _ in range(5)]
        assert [r[:9] for r in replies] == ["250 2.1.0", "250 2.1.5", "550 5.1.2", "250 2.1.5",
                                            "354 End d"]
        assert smtp.send_raw(MESSAGE + b".\r\n").startswith("250 2.0.0")


def test_pipelined_transactions_after_data_are_answered_in_order(gateway: GatewayProcess) -> None:
    with RawSMTP(gateway.smtp_port) as smtp:
        smtp.command("EHLO client.clinic.test")
        smtp.command("MAIL FROM:<doctor@clinic.test>")
        smtp.command("RCPT TO:<a@plain.test>")
        smtp.command("DATA")
        smtp.sock.sendall(MESSAGE + b".\r\nRSET\r\nNOOP\r\nQUIT\r\n")
        replies = [smtp.reply() for _ in range(4)]
    assert [r[:9] for r in replies] == ["250 2.0.0", "250 2.0.0", "250 2.0.0", "221 2.0.0"]


def test_idle_session_gets_421_4_4_2_before_close(limited_gateway: GatewayProcess) -> None:
    with RawSMTP(limited_gateway.smtp_port) as smtp:
        smtp.command("EHLO client.clinic.test")
        smtp.sock.settimeout(30)
        assert smtp.reply() == codes.IDLE_TIMEOUT
        wait_until_closed(smtp)


def test_silence_during_data_gets_421_4_4_2(limited_gateway: GatewayProcess) -> None:
    with RawSMTP(limited_gateway.smtp_port) as smtp:
        smtp.command("EHLO client.clinic.test")
        smtp.command("MAIL FROM:<doctor@clinic.test>")
        smtp.command("RCPT TO:<a@plain.test>")
        smtp.command("DATA")
        smtp.sock.sendall(MESSAGE)
        smtp.sock.settimeout(30)
        assert smtp.reply() == codes.IDLE_TIMEOUT


def test_slow_but_steady_upload_outlives_the_idle_timeout(limited_gateway: GatewayProcess) -> None:
    """One line a second for twice the idle timeout: the timeout is about silence only."""
    with bad_input_case(limited_gateway), RawSMTP(limited_gateway.smtp_port) as smtp:
        smtp.command("EHLO client.clinic.test")
        smtp.command("MAIL FROM:<doctor@clinic.test>")
        smtp.command("RCPT TO:<a@plain.test>")
        smtp.command("DATA")
        smtp.sock.sendall(MESSAGE)
        for _ in range(2 * LIMITED_IDLE_TIMEOUT):
            time.sleep(1)  # pacing the client, not waiting for the server
            smtp.sock.sendall(b"one more line\r\n")
        smtp.sock.settimeout(30)
        assert smtp.send_raw(b".\r\n").startswith("250 2.0.0")


def open_greeted(port: int, source: str) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0))
    greeting = b""
    while not greeting.endswith(b"\r\n"):
        chunk = sock.recv(1024)
        if not chunk:
            break
        greeting += chunk
    return sock, greeting


def admitted_after_close(port: int, source: str, timeout: float = 30.0) -> bytes:
    """The greeting a new connection from SOURCE gets once the server has seen a close."""
    deadline = time.monotonic() + timeout
    while True:
        sock, greeting = open_greeted(port, source)
        sock.close()
        if greeting.startswith(b"220") or time.monotonic() > deadline:
            return greeting
        time.sleep(0.05)


def test_connections_over_the_per_client_cap_get_421_4_7_0(limited_gateway: GatewayProcess) -> None:
    source = "127.0.0.30"
    held = [open_greeted(limited_gateway.smtp_port, source) for _ in range(LIMITED_PER_CLIENT)]
    try:
        assert all(greeting.startswith(b"220 ") for _, greeting in held)
        sock, greeting = open_greeted(limited_gateway.smtp_port, source)
        assert greeting.decode().rstrip() == codes.TOO_MANY_FROM_CLIENT
        assert sock.recv(1024) == b""  # and closed
        sock.close()
        other, other_greeting = open_greeted(limited_gateway.smtp_port, "127.0.0.31")
        other.close()
        assert other_greeting.startswith(b"220 ")  # another client is not affected
    finally:
        for sock, _ in held:
            sock.close()
    assert admitted_after_close(limited_gateway.smtp_port, source).startswith(b"220 ")


def test_connections_over_the_total_cap_get_421_4_7_0(limited_gateway: GatewayProcess) -> None:
    sources = [f"127.0.0.{40 + n // 2}" for n in range(LIMITED_TOTAL)]  # two per client
    held = [open_greeted(limited_gateway.smtp_port, source) for source in sources]
    try:
        assert all(greeting.startswith(b"220 ") for _, greeting in held)
        sock, greeting = open_greeted(limited_gateway.smtp_port, "127.0.0.60")
        sock.close()
        assert greeting.decode().rstrip() == codes.TOO_MANY_CONNECTIONS
    finally:
        for sock, _ in held:
            sock.close()
    assert admitted_after_close(limited_gateway.smtp_port, "127.0.0.60").startswith(b"220 ")
