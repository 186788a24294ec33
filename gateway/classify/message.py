"""A whole message classified as the SMTP side does it, from a stream of chunks: for
`sealgate policy test`, `sealgate route --message` and the benchmarks."""

from __future__ import annotations

import email.utils
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from gateway.classify.body_scan import BodyScan, split_message
from gateway.classify.policy import Decision, HeaderSection, Policy, decide, read_header_section
from gateway.classify.rules import ContentFindings

CHUNK = 64 << 10


def file_chunks(path: Path, size: int = CHUNK) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(size):
            yield chunk


def scan(policy: Policy, chunks: Iterable[bytes]) -> tuple[HeaderSection, ContentFindings | None]:
    """The header section of the message in CHUNKS and, when the policy has rules on the
    body, the body scan's findings (the body is read in pieces, never whole)."""
    head, body = split_message(chunks)
    section = read_header_section(head)
    if not policy.needs_body:
        return section, None
    body_scan = BodyScan(policy.content_rules, policy.scan.scan_limit, head)
    for piece in body:
        body_scan.feed(piece)
    return section, body_scan.close()


def recipients_of(section: HeaderSection) -> list[str]:
    values = section.values("To") + section.values("Cc") + section.values("Bcc")
    return [address for _name, address in email.utils.getaddresses(values) if "@" in address]


def classify(policy: Policy, chunks: Iterable[bytes], recipients: Sequence[str] = (),
             sender: str = "") -> list[Decision]:
    """A decision per recipient (the To/Cc/Bcc addresses when RECIPIENTS is empty)."""
    section, content = scan(policy, chunks)
    rcpts = list(recipients) or recipients_of(section) or ["someone@example.invalid"]
    return [decide(policy, section, rcpt, sender=sender, content=content) for rcpt in rcpts]
