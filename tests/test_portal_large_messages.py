"""Large messages in the portal are read as streams: the message page, the body frame and
attachment downloads never hold the whole message, and the page says when it shows a
message in part. The size limits are lowered here so that small messages take the
streaming path (the same code as for 100 MiB; bench/portal_large_message.py measures that)."""

from __future__ import annotations

import email.policy
import hashlib
import re
from email.message import EmailMessage

import pytest

from gateway.storage.store import Store
from gateway.vault import crypto
from pickup import mime_scan, render
from tests.portal_fixtures import (
    PATIENT,
    SENDER,
    TestClient,
    app,
    client,
    clock,
    config,
    pid,
    register,
    secure_message,
    seed,
    store,
    wakes,
)

__all__ = ["app", "client", "clock", "config", "pid", "store", "wakes"]

SCAN = bytes(range(256)) * 12_000  # about 3 MiB: several decryption chunks


@pytest.fixture(autouse=True)
def streamed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every message takes the streaming path, and a text body is shown up to 64 KiB."""
    monkeypatch.setattr(render, "IN_MEMORY_LIMIT", 0)
    monkeypatch.setattr(mime_scan, "BODY_CAP", 64 << 10)


def message_with(text: str, attachments: dict[str, bytes], cte: str = "base64") -> bytes:
    message = EmailMessage()
    message["From"] = f"Dr. Doctor <{SENDER}>"
    message["To"] = PATIENT
    message["Subject"] = "Your scan"
    message["Message-ID"] = "<scan@hospital.example>"
    message.set_content(text)
    for name, data in attachments.items():
        message.add_attachment(data, maintype="application", subtype="octet-stream",
                               filename=name, cte=cte)
    return message.as_bytes(policy=email.policy.SMTP)


def attachment_paths(text: str, pickup_id: str) -> list[str]:
    return re.findall(rf'href="(/m/{pickup_id}/attachments/\d+)"', text)


def test_large_attachment_downloads_byte_exact(client: TestClient, store: Store) -> None:
    pickup_id = seed(store, raw=message_with("Your scan is attached.\n", {"scan.dcm": SCAN}))
    [path] = attachment_paths(register(client, store, pickup_id).text, pickup_id)
    download = client.get(path)
    assert download.status_code == 200
    assert hashlib.sha256(download.content).digest() == hashlib.sha256(SCAN).digest()
    assert download.headers["content-length"] == str(len(SCAN))
    assert 'filename="scan.dcm"' in download.headers["content-disposition"]


@pytest.mark.parametrize("cte", ["base64", "quoted-printable", "8bit"])
def test_attachment_streams_in_chunks_no_larger_than_a_decryption_chunk(store: Store,
                                                                         cte: str) -> None:
    data = SCAN if cte != "8bit" else b"scan line\r\n" * 300_000
    pickup_id = seed(store, raw=message_with("See attached.\n", {"scan.dcm": data}, cte))
    with store.open_pickup_stream(pickup_id) as stream:
        download = render.attachment(render.read_message(stream), 2)
        assert download is not None and download.data == b""  # not kept: streamed
        pieces = list(render.attachment_chunks(stream, download))
    assert b"".join(pieces) == data
    assert len(pieces) > 1 and max(len(piece) for piece in pieces) <= crypto.CHUNK_SIZE


def test_attachment_changed_while_sent_never_arrives_complete(store: Store) -> None:
    pickup_id = seed(store, raw=message_with("See attached.\n", {"scan.dcm": SCAN}))
    received = bytearray()
    with store.open_pickup_stream(pickup_id) as stream:
        download = render.attachment(render.read_message(stream), 2)
        assert download is not None
        blob = store.blob_dir / f"{pickup_id}.sgb"  # the SQLite + files back-end's blob file
        with blob.open("r+b") as handle:  # a failing disk, in place, after the tag verified
            handle.seek(blob.stat().st_size - 100)
            handle.write(b"\xff" * 8)
        with pytest.raises(crypto.DecryptionError):
            for piece in render.attachment_chunks(stream, download):
                received += piece
    assert len(received) < len(SCAN)  # the last piece was held back: a truncated download


def test_large_text_is_shown_in_part_with_a_notice(client: TestClient, store: Store) -> None:
    text = "".join(f"Line {n} of the report.\n" for n in range(10_000)) + "THE-LAST-LINE\n"
    pickup_id = seed(store, raw=message_with(text, {}, cte="8bit"))
    page = register(client, store, pickup_id)
    assert page.status_code == 200
    assert "shown in part" in page.text
    assert "Line 0 of the report." in page.text and "THE-LAST-LINE" not in page.text


def test_small_message_has_no_shown_in_part_notice(client: TestClient, store: Store,
                                                   pid: str) -> None:
    page = register(client, store, pid)
    assert page.status_code == 200 and "shown in part" not in page.text


HEAD = (b"From: Dr. Doctor <doctor@hospital.example>\r\nTo: patient@example.org\r\n"
        b"Subject: Odd structure\r\nMIME-Version: 1.0\r\n")
NO_DELIMITERS = HEAD + (b'Content-Type: multipart/mixed; boundary="never"\r\n\r\n'
                        b"Only a preamble, no part starts.\r\n")
NEVER_CLOSED = HEAD + (b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
                       b"--b1\r\nContent-Type: text/plain\r\n\r\nfirst\r\n"
                       b"--b1\r\nContent-Type: application/octet-stream\r\n"
                       b"Content-Disposition: attachment; filename=cut.bin\r\n\r\n"
                       b"cut off without a closing delimiter\r\n")
NO_BOUNDARY = HEAD + b"Content-Type: multipart/mixed\r\n\r\nA multipart without a boundary.\r\n"
PREAMBLE_AND_EPILOGUE = HEAD + (b'Content-Type: multipart/alternative; boundary="alt"\r\n\r\n'
                                b"preamble text\r\n--alt\r\nContent-Type: text/plain\r\n\r\n"
                                b"plain\r\n--alt\r\nContent-Type: text/html\r\n\r\n"
                                b"<p>html</p>\r\n--alt--\r\nepilogue text\r\n")


def forwarded() -> bytes:
    """A message/rfc822 attachment that is itself multipart, with a file inside."""
    inner = message_with("The original.\n", {"inner.bin": b"\x01\x02" * 3000})
    outer = EmailMessage()
    outer["From"] = f"Dr. Doctor <{SENDER}>"
    outer["To"] = PATIENT
    outer["Subject"] = "Fwd: Your scan"
    outer.set_content("Forwarding the original.\n")
    outer.add_attachment(email.message_from_bytes(inner, policy=email.policy.default))
    return outer.as_bytes(policy=email.policy.SMTP)


@pytest.mark.parametrize("raw", [
    secure_message(),
    message_with("Plain text, two files.\n", {"a.bin": b"\x00" * 5000, "b.bin": b"b" * 7}),
    message_with("Quoted-printable.\n", {"q.bin": "café\n".encode() * 900}, "quoted-printable"),
    NO_DELIMITERS, NEVER_CLOSED, NO_BOUNDARY, PREAMBLE_AND_EPILOGUE, forwarded(),
], ids=["html-with-inline-image", "two-attachments", "quoted-printable", "no-delimiters",
        "never-closed", "no-boundary", "preamble-and-epilogue", "forwarded-multipart"])
def test_streamed_reading_agrees_with_the_whole_parse(store: Store, raw: bytes) -> None:
    pickup_id = seed(store, raw=raw)
    with store.open_pickup_stream(pickup_id) as stream:
        streamed = render.read_message(stream)
    assert render.message_view(streamed) == render.message_view(raw)
    assert (render.body_html(streamed, str, True) == render.body_html(raw, str, True))
    for info in render.message_view(raw).attachments:
        whole = render.attachment(raw, info.number)
        assert whole is not None
        with store.open_pickup_stream(pickup_id) as stream:
            part = render.attachment(streamed, info.number)
            assert part is not None
            assert b"".join(render.attachment_chunks(stream, part)) == whole.data


def test_inbox_reads_only_the_headers_of_a_large_message(client: TestClient,
                                                         store: Store) -> None:
    pickup_id = seed(store, raw=message_with("Your scan.\n", {"scan.dcm": SCAN}))
    register(client, store, pickup_id)
    with store.open_pickup_stream(pickup_id) as stream:
        headers = render.header_section(stream)
    assert headers.startswith(b"From:") and headers.endswith(b"\r\n\r\n")
    assert len(headers) < 1000
    inbox = client.get("/")
    assert inbox.status_code == 200 and "Your scan" in inbox.text


def test_parts_beyond_the_cap_are_left_out_and_the_page_says_so(
        monkeypatch: pytest.MonkeyPatch, client: TestClient, store: Store) -> None:
    monkeypatch.setattr(mime_scan, "MAX_PARTS", 5)
    files = {f"file{n}.bin": bytes([n]) * 100 for n in range(12)}
    pickup_id = seed(store, raw=message_with("Many files.\n", files))
    page = register(client, store, pickup_id).text
    assert len(attachment_paths(page, pickup_id)) < len(files)
    with store.open_pickup_stream(pickup_id) as stream:
        assert render.message_view(render.read_message(stream)).shown_in_part
