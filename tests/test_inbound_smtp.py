"""Inbound SMTP: relay control, limits, enhanced status codes, smuggling defences."""

from __future__ import annotations

import re
import smtplib
import time

from tests.conftest import MAX_MESSAGE_SIZE, wait_for_mail
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess
from tests.smtp_talk import RawSMTP

MESSAGE = b"From: a@clinic.test\r\nTo: b@plain.test\r\nSubject: hi\r\n\r\nhello\r\n"


def start_transaction(smtp: RawSMTP, rcpt: str = "someone@plain.test") -> None:
    assert smtp.command("EHLO client.clinic.test").startswith("250")
    assert smtp.command("MAIL FROM:<doctor@clinic.test>").startswith("250 2.1.0")
    assert smtp.command(f"RCPT TO:<{rcpt}>").startswith("250 2.1.5")


def test_banner_names_the_gateway(gateway: GatewayProcess) -> None:
    with RawSMTP(gateway.smtp_port) as smtp:
        assert smtp.greeting.startswith("220 gateway.sealgate.test")


def test_ehlo_advertises_the_configured_size_limit(gateway: GatewayProcess) -> None:
    with RawSMTP(gateway.smtp_port) as smtp:
        assert f"250-SIZE {MAX_MESSAGE_SIZE}" in smtp.command("EHLO client.clinic.test")


def test_clients_outside_allowed_networks_may_not_relay(gateway: GatewayProcess) -> None:
    with RawSMTP(gateway.smtp_port, source="127.0.0.9") as smtp:
        smtp.command("EHLO outsider.example")
        assert smtp.command("MAIL FROM:<spammer@example.net>").startswith("550 5.7.1")


def test_accepted_message_reply_carries_a_queue_id(gateway: GatewayProcess) -> None:
    with RawSMTP(gateway.smtp_port) as smtp:
        start_transaction(smtp)
        assert smtp.command("DATA").startswith("354")
        reply = smtp.send_raw(MESSAGE + b".\r\n")
    assert re.match(r"^250 2\.0\.0 Ok: queued as [0-9A-F]{21}$", reply), reply


def test_message_over_the_size_limit_is_refused_with_5_3_4(gateway: GatewayProcess) -> None:
    with RawSMTP(gateway.smtp_port) as smtp:
        start_transaction(smtp)
        smtp.command("DATA")
        line = b"x" * 998 + b"\r\n"
        body = line * (MAX_MESSAGE_SIZE // len(line) + 10)
        reply = smtp.send_raw(MESSAGE + body + b".\r\n")
    assert reply.startswith("552 5.3.4"), reply


def test_declared_size_over_the_limit_is_refused_at_mail_from(gateway: GatewayProcess) -> None:
    with RawSMTP(gateway.smtp_port) as smtp:
        smtp.command("EHLO client.clinic.test")
        reply = smtp.command(f"MAIL FROM:<doctor@clinic.test> SIZE={MAX_MESSAGE_SIZE + 1}")
    assert reply.startswith("552 5.3.4"), reply


def test_bare_lf_in_content_is_refused(gateway: GatewayProcess) -> None:
    with RawSMTP(gateway.smtp_port) as smtp:
        start_transaction(smtp)
        smtp.command("DATA")
        smuggled = b"hello\n.\nMAIL FROM:<evil@example.net>\r\n"
        reply = smtp.send_raw(MESSAGE + smuggled + b".\r\n")
    assert reply.startswith("550 5.6.0"), reply


def test_bare_cr_and_nul_in_content_are_refused(gateway: GatewayProcess) -> None:
    for bad in (b"hello\r.\rthere\r\n", b"hel\x00lo\r\n"):
        with RawSMTP(gateway.smtp_port) as smtp:
            start_transaction(smtp)
            smtp.command("DATA")
            assert smtp.send_raw(MESSAGE + bad + b".\r\n").startswith("550 5.6.0")


def test_lf_dot_lf_does_not_end_data(gateway: GatewayProcess) -> None:
    """Only CRLF.CRLF ends DATA, so a bare-LF dot cannot split one message into two."""
    with RawSMTP(gateway.smtp_port) as smtp:
        start_transaction(smtp)
        smtp.command("DATA")
        smtp.sock.sendall(MESSAGE + b"\n.\n")
        reply = smtp.send_raw(b"more\r\n.\r\n")
    assert reply.startswith("550 5.6.0"), reply


def test_syntax_errors_carry_enhanced_status_codes(gateway: GatewayProcess) -> None:
    with RawSMTP(gateway.smtp_port) as smtp:
        assert smtp.command("MAIL FROM:<a@b.test>").startswith("503 5.5.1")
        smtp.command("EHLO client.clinic.test")
        assert smtp.command("FROBNICATE").startswith("500 5.5.2")
        assert smtp.command("MAIL TO:<doctor@clinic.test>").startswith("501 5.5.4")
        assert smtp.command("MAIL FROM:doctor").startswith("553 5.1.7")
        assert smtp.command("RCPT TO:<x@plain.test>").startswith("503 5.5.1")
        smtp.command("MAIL FROM:<doctor@clinic.test>")
        assert smtp.command("RCPT TO:<not an address>").startswith("5")
        assert re.match(r"^5\d\d 5\.\d\.\d", smtp.command("RCPT TO:<no-domain>"))
        assert smtp.command("DATA").startswith("503 5.5.1")


def test_message_without_headers_is_refused(gateway: GatewayProcess) -> None:
    with RawSMTP(gateway.smtp_port) as smtp:
        start_transaction(smtp)
        smtp.command("DATA")
        assert smtp.send_raw(b"\r\njust a body\r\n.\r\n").startswith("550 5.6.0")


def test_null_sender_is_accepted_for_bounces(gateway: GatewayProcess) -> None:
    with RawSMTP(gateway.smtp_port) as smtp:
        smtp.command("EHLO client.clinic.test")
        assert smtp.command("MAIL FROM:<>").startswith("250 2.1.0")


def test_message_larger_than_the_memory_buffer_is_relayed_octet_for_octet(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    """Streamed to the spool in pieces (over 1 MiB: spilled to the file as it arrives), with
    dot-stuffed and 998-octet lines on every piece boundary there may be."""
    rcpt = f"{unique}@plain.test"
    body = b"".join(b".%d leading dot\r\n" % n + b"z" * 998 + b"\r\n" for n in range(1800))
    head = f"From: a@clinic.test\r\nTo: {rcpt}\r\nSubject: big\r\n\r\n".encode()
    assert MAX_MESSAGE_SIZE > len(head + body) > 1 << 20
    with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=60) as client:
        client.sendmail("a@clinic.test", [rcpt], head + body)
    received = wait_for_mail(mx_hosts["plain"], rcpt).content
    assert received.startswith(b"Received: ") and received.endswith(head + body)


def test_client_gone_in_the_middle_of_a_large_message_leaves_no_spool_file(
        gateway: GatewayProcess) -> None:
    spool = gateway.storage_dir / "spool"
    with RawSMTP(gateway.smtp_port) as smtp:
        start_transaction(smtp)
        assert smtp.command("DATA").startswith("354")
        smtp.sock.sendall(MESSAGE + (b"z" * 998 + b"\r\n") * 1500)  # spilled to a .tmp file
        deadline = time.monotonic() + 10
        while not list(spool.glob("*.tmp")) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert list(spool.glob("*.tmp")), "the message was not being spooled"
    deadline = time.monotonic() + 10
    while list(spool.glob("*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not list(spool.glob("*.tmp"))
