"""Messages the portal must still show, or say clearly that it cannot: raw 8-bit UTF-8 in
headers, MIME nested a thousand levels deep, blobs damaged at rest, and bidirectional
controls that would reorder names, subjects and file names on screen."""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage

import pytest

from gateway.storage.store import Store
from pickup import render
from tests.portal_fixtures import (
    PATIENT,
    SENDER,
    Page,
    TestClient,
    app,
    client,
    clock,
    config,
    csrf,
    pid,
    reading,
    register,
    secure_message,
    seed,
    store,
    wakes,
)

__all__ = ["app", "client", "clock", "config", "pid", "reading", "store", "wakes"]
pytestmark = pytest.mark.usefixtures("reading")

RLO = "\u202e"
BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
DEEP_TEXT = "THE-DEEPEST-TEXT"
VISIBLE_HTML = "SHOWN-ABOVE-THE-NESTING"


def raw_utf8_message(to: str = PATIENT) -> bytes:
    """From and Subject as raw 8-bit UTF-8 (RFC 6532), not RFC 2047 encoded words."""
    return ("From: Jörg Müller <d@org.test>\r\n"
            f"To: {to}\r\n"
            "Subject: Befund für Jörg\r\n"
            "Date: Mon, 23 Nov 2026 15:04:00 +0000\r\n"
            "Message-ID: <raw-utf8@org.test>\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n"
            "\r\n"
            "Grüße aus der Klinik.\r\n").encode()


def deeply_nested_message(depth: int = 1200) -> bytes:
    """An HTML part, then a multipart nested DEPTH levels deep around one text part."""
    inner = f"Content-Type: text/plain\r\n\r\n{DEEP_TEXT}\r\n".encode()
    for level in range(depth):
        inner = (f'Content-Type: multipart/mixed; boundary="level{level}"\r\n\r\n'
                 f"--level{level}\r\n").encode() + inner + f"\r\n--level{level}--\r\n".encode()
    head = (f"From: Dr. Doctor <{SENDER}>\r\nTo: {PATIENT}\r\nSubject: Deep\r\n"
            "Message-ID: <deep@hospital.example>\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/mixed; boundary="top"\r\n\r\n'
            f"--top\r\nContent-Type: text/html\r\n\r\n<p>{VISIBLE_HTML}</p>\r\n--top\r\n").encode()
    return head + inner + b"\r\n--top--\r\n"


def bidi_message() -> bytes:
    message = EmailMessage()
    message["From"] = f"Ann {RLO}reppilc{RLO} <{SENDER}>"
    message["To"] = PATIENT
    message["Subject"] = f"Invoice {RLO}fdp.exe"
    message["Message-ID"] = "<bidi@hospital.example>"
    message.set_content("Please see the attachment.")
    message.add_attachment(b"MZ not really", maintype="application", subtype="octet-stream",
                           filename=f"invoice{RLO}fdp.exe")
    return message.as_bytes(policy=email.policy.SMTP)


def damage(store: Store, pickup_id: str) -> None:
    """Flip bytes in the middle of the encrypted blob, as a failing disk would."""
    blob = store.blob_dir / f"{pickup_id}.sgb"  # the SQLite + files back-end's blob file
    data = bytearray(blob.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 16] = bytes(b ^ 0xFF for b in data[middle:middle + 16])
    blob.write_bytes(bytes(data))


def attachment_paths(page: Page, pickup_id: str) -> list[str]:
    return re.findall(rf'href="(/m/{pickup_id}/attachments/\d+)"', page.text)


def view_path(view: str, pickup_id: str) -> str:
    return {"inbox": "/", "message": f"/m/{pickup_id}", "print": f"/m/{pickup_id}/print",
            "body": f"/m/{pickup_id}/body"}[view]


def assert_portal_page(page: Page) -> None:
    """Our layout and no traceback."""
    assert 'class="site-header"' in page.text or 'class="print-header"' in page.text
    assert "Traceback" not in page.text and "File \"" not in page.text


# -- raw UTF-8 in headers --------------------------------------------------------------------

@pytest.mark.parametrize("view", ["inbox", "message", "print"])
def test_raw_utf8_display_name_and_subject_are_shown(client: TestClient, store: Store,
                                                     view: str) -> None:
    pickup_id = seed(store, raw=raw_utf8_message())
    register(client, store, pickup_id)
    page = client.get(view_path(view, pickup_id))
    assert page.status_code == 200
    assert "Jörg Müller" in page.text and "Befund für Jörg" in page.text
    assert "\ufffd" not in page.text


def test_raw_utf8_message_can_be_answered(client: TestClient, store: Store) -> None:
    pickup_id = seed(store, raw=raw_utf8_message())
    page = register(client, store, pickup_id)
    sent = client.post(f"/m/{pickup_id}/reply", data={"csrf_token": csrf(page), "text": "Danke"})
    assert sent.status_code == 200 and "Your reply was sent securely" in sent.text
    [row] = [w for w in store.waiting_recipients() if w.mode == "internal"]
    reply = email.message_from_bytes(store.read_spool(row.message_id),
                                     policy=email.policy.default)
    assert str(reply["Subject"]) == "Re: Befund für Jörg"
    assert str(reply["To"]) == "d@org.test"


# -- MIME nested too deeply ------------------------------------------------------------------

def test_deeply_nested_message_page_shows_what_it_can_with_a_notice(client: TestClient,
                                                                    store: Store) -> None:
    pickup_id = seed(store, raw=deeply_nested_message())
    page = register(client, store, pickup_id)
    assert page.status_code == 200
    assert "nested too deeply" in page.text and f"more than {render.MAX_MIME_DEPTH}" in page.text
    assert "Dr. Doctor" in page.text and "Deep" in page.text
    assert f'src="/m/{pickup_id}/body"' in page.text
    assert len(attachment_paths(page, pickup_id)) == 1  # the part below the cap, as a file


