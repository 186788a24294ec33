"""The body scan reads text as a mail client shows it: transfer encodings undone, any
charset, HTML as text, nested multiparts, forwarded messages; attachments by real type."""

from __future__ import annotations

import base64
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest

from gateway.classify.message import classify, file_chunks
from gateway.classify.policy import Decision, Policy, load_policy

CORPUS = Path(__file__).parent / "corpus"
SSN_RULE = '[[rule]]\nname = "ssn"\ndetect = ["us-ssn"]\nconfidential = true\n\n'
PDF_RULE = '[[rule]]\nname = "pdf"\nattachment_type = "application/pdf"\nconfidential = true\n'


@pytest.fixture
def policy(tmp_path: Path) -> Policy:
    (tmp_path / "p.toml").write_text(SSN_RULE + PDF_RULE)
    return load_policy(tmp_path)


def decide_bytes(policy: Policy, data: bytes, piece: int = 61) -> Decision:
    return classify(policy, [data[i:i + piece] for i in range(0, len(data), piece)],
                    ["x@partner.test"])[0]


def raw(content_type: str, body: bytes, encoding: str = "7bit") -> bytes:
    return (b"From: a@clinic.test\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: "
            + content_type.encode() + b"\r\nContent-Transfer-Encoding: " + encoding.encode()
            + b"\r\n\r\n" + body)


def test_base64_text_is_decoded(policy: Policy) -> None:
    body = base64.encodebytes(b"SSN 536-22-1234\r\n").replace(b"\n", b"\r\n")
    assert decide_bytes(policy, raw("text/plain", body, "base64"), piece=3).confidential


def test_quoted_printable_soft_breaks_inside_the_number_are_joined(policy: Policy) -> None:
    body = b"SSN 536-2=\r\n2-1234\r\n"
    assert decide_bytes(policy, raw("text/plain", body, "quoted-printable")).confidential


def test_qp_encoded_digits_are_decoded(policy: Policy) -> None:
    body = b"SSN =35=33=36-22-1234\r\n"
    assert decide_bytes(policy, raw("text/plain", body, "quoted-printable")).confidential


def test_utf16_text_in_base64_is_decoded_by_its_charset(policy: Policy) -> None:
    body = base64.encodebytes("SSN 536-22-1234".encode("utf-16")).replace(b"\n", b"\r\n")
    data = raw('text/plain; charset="utf-16"', body, "base64")
    assert decide_bytes(policy, data).confidential


def test_utf16_text_is_not_found_when_read_as_ascii(policy: Policy) -> None:
    """The charset matters: the same bytes declared as ASCII hold no readable number."""
    body = base64.encodebytes("SSN 536-22-1234".encode("utf-16")).replace(b"\n", b"\r\n")
    assert not decide_bytes(policy, raw("text/plain", body, "base64")).confidential


def test_latin1_text_is_decoded(policy: Policy) -> None:
    body = "Sécurité sociale 536-22-1234\r\n".encode("latin-1")
    assert decide_bytes(policy, raw("text/plain; charset=iso-8859-1", body, "8bit")).confidential


def test_html_entities_and_tags_inside_the_number_are_resolved(policy: Policy) -> None:
    body = b"<p>SSN&#58; <b>536</b>&#45;22&#x2d;1234</p>\r\n"
    assert decide_bytes(policy, raw("text/html", body)).confidential


def test_number_inside_an_html_comment_is_not_shown_so_not_counted(policy: Policy) -> None:
    body = b"<p>hello</p><!-- 536-22-1234 -->\r\n"
    assert not decide_bytes(policy, raw("text/html", body)).confidential


def test_text_in_a_nested_multipart_is_scanned(policy: Policy) -> None:
    inner = EmailMessage()
    inner.set_content("plain")
    inner.add_alternative("<p>SSN 536-22-1234</p>", subtype="html")
    outer = EmailMessage()
    outer["Subject"] = "nested"
    outer.set_content("see below")
    outer.make_mixed()
    outer.attach(inner)
    decision = decide_bytes(policy, outer.as_bytes(policy=SMTP))
    assert decision.confidential and decision.where == ("us-ssn x1 in part 3 (text/html)",)


def test_forwarded_message_part_is_scanned(policy: Policy) -> None:
    forwarded = EmailMessage()
    forwarded["Subject"] = "original"
    forwarded.set_content("SSN 536-22-1234")
    outer = EmailMessage()
    outer["Subject"] = "Fwd"
    outer.set_content("forwarding")
    outer.add_attachment(forwarded)
    assert decide_bytes(policy, outer.as_bytes(policy=SMTP)).confidential


def test_preamble_and_epilogue_are_not_scanned(policy: Policy) -> None:
    data = raw('multipart/mixed; boundary="b"',
               b"536-22-1234\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b--\r\n"
               b"536-22-1234\r\n")
    assert not decide_bytes(policy, data).confidential


def test_renamed_pdf_is_seen_by_its_content(policy: Policy) -> None:
    decision = classify(policy, file_chunks(CORPUS / "messages" / "10-renamed-pdf.eml"))[0]
    assert decision.confidential and decision.content_rule == "pdf"
    assert decision.where == ("attachment 'notes.txt' (part 2, application/pdf)",)


def test_text_attachment_that_is_text_is_not_taken_for_a_pdf(policy: Policy) -> None:
    mail = EmailMessage()
    mail["Subject"] = "notes"
    mail.set_content("see attached")
    mail.add_attachment("just notes about PDF-1.4", filename="notes.txt")
    assert not decide_bytes(policy, mail.as_bytes(policy=SMTP)).confidential


def test_number_in_a_text_attachment_is_found(policy: Policy) -> None:
    mail = EmailMessage()
    mail["Subject"] = "list"
    mail.set_content("see attached")
    mail.add_attachment("name,ssn\r\nRoe,536-22-1234\r\n", subtype="csv", filename="list.csv")
    decision = decide_bytes(policy, mail.as_bytes(policy=SMTP))
    assert decision.where == ("us-ssn x1 in attachment 'list.csv' (part 2)",)


def test_message_without_mime_headers_is_plain_text(policy: Policy) -> None:
    data = b"From: a@clinic.test\nSubject: s\n\nSSN 536-22-1234\n"
    assert decide_bytes(policy, data).confidential
