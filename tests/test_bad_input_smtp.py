"""The bad-input catalogue on the wire: each case gets its exact reply, and afterwards the
gateway still serves a new client and has logged no traceback (bad_input_case)."""

from __future__ import annotations

import ssl

import pytest
import trustme

from gateway.inbound import codes
from tests.conftest import MAX_MESSAGE_SIZE, bad_input_case, wait_for_mail
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess
from tests.smtp_talk import RawSMTP

MESSAGE = b"From: a@clinic.test\r\nTo: b@plain.test\r\nSubject: hi\r\n\r\nhello\r\n"
SMUGGLED = (b"MAIL FROM:<evil@example.net>\r\nRCPT TO:<victim@plain.test>\r\nDATA\r\n"
            b"Subject: smuggled\r\n\r\nsmuggled\r\n")


def in_data(smtp: RawSMTP, rcpt: str = "someone@plain.test") -> None:
    assert smtp.command("EHLO client.clinic.test").startswith("250")
    assert smtp.command("MAIL FROM:<doctor@clinic.test>").startswith("250 2.1.0")
    assert smtp.command(f"RCPT TO:<{rcpt}>").startswith("250 2.1.5")
    assert smtp.command("DATA").startswith("354")


def assert_next_reply_is_noop(smtp: RawSMTP) -> None:
    """Nothing smuggled was answered: the next reply is the one to our NOOP."""
    assert smtp.command("NOOP") == "250 2.0.0 OK"


# -- smuggling: only CRLF.CRLF ends DATA; any other ending is bare CR/LF/NUL -> 550 5.6.0

@pytest.mark.parametrize("ending", [b"\n.\n", b"\r.\r", b"\r\n.\r", b"\n.\r\n", b".\r\r\n",
                                    b"\r\n\x00.\r\n", b"\r\n.\x00\r\n"],
                         ids=["LF.LF", "CR.CR", "CRLF.CR", "LF.CRLF", ".CRCRLF", "NUL.", ".NUL"])
def test_smuggling_ending_does_not_end_data_and_is_refused(gateway: GatewayProcess,
                                                           ending: bytes) -> None:
    with bad_input_case(gateway), RawSMTP(gateway.smtp_port) as smtp:
        in_data(smtp)
        reply = smtp.send_raw(MESSAGE + b"line" + ending + SMUGGLED + b".\r\n")
        assert reply == codes.BARE_LINE_ENDING
        assert_next_reply_is_noop(smtp)


@pytest.mark.parametrize("bad", [b"bare\rcr\r\n", b"bare\nlf\r\n", b"nul\x00byte\r\n"],
                         ids=["CR", "LF", "NUL"])
def test_bare_cr_lf_or_nul_in_content_is_refused(gateway: GatewayProcess, bad: bytes) -> None:
    with bad_input_case(gateway), RawSMTP(gateway.smtp_port) as smtp:
        in_data(smtp)
        assert smtp.send_raw(MESSAGE + bad + b".\r\n") == codes.BARE_LINE_ENDING


def test_bare_cr_inside_a_command_is_not_a_line_end(gateway: GatewayProcess) -> None:
    with bad_input_case(gateway), RawSMTP(gateway.smtp_port) as smtp:
        smtp.command("EHLO client.clinic.test")
        assert smtp.command("NOOP\rMAIL FROM:<evil@example.net>").startswith("500 5.5.2")
        assert smtp.command("RCPT TO:<x@plain.test>").startswith("503 5.5.1")  # no MAIL happened


def test_nul_in_a_command_is_refused(gateway: GatewayProcess) -> None:
    with bad_input_case(gateway), RawSMTP(gateway.smtp_port) as smtp:
        smtp.command("EHLO client.clinic.test")
        assert smtp.command(b"MAIL FROM:<doc\x00tor@clinic.test>") == codes.BAD_SENDER_SYNTAX


# -- STARTTLS: commands pipelined after STARTTLS in the same packet are discarded

def test_commands_injected_after_starttls_are_discarded(starttls_gateway: GatewayProcess,
                                                        ca: trustme.CA) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with bad_input_case(starttls_gateway), RawSMTP(starttls_gateway.smtp_port) as smtp:
        smtp.command("EHLO client.clinic.test")
        smtp.sock.sendall(b"STARTTLS\r\nNOOP\r\nMAIL FROM:<evil@example.net>\r\n")
        assert smtp.reply().startswith("220")
        smtp.sock = context.wrap_socket(smtp.sock, server_hostname="127.0.0.1")
        assert smtp.command("EHLO client.clinic.test").startswith("250-gateway.sealgate.test")
        assert smtp.command("MAIL FROM:<doctor@clinic.test>") == codes.OK_SENDER


# -- overlong lines

