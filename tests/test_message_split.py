"""Classification reads only the header section; the body is passed on untouched, uncopied."""

from __future__ import annotations

from pathlib import Path

from gateway.inbound.server import rewrite_subject, split_message
from gateway.storage.store import Route, Store


def test_header_section_and_body_are_split_at_the_blank_line() -> None:
    head, body = split_message(b"Subject: hi\r\nTo: a@b.test\r\n\r\nbody\r\n")
    assert head == b"Subject: hi\r\nTo: a@b.test\r\n"
    assert bytes(body) == b"\r\nbody\r\n"


def test_message_of_headers_only_is_all_head() -> None:
    head, body = split_message(b"Subject: hi\r\n")
    assert head == b"Subject: hi\r\n" and bytes(body) == b""


def test_message_starting_with_a_blank_line_has_no_headers() -> None:
    head, body = split_message(b"\r\nSubject: not a header\r\n")
    assert head == b"" and bytes(body).startswith(b"\r\nSubject")


def test_subject_rewrite_touches_only_the_subject() -> None:
    head = b"From: a@b.test\r\nSubject: [secure] Lab\r\n results\r\nTo: c@d.test\r\n"
    assert rewrite_subject(head, lambda s: s.replace("[secure] ", "")) == (
        b"From: a@b.test\r\nSubject: Lab results\r\nTo: c@d.test\r\n")


def test_spooled_chunks_make_the_whole_message_and_headers_read_alone(tmp_path: Path) -> None:
    store = Store(tmp_path)
    try:
        content = b"Subject: hi\r\n\r\n" + b"x" * 100_000 + b"\r\n"
        head, body = split_message(content)
        message_id = store.enqueue("a@b.test", [Route("c@d.test")], [head, body])
        assert store.read_spool(message_id) == content
        assert store.read_spool_headers(message_id) == b"Subject: hi\r\n"
        status = store.queued_message(message_id)
        assert status is not None and status.size == len(content)
    finally:
        store.close()
