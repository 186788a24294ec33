"""Shared by the TLS reporting tests: the RFC 8460 report schema (tests/data/) and how to
read a report out of what a target received."""

from __future__ import annotations

import email
import email.policy
import gzip
import json
from email.message import EmailMessage
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA = Path(__file__).parent / "data" / "tlsrpt-report.schema.json"


@cache
def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def assert_valid_report(document: Any) -> None:
    """DOCUMENT follows RFC 8460 4.4; the error names the first field that does not."""
    errors = sorted(_validator().iter_errors(document), key=lambda e: list(e.path))
    assert not errors, "; ".join(f"{list(e.path)}: {e.message}" for e in errors)


def report_of_gzip(data: bytes) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(gzip.decompress(data))
    return document


def report_mail(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def report_of_mail(message: EmailMessage) -> tuple[str, dict[str, Any]]:
    """The attachment's file name and the report it carries."""
    [part] = [p for p in message.iter_attachments()
              if p.get_content_type() == "application/tlsrpt+gzip"]
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return str(part.get_filename()), report_of_gzip(payload)


def policy_entry(document: dict[str, Any], policy_type: str) -> dict[str, Any]:
    [entry] = [p for p in document["policies"] if p["policy"]["policy-type"] == policy_type]
    return entry