def test_overlong_command_line_is_refused(gateway: GatewayProcess) -> None:
    with bad_input_case(gateway), RawSMTP(gateway.smtp_port) as smtp:
        smtp.command("EHLO client.clinic.test")
        assert smtp.command("NOOP " + "x" * 5000).startswith("500 5.5.2 Command line too long")
        assert_next_reply_is_noop(smtp)


def test_command_line_longer_than_the_read_buffer_is_refused(gateway: GatewayProcess) -> None:
    with bad_input_case(gateway), RawSMTP(gateway.smtp_port) as smtp:
        smtp.command("EHLO client.clinic.test")
        assert smtp.command("NOOP " + "x" * 200_000).startswith("500 5.5.2 Command line too long")
        assert_next_reply_is_noop(smtp)


def test_overlong_mail_command_is_refused(gateway: GatewayProcess) -> None:
    with bad_input_case(gateway), RawSMTP(gateway.smtp_port) as smtp:
        smtp.command("EHLO client.clinic.test")
        reply = smtp.command(f"MAIL FROM:<{'a' * 600}@clinic.test>")
        assert reply.startswith("500 5.5.2 Command line too long")


def test_text_line_of_999_octets_is_refused(gateway: GatewayProcess) -> None:
    with bad_input_case(gateway), RawSMTP(gateway.smtp_port) as smtp:
        in_data(smtp)
        assert smtp.send_raw(MESSAGE + b"x" * 999 + b"\r\n.\r\n") == codes.LINE_TOO_LONG
        assert_next_reply_is_noop(smtp)


def test_text_line_of_998_octets_is_accepted(gateway: GatewayProcess) -> None:
    with bad_input_case(gateway), RawSMTP(gateway.smtp_port) as smtp:
        in_data(smtp)
        assert smtp.send_raw(MESSAGE + b"x" * 998 + b"\r\n.\r\n").startswith("250 2.0.0")


def test_dot_stuffed_line_of_998_octets_is_accepted(gateway: GatewayProcess) -> None:
    """On the wire the line has 999 octets; the leading dot is transparency (RFC 5321 4.5.2)."""
    with bad_input_case(gateway), RawSMTP(gateway.smtp_port) as smtp:
        in_data(smtp)
        assert smtp.send_raw(MESSAGE + b".." + b"x" * 997 + b"\r\n.\r\n").startswith("250 2.0.0")


def test_text_line_of_100_kilobytes_is_refused(gateway: GatewayProcess) -> None:
    with bad_input_case(gateway), RawSMTP(gateway.smtp_port) as smtp:
        in_data(smtp)
        assert smtp.send_raw(MESSAGE + b"x" * 100_000 + b"\r\n.\r\n") == codes.LINE_TOO_LONG


# -- recipient and size limits

def test_recipients_over_the_limit_get_452_4_5_3(gateway: GatewayProcess) -> None:
    limit = 1000  # smtp.max_recipients default
    with bad_input_case(gateway), RawSMTP(gateway.smtp_port) as smtp:
        smtp.command("EHLO client.clinic.test")
        smtp.command("MAIL FROM:<doctor@clinic.test>")
        smtp.sock.sendall(b"".join(b"RCPT TO:<r%d@plain.test>\r\n" % n for n in range(limit + 1)))
        replies = [smtp.reply() for _ in range(limit + 1)]
        assert all(r == codes.OK_RECIPIENT for r in replies[:limit])
        assert replies[limit] == codes.TOO_MANY_RECIPIENTS


def test_declared_size_over_the_limit_gets_552_5_3_4(gateway: GatewayProcess) -> None:
    with bad_input_case(gateway), RawSMTP(gateway.smtp_port) as smtp:
        smtp.command("EHLO client.clinic.test")
        reply = smtp.command(f"MAIL FROM:<doctor@clinic.test> SIZE={MAX_MESSAGE_SIZE + 1}")
        assert reply.startswith("552 5.3.4")


