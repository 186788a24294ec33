"""The body scan is bounded and streaming, fails closed on what it cannot read, and costs
nothing when no rule needs the body."""

from __future__ import annotations

import base64
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.classify import body_scan
from gateway.classify.message import classify
from gateway.classify.policy import Policy, load_policy

RULES = ('[[rule]]\nname = "ssn"\ndetect = ["us-ssn"]\nconfidential = true\n\n'
         '[[rule]]\nname = "enc"\ndetect = ["encrypted-attachment"]\nconfidential = true\n\n'
         '[[rule]]\nname = "pdf"\nattachment_type = "application/pdf"\nconfidential = true\n')


def policy_of(tmp_path: Path, text: str) -> Policy:
    (tmp_path / "p.toml").write_text(text)
    return load_policy(tmp_path)


def head(content_type: str, encoding: str = "7bit") -> bytes:
    return (b"From: a@clinic.test\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: "
            + content_type.encode() + b"\r\nContent-Transfer-Encoding: " + encoding.encode()
            + b"\r\n\r\n")


def test_unknown_charset_fails_closed_by_default(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, RULES)
    decision = classify(policy, [head("text/plain; charset=x-martian") + b"hi\r\n"])[0]
    assert decision.confidential
    assert decision.why.startswith("the content could not be scanned: part 1 (text/plain):"
                                   " unknown charset 'x-martian'")
    assert "the built-in default" in decision.why


def test_unknown_transfer_encoding_fails_closed(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, RULES)
    decision = classify(policy, [head("text/plain", "x-uuencode") + b"begin 644 x\r\n"])[0]
    assert decision.confidential and "transfer encoding 'x-uuencode'" in decision.why


def test_damaged_base64_fails_closed(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, RULES)
    decision = classify(policy, [head("text/plain", "base64") + b"QUJD=QUJD\r\n"])[0]
    assert decision.confidential and "damaged base64" in decision.why


def test_on_scan_error_ignore_lets_unreadable_mail_through(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, '[policy]\non_scan_error = "ignore"\n\n' + RULES)
    assert not classify(policy, [head("text/plain; charset=x-martian") + b"hi\r\n"])[0].confidential


def test_confidential_rule_decides_over_a_later_scan_error(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, RULES)
    data = head('multipart/mixed; boundary="b"') + (
        b"--b\r\nContent-Type: text/plain\r\n\r\nSSN 536-22-1234\r\n"
        b"--b\r\nContent-Type: text/plain; charset=x-martian\r\n\r\nhi\r\n--b--\r\n")
    decision = classify(policy, [data])[0]
    assert decision.confidential and decision.content_rule == "ssn"


def test_parts_nested_too_deep_are_a_scan_error(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, RULES)
    depth = body_scan.MAX_DEPTH + 2
    data = head('multipart/mixed; boundary="b0"') + b"".join(
        f'--b{n}\r\nContent-Type: multipart/mixed; boundary="b{n + 1}"\r\n\r\n'.encode()
        for n in range(depth))
    decision = classify(policy, [data])[0]
    assert decision.confidential and "nested more than" in decision.why


def test_text_beyond_scan_limit_is_not_scanned(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, '[policy]\nscan_limit = "4KiB"\n\n' + RULES)
    early = head("text/plain") + b"SSN 536-22-1234\r\n" + b"x" * 70 + b"\r\n"
    late = head("text/plain") + (b"x" * 70 + b"\r\n") * 80 + b"SSN 536-22-1234\r\n"
    assert classify(policy, [early])[0].confidential
    assert not classify(policy, [late])[0].confidential


def _big_attachment(total: int, first: bytes) -> Iterator[bytes]:
    """A message with a base64 attachment of TOTAL bytes whose content starts with FIRST,
    produced line by line as SMTP brings it (never whole)."""
    yield (head('multipart/mixed; boundary="b"') + b"--b\r\nContent-Type: text/plain\r\n\r\n"
           b"see the file\r\n--b\r\nContent-Type: application/octet-stream\r\n"
           b"Content-Disposition: attachment; filename=\"big.bin\"\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n")
    line = base64.b64encode(b"\0" * 57) + b"\r\n"
    block = line * 4096  # 228 KiB decoded per block
    sent = 57 * 4096
    yield base64.b64encode(first.ljust(57, b" ")) + b"\r\n"
    while sent < total:
        yield block
        sent += 57 * 4096
    yield base64.b64encode(b"trailer << /Encrypt 3 0 R >>".ljust(57)) + b"\r\n--b--\r\n"


@pytest.mark.parametrize("first", [b"%PDF-1.7", b"%XYZ"])
def test_100_mib_attachment_is_scanned_in_bounded_memory(tmp_path: Path, first: bytes) -> None:
    """Peak memory of the scan stays far below the message (100 MiB decoded), including the
    encryption check that reads the whole attachment (the /Encrypt mark is at its end)."""
    policy = policy_of(tmp_path, RULES)
    tracemalloc.start()
    try:
        decision = classify(policy, _big_attachment(100 << 20, first))[0]
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"peak {peak >> 20} MiB"
    if first.startswith(b"%PDF"):
        assert decision.content_rule in ("enc", "pdf") and decision.confidential
    else:
        assert not decision.confidential


def test_encrypted_pdf_is_found_at_the_end_of_a_large_attachment(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, RULES.split("[[rule]]\nname = \"pdf\"")[0])
    decision = classify(policy, _big_attachment(8 << 20, b"%PDF-1.7"))[0]
    assert decision.content_rule == "enc"
    assert decision.where == ("encrypted-attachment in attachment 'big.bin' (part 2,"
                              " application/pdf)",)


def test_policy_without_body_rules_scans_no_body(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    policy = policy_of(tmp_path, '[[rule]]\nsubject_regex = "x"\nconfidential = true\n')
    assert not policy.needs_body

    def refuse(*args: object) -> None:
        raise AssertionError("the body was scanned")

    monkeypatch.setattr(body_scan.BodyScan, "__init__", refuse)
    assert classify(policy, [head("text/plain") + b"SSN 536-22-1234\r\n"])[0].confidential is False


def test_default_policy_has_no_body_rules() -> None:
    from gateway.resources import DEFAULT_POLICY_DIR

    assert not load_policy(DEFAULT_POLICY_DIR).needs_body


def test_a_detector_that_breaks_is_a_scan_error_not_a_crash(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.classify import detectors

    def broken(text: str) -> int:
        raise RuntimeError("boom")

    monkeypatch.setitem(detectors.TEXT_DETECTORS, "us-ssn", broken)
    decision = classify(policy_of(tmp_path, RULES), [head("text/plain") + b"hello\r\n"])[0]
    assert decision.confidential
    assert "the body could not be scanned (RuntimeError: boom)" in decision.why