@pytest.mark.parametrize("view", ["inbox", "print", "body"])
def test_deeply_nested_message_opens_in_every_view(client: TestClient, store: Store,
                                                   view: str) -> None:
    pickup_id = seed(store, raw=deeply_nested_message())
    register(client, store, pickup_id)
    page = client.get(view_path(view, pickup_id))
    assert page.status_code == 200
    assert ("Deep" if view == "inbox" else VISIBLE_HTML) in page.text


def test_part_below_the_depth_cap_downloads_whole(client: TestClient, store: Store) -> None:
    pickup_id = seed(store, raw=deeply_nested_message())
    [path] = attachment_paths(register(client, store, pickup_id), pickup_id)
    download = client.get(path)
    assert download.status_code == 200
    assert DEEP_TEXT.encode() in download.content  # nothing of the message is lost
    assert download.headers["content-type"] == "application/octet-stream"


# -- damaged at rest -------------------------------------------------------------------------

def test_reply_to_a_damaged_message_says_it_cannot_be_opened(client: TestClient, store: Store,
                                                             pid: str) -> None:
    page = register(client, store, pid)
    damage(store, pid)
    sent = client.post(f"/m/{pid}/reply", data={"csrf_token": csrf(page), "text": "Thanks"})
    assert sent.status_code == 500
    assert "This message cannot be opened" in sent.text
    assert "Your reply was not sent" in sent.text
    assert_portal_page(sent)
    assert not [w for w in store.waiting_recipients() if w.mode == "internal"]  # nothing queued


def test_reply_after_a_damaged_earlier_reply_is_still_sent(client: TestClient, store: Store,
                                                            pid: str) -> None:
    page = register(client, store, pid)
    client.post(f"/m/{pid}/reply", data={"csrf_token": csrf(page), "text": "First answer"})
    [earlier] = [p for p in store.list_pickups() if p.kind == "reply"]
    damage(store, earlier.id)
    page = client.get(f"/m/{pid}")
    assert page.status_code == 200  # the thread without the reply that cannot be read
    sent = client.post(f"/m/{pid}/reply", data={"csrf_token": csrf(page), "text": "Second"})
    assert sent.status_code == 200 and "Your reply was sent securely" in sent.text
    assert len([w for w in store.waiting_recipients() if w.mode == "internal"]) == 2


def test_damaged_message_page_says_it_cannot_be_opened(client: TestClient, store: Store,
                                                       pid: str) -> None:
    register(client, store, pid)
    damage(store, pid)
    page = client.get(f"/m/{pid}")
    assert page.status_code == 500 and "This message cannot be opened" in page.text
    assert "Your reply was not sent" not in page.text
    assert_portal_page(page)


def test_damaged_message_is_listed_in_the_inbox_as_unopenable(client: TestClient, store: Store,
                                                              pid: str) -> None:
    register(client, store, pid)
    damage(store, pid)
    inbox = client.get("/")
    assert inbox.status_code == 200
    assert f'href="/m/{pid}"' in inbox.text and "This message cannot be opened" in inbox.text


# -- bidirectional controls ------------------------------------------------------------------

def test_every_bidi_control_is_written_out() -> None:
    shown = render.visible(f"a{BIDI_CONTROLS}b")
    assert shown == "a" + "".join(f"<U+{ord(ch):04X}>" for ch in BIDI_CONTROLS) + "b"


@pytest.mark.parametrize("view", ["inbox", "message", "print"])
def test_bidi_controls_in_names_subjects_and_file_names_are_visible(
        client: TestClient, store: Store, view: str) -> None:
    pickup_id = seed(store, raw=bidi_message())
    register(client, store, pickup_id)
    page = client.get(view_path(view, pickup_id)).text
    assert RLO not in page
    assert "Invoice &lt;U+202E&gt;fdp.exe" in page
    assert "Ann &lt;U+202E&gt;reppilc&lt;U+202E&gt;" in page
    if view != "inbox":
        assert "invoice&lt;U+202E&gt;fdp.exe" in page


def test_reply_form_names_the_sender_with_bidi_controls_visible(client: TestClient,
                                                                store: Store) -> None:
    pickup_id = seed(store, raw=bidi_message())
    page = register(client, store, pickup_id).text
    heading = re.search(r'<h2 id="reply-title">(.*?)</h2>', page, re.DOTALL)
    assert heading and "Ann &lt;U+202E&gt;reppilc" in heading.group(1)


def test_bidi_controls_in_download_file_names_are_visible(client: TestClient,
                                                          store: Store) -> None:
    pickup_id = seed(store, raw=bidi_message())
    [path] = attachment_paths(register(client, store, pickup_id), pickup_id)
    disposition = client.get(path).headers["content-disposition"]
    assert "%E2%80%AE" not in disposition and RLO not in disposition
    assert 'filename="invoice<U+202E>fdp.exe"' in disposition
    assert "filename*=UTF-8''invoice%3CU%2B202E%3Efdp.exe" in disposition


def test_bidi_controls_in_the_address_on_the_start_page_are_visible(client: TestClient,
                                                                    store: Store) -> None:
    address = f"pat{RLO}moc.evil@patients.test"
    pickup_id = seed(store, address, raw=secure_message(to=PATIENT))
    page = client.get(f"/m/{pickup_id}")
    assert page.status_code == 200 and "You have a secure message" in page.text
    assert RLO not in page.text and "pat&lt;U+202E&gt;moc.evil@patients.test" in page.text