def test_content_over_the_size_limit_gets_552_5_3_4(gateway: GatewayProcess) -> None:
    with bad_input_case(gateway), RawSMTP(gateway.smtp_port) as smtp:
        in_data(smtp)
        line = b"x" * 998 + b"\r\n"
        reply = smtp.send_raw(MESSAGE + line * (MAX_MESSAGE_SIZE // len(line) + 10) + b".\r\n")
        assert reply.startswith("552 5.3.4")


# -- relay tricks: from a foreign network nothing gets past MAIL

@pytest.mark.parametrize("address", ["a%b@plain.test", "@relay.test:a@plain.test",
                                     '"a b"@plain.test', "a@[192.0.2.1]", "a@b@plain.test"],
                         ids=["percent", "source-route", "quoted", "literal", "two-ats"])
def test_outsider_gets_550_5_7_1_whatever_the_sender(gateway: GatewayProcess, address: str) -> None:
    with bad_input_case(gateway), RawSMTP(gateway.smtp_port, source="127.0.0.9") as smtp:
        smtp.command("EHLO outsider.example")
        assert smtp.command(f"MAIL FROM:<{address}>") == codes.RELAY_DENIED


@pytest.mark.parametrize("address", ["a%b@plain.test", "@relay.test:a@plain.test",
                                     '"a b"@plain.test', "a@[192.0.2.1]", "a@b@plain.test"],
                         ids=["percent", "source-route", "quoted", "literal", "two-ats"])
def test_outsider_recipient_trick_is_never_considered(gateway: GatewayProcess,
                                                       address: str) -> None:
    with bad_input_case(gateway), RawSMTP(gateway.smtp_port, source="127.0.0.9") as smtp:
        smtp.command("EHLO outsider.example")
        assert smtp.command("MAIL FROM:<spammer@example.net>") == codes.RELAY_DENIED
        assert smtp.command(f"RCPT TO:<{address}>").startswith("503 5.5.1")


# -- address forms from an allowed client (RFC 5321 4.1.2)

@pytest.mark.parametrize("address, reply", [
    ("a%b@plain.test", codes.ROUTING_LOCAL_PART),
    ("a!b@plain.test", codes.ROUTING_LOCAL_PART),
    ('"a%b"@plain.test', codes.ROUTING_LOCAL_PART),
    ("a@[192.0.2.1]", codes.ADDRESS_LITERAL),
    ("a@[IPv6:2001:db8::1]", codes.ADDRESS_LITERAL),
    ("a@b@plain.test", codes.BAD_RECIPIENT_SYNTAX),
    ("a b@plain.test", codes.BAD_RECIPIENT_SYNTAX),
    ("a(comment)@plain.test", codes.BAD_RECIPIENT_SYNTAX),
    ('"a"b"@plain.test', codes.BAD_RECIPIENT_SYNTAX),
    ("a..b@plain.test", codes.BAD_RECIPIENT_SYNTAX),
    (".a@plain.test", codes.BAD_RECIPIENT_SYNTAX),
    ("a@plain..test", codes.BAD_RECIPIENT_SYNTAX),
    ("a@-plain.test", codes.BAD_RECIPIENT_SYNTAX),
    ("a" * 250 + "@plain.test", codes.BAD_RECIPIENT_SYNTAX),
], ids=["percent", "bang", "quoted-percent", "literal", "ipv6-literal", "two-ats",
        "unquoted-space", "comment", "bad-quote", "double-dot", "leading-dot", "empty-label",
        "hyphen-label", "too-long"])
def test_recipient_address_form_gets_its_reply(gateway: GatewayProcess, address: str,
                                               reply: str) -> None:
    with bad_input_case(gateway), RawSMTP(gateway.smtp_port) as smtp:
        smtp.command("EHLO client.clinic.test")
        smtp.command("MAIL FROM:<doctor@clinic.test>")
        assert smtp.command(f"RCPT TO:<{address}>") == reply
        assert smtp.command("RCPT TO:<fine@plain.test>") == codes.OK_RECIPIENT


def test_sender_with_two_ats_is_refused_as_sender_syntax(gateway: GatewayProcess) -> None:
    with bad_input_case(gateway), RawSMTP(gateway.smtp_port) as smtp:
        smtp.command("EHLO client.clinic.test")
        assert smtp.command("MAIL FROM:<a@b@clinic.test>") == codes.BAD_SENDER_SYNTAX


def test_quoted_local_part_is_accepted_and_delivered_as_written(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    rcpt = f'"{unique} smith"@plain.test'
    with bad_input_case(gateway), RawSMTP(gateway.smtp_port) as smtp:
        in_data(smtp, rcpt)
        assert smtp.send_raw(MESSAGE + b".\r\n").startswith("250 2.0.0")
    assert wait_for_mail(mx_hosts["plain"], rcpt).rcpt_tos == [rcpt]


def test_source_route_is_ignored_and_mail_goes_to_the_final_mailbox(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    """RFC 5321 3.6.1 and appendix C: a server SHOULD ignore the route; the final mailbox
    passes every check on its own."""
    rcpt = f"{unique}@plain.test"
    with bad_input_case(gateway), RawSMTP(gateway.smtp_port) as smtp:
        in_data(smtp, f"@relay.test,@tls.test:{rcpt}")
        assert smtp.send_raw(MESSAGE + b".\r\n").startswith("250 2.0.0")
    assert wait_for_mail(mx_hosts["plain"], rcpt).rcpt_tos == [rcpt]
    assert not [m for m in mx_hosts["relay"].messages if rcpt in m.rcpt_tos]
