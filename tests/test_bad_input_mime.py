"""The bad-input catalogue for message content: malformed MIME is accepted or refused with a
clean code, never a crash, and accepted mail is still relayed."""

from __future__ import annotations

import pytest

from gateway.inbound import codes
from tests.conftest import MAX_MESSAGE_SIZE, bad_input_case, wait_for_mail
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess
from tests.smtp_talk import RawSMTP


def submit(gateway: GatewayProcess, rcpt: str, content: bytes) -> str:
    with RawSMTP(gateway.smtp_port) as smtp:
        smtp.command("EHLO client.clinic.test")
        smtp.command("MAIL FROM:<doctor@clinic.test>")
        assert smtp.command(f"RCPT TO:<{rcpt}>").startswith("250")
        assert smtp.command("DATA").startswith("354")
        return smtp.send_raw(content + b".\r\n")


def head(subject: str = "hi", extra: bytes = b"") -> bytes:
    return (b"From: doctor@clinic.test\r\nTo: x@plain.test\r\nSubject: " + subject.encode()
            + b"\r\nMIME-Version: 1.0\r\n" + extra)


def broken_boundaries() -> bytes:
    return head(extra=b'Content-Type: multipart/mixed; boundary="never-closed"\r\n\r\n'
                      b"--never-closed\r\nContent-Type: text/plain\r\n\r\npart one\r\n"
                      b"--wrong-boundary--\r\n")


def many_headers(count: int = 10_000) -> bytes:
    filler = b"".join(b"X-Filler-%d: value\r\n" % n for n in range(count))
    return head(extra=filler) + b"\r\nbody\r\n"


def huge_header() -> bytes:
    """One 500 kB header field, folded into lines within the 998-octet limit."""
    folded = b"\r\n ".join([b"v" * 900] * 550)
    return head(extra=b"X-Huge: " + folded + b"\r\n") + b"\r\nbody\r\n"


def deep_nesting(depth: int = 2000) -> bytes:
    parts = [b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (n, n)
             for n in range(depth)]
    closing = [b"\r\n--b%d--\r\n" % n for n in reversed(range(depth))]
    return head(extra=b"".join(parts)) + b"Content-Type: text/plain\r\n\r\ninnermost\r\n" + \
        b"".join(closing)


CASES = {"broken-boundaries": broken_boundaries, "10000-headers": many_headers,
         "huge-header": huge_header, "deep-nesting": deep_nesting}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_mime_is_accepted_and_relayed(gateway: GatewayProcess,
                                                mx_hosts: dict[str, FakeMX], unique: str,
                                                case: str) -> None:
    rcpt = f"{unique}@plain.test"
    content = CASES[case]()
    assert len(content) < MAX_MESSAGE_SIZE
    with bad_input_case(gateway):
        assert submit(gateway, rcpt, content).startswith("250 2.0.0")
        assert wait_for_mail(mx_hosts["plain"], rcpt).content.endswith(content)


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_confidential_mime_goes_to_pickup(gateway: GatewayProcess,
                                                    mx_hosts: dict[str, FakeMX], unique: str,
                                                    case: str) -> None:
    """Confidential, to a host without STARTTLS: stored for pickup, only a notification
    arrives (the content is parsed for the portal, not crashed on)."""
    rcpt = f"{unique}@plain.test"
    content = CASES[case]().replace(b"Subject: hi", b"Subject: [secure] hi", 1)
    with bad_input_case(gateway):
        assert submit(gateway, rcpt, content).startswith("250 2.0.0")
        assert b"innermost" not in wait_for_mail(mx_hosts["plain"], rcpt).content


def test_header_section_without_any_field_is_refused(gateway: GatewayProcess) -> None:
    with bad_input_case(gateway):
        assert submit(gateway, "x@plain.test", b"no header here\r\n\r\nbody\r\n") == \
            codes.NO_HEADERS
