"""Classification sees every Subject a mail client would display, and a header section that
readers may disagree on is confidential (fail closed), never ordinary mail."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.classify.policy import UNCERTAIN, Policy, decide, load_policy, read_header_section
from gateway.inbound.server import rewrite_subject
from tests.conftest import wait_for_mail
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess
from tests.smtp_talk import RawSMTP


@pytest.fixture(scope="module")
def policy(policy_dir: Path) -> Policy:
    return load_policy(policy_dir)


def classify(policy: Policy, head: bytes) -> tuple[bool, str]:
    decision = decide(policy, read_header_section(head), "someone@plain.test")
    return decision.confidential, decision.why


def test_space_before_the_colon_still_finds_the_tag(policy: Policy) -> None:
    confidential, why = classify(policy, b"From: a@clinic.test\r\nSubject : [secure] x\r\n")
    assert confidential and "subject tag '[secure]'" in why


def test_subject_after_a_colonless_line_still_finds_the_tag(policy: Policy) -> None:
    head = b"From: a@clinic.test\r\nthis line has no colon\r\nSubject: [secure] x\r\n"
    confidential, why = classify(policy, head)
    assert confidential and "subject tag '[secure]'" in why


def test_tag_in_a_second_subject_is_found(policy: Policy) -> None:
    confidential, _ = classify(policy, b"Subject: hello\r\nSubject: [secure] x\r\n")
    assert confidential


def test_encoded_word_tag_is_found(policy: Policy) -> None:
    confidential, _ = classify(policy, b"Subject: =?utf-8?q?=5Bsecure=5D?= results\r\n")
    assert confidential


def test_colonless_line_without_a_tag_fails_closed_with_the_reason(policy: Policy) -> None:
    confidential, why = classify(policy, b"From: a@clinic.test\r\nno colon here\r\nSubject: hi\r\n")
    assert confidential
    assert why.startswith(f"{UNCERTAIN}: line 2 is not a header field")


def test_obsolete_space_before_colon_without_a_tag_fails_closed(policy: Policy) -> None:
    confidential, why = classify(policy, b"From: a@clinic.test\r\nSubject : hi\r\n")
    assert confidential and "white space before the colon in 'Subject'" in why


def test_duplicate_subjects_fail_closed(policy: Policy) -> None:
    confidential, why = classify(policy, b"Subject: one\r\nSubject: two\r\n")
    assert confidential and "2 Subject fields" in why


def test_whitespace_only_line_in_the_header_section_fails_closed(policy: Policy) -> None:
    confidential, why = classify(policy, b"From: a@clinic.test\r\n \r\nSubject: hi\r\n")
    assert confidential and "holds only white space" in why


def test_continuation_without_a_field_fails_closed(policy: Policy) -> None:
    confidential, why = classify(policy, b" folded: nothing\r\nSubject: hi\r\n")
    assert confidential and "continues no header field" in why


def test_clean_header_section_is_ordinary_mail(policy: Policy) -> None:
    head = b"From: a@clinic.test\r\nTo: b@plain.test\r\nSubject: lunch\r\n on friday\r\n"
    assert classify(policy, head) == (False, "no confidential subject tag or header")


def test_confidential_header_with_space_before_the_colon_is_found(policy: Policy) -> None:
    confidential, why = classify(policy, b"Subject: hi\r\nSensitivity : Private\r\n")
    assert confidential and why.startswith("header Sensitivity: Private")


def test_tag_is_stripped_from_an_obsolete_subject() -> None:
    head = b"From: a@clinic.test\r\nSubject : [secure] Lab results\r\nTo: b@plain.test\r\n"
    assert rewrite_subject(head, lambda s: s.replace("[secure] ", "")) == (
        b"From: a@clinic.test\r\nSubject: Lab results\r\nTo: b@plain.test\r\n")


def test_tag_is_stripped_from_every_subject_after_a_colonless_line() -> None:
    head = b"no colon\r\nSubject: [secure] one\r\nSubject: [secure] two\r\n"
    assert rewrite_subject(head, lambda s: s.replace("[secure] ", "")) == (
        b"no colon\r\nSubject: one\r\nSubject: two\r\n")


def test_obsolete_subject_over_smtp_goes_to_pickup_not_plaintext(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    """plain.test offers no STARTTLS: a confidential message must become a pickup, so the
    only mail at its MX for this recipient is the notification (without the body)."""
    rcpt = f"{unique}@plain.test"
    with RawSMTP(gateway.smtp_port) as smtp:
        smtp.command("EHLO client.clinic.test")
        smtp.command("MAIL FROM:<doctor@clinic.test>")
        smtp.command(f"RCPT TO:<{rcpt}>")
        smtp.command("DATA")
        reply = smtp.send_raw(b"From: doctor@clinic.test\r\nSubject : [secure] Lab\r\n\r\n"
                              b"the secret body\r\n.\r\n")
    assert reply.startswith("250 "), reply
    notification = wait_for_mail(mx_hosts["plain"], rcpt)
    assert b"the secret body" not in notification.content
