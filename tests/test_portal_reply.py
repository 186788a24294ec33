"""Secure replies from the portal: delivered to the original sender through the internal
relay, threaded, kept encrypted in the thread, with attachments up to the size limit."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import re
from email.message import EmailMessage
from typing import Any

from gateway.config import Config
from gateway.storage.store import Store
from pickup.app import create_app
from tests.portal_fixtures import (
    MESSAGE_ID,
    OTHER,
    PATIENT,
    SENDER,
    FakeClock,
    Page,
    TestClient,
    app,
    client,
    clock,
    config,
    count,
    csrf,
    other_client,
    pid,
    register,
    secure_message,
    seed,
    store,
    wakes,
)

__all__ = ["app", "client", "clock", "config", "other_client", "pid", "store", "wakes"]

REPORT = b"%PDF-1.4 my own report\n" + bytes(range(256)) * 40


def reply(client: TestClient, pickup_id: str, text: str = "Thank you, doctor.",
          files: list[tuple[str, bytes, str]] | None = None, **fields: str) -> Page:
    page = client.get(f"/m/{pickup_id}")
    data = {"csrf_token": csrf(page), "text": text, **fields}
    upload = [("attachments", file) for file in (files or [])]
    return client.post(f"/m/{pickup_id}/reply", data=data, files=upload or None)


def relayed(store: Store) -> list[Any]:
    """Queued replies for the internal relay, oldest first."""
    return [{"id": w.message_id, "sender": w.sender, "rcpt": w.rcpt, "mode": w.mode}
            for w in store.waiting_recipients() if w.mode == "internal"]


def parsed(store: Store, queue_id: str) -> EmailMessage:
    message = email.message_from_bytes(store.read_spool(queue_id), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def replies_in(store: Store, root: str) -> list[Any]:
    owner = store.get_pickup(root)
    assert owner is not None
    return [dataclasses.asdict(p) for p in store.thread_replies(root, owner.recipient)]


def test_reply_goes_to_the_sender_through_the_internal_relay(
        client: TestClient, store: Store, pid: str, wakes: list[int]) -> None:
    register(client, store, pid)
    wakes.clear()
    response = reply(client, pid, "Thank you, doctor.\r\nSee my report.",
                     [("my report.pdf", REPORT, "application/pdf"),
                      ("notes é.txt", b"some notes\n", "text/plain")],
                     to="thief@evil.test", cc="thief@evil.test")
    assert response.status_code == 200 and response.url.path == f"/m/{pid}"
    assert "Your reply was sent securely" in response.text
    assert wakes == [1]

    [row] = relayed(store)
    assert (row["rcpt"], row["sender"], row["mode"]) == (SENDER, PATIENT, "internal")
    message = parsed(store, row["id"])
    assert message["From"].addresses[0].addr_spec == PATIENT
    assert message["From"].addresses[0].display_name == "Pat Ient"
    assert str(message["To"]) == SENDER  # never an address from the form
    assert "thief" not in store.read_spool(row["id"]).decode()
    assert str(message["Subject"]).startswith("Re: Lab results")
    assert message["In-Reply-To"] == MESSAGE_ID
    assert str(message["References"]).split() == [MESSAGE_ID]
    assert message["Message-ID"] not in (None, MESSAGE_ID) and message["Date"]
    body = message.get_body(("plain",))
    assert body is not None
    assert body.get_content().replace("\r\n", "\n") == "Thank you, doctor.\nSee my report.\n"
    files = {part.get_filename(): part.get_content() for part in message.iter_attachments()}
    assert files == {"my report.pdf": REPORT, "notes é.txt": "some notes\n"}

    # Its encrypted copy is in the thread, identical to what was queued.
    [stored] = replies_in(store, pid)
    assert stored["recipient"] == PATIENT and stored["sender"] == PATIENT
    assert stored["expires"] == store.get_pickup(pid).expires  # type: ignore[union-attr]
    assert len(stored["id"]) >= 32  # 192 random bits: unguessable
    assert store.open_pickup(stored["id"]) == store.read_spool(row["id"])
    root = store.get_pickup(pid)
    assert root is not None and root.replied_at is not None

    thread = response.text
    assert f'id="reply-{stored["id"]}"' in thread and "Your reply" in thread
    assert "See my report." in thread
    link = re.search(rf'href="(/m/{stored["id"]}/attachments/\d+)" download>my report\.pdf', thread)
    assert link
    download = client.get(link.group(1))
    assert download.content == REPORT
    assert download.headers["content-disposition"].startswith("attachment;")
    assert "Replied" in client.get("/").text
    # The reply's own id leads to its place in the thread.
    jump = client.get(f"/m/{stored['id']}", follow_redirects=False)
    assert jump.status_code == 303 and jump.headers["location"] == f"/m/{pid}#reply-{stored['id']}"
    audit = [e for e in store.audit_events(pid) if e.event == "reply-sent"]
    assert audit[0].detail.startswith("2 attachments")


def test_a_reply_to_a_reply_threads_on(client: TestClient, store: Store, pid: str,
                                       clock: FakeClock) -> None:
    register(client, store, pid)
    reply(client, pid, "First answer.")
    clock.advance(5)
    reply(client, pid, "And one more thing.")
    first, second = (parsed(store, row["id"]) for row in relayed(store))
    assert second["In-Reply-To"] == first["Message-ID"]
    assert str(second["References"]).split() == [MESSAGE_ID, first["Message-ID"]]
    page = client.get(f"/m/{pid}").text
    assert page.index("First answer.") < page.index("And one more thing.")

    # The sender answers the portal reply by mail; it arrives as a new secure message, and
    # replying to that continues the same conversation in the sender's mail client.
    clock.advance(5)
    answer = seed(store, raw=secure_message(
        subject="Re: Re: Lab results", message_id="<answer-2@hospital.example>",
        In_Reply_To=str(second["Message-ID"]),
        References=f"{MESSAGE_ID} {first['Message-ID']} {second['Message-ID']}"))
    reply(client, answer, "Understood.")
    third = parsed(store, relayed(store)[-1]["id"])
    assert third["In-Reply-To"] == "<answer-2@hospital.example>"
    assert str(third["References"]).split() == [
        MESSAGE_ID, first["Message-ID"], second["Message-ID"], "<answer-2@hospital.example>"]
    assert str(third["Subject"]) == "Re: Re: Lab results"  # no "Re: Re: Re:"


def test_reply_needs_text_or_a_file(client: TestClient, store: Store, pid: str) -> None:
    register(client, store, pid)
    response = reply(client, pid, "   ")
    assert response.status_code == 400
    assert 'id="text-error"' in response.text and "Write your reply" in response.text
    assert relayed(store) == []
    only_file = reply(client, pid, "", [("scan.png", b"\x89PNG....", "image/png")])
    assert only_file.url.path == f"/m/{pid}" and len(relayed(store)) == 1


def test_attachments_over_the_limit_are_refused_next_to_the_field(
        config: Config, store: Store, pid: str) -> None:
    config.pickup.max_reply_size = 10 * 1024
    with TestClient(create_app(config, store)) as client:
        register(client, store, pid)
        response = reply(client, pid, "Here are my scans.",
                         [("a.bin", b"a" * 6 * 1024, "application/octet-stream"),
                          ("b.bin", b"b" * 6 * 1024, "application/octet-stream")])
        assert response.status_code == 400
        error = re.search(r'<p class="error-message" id="attachments-error">(.*?)</p>',
                          response.text, re.S)
        assert error and "add up to 12 KB" in error.group(1) and "at most 10 KB" in error.group(1)
        assert ">Here are my scans.</textarea>" in response.text  # the text is kept
        assert 'aria-invalid="true"' in response.text.split('id="attachments"')[1][:300]

        # Far past the limit, the answer comes without reading the upload.
        huge = reply(client, pid, "Scans",
                     [("c.bin", b"c" * 3_000_000, "application/octet-stream")])
        assert huge.status_code == 413 and "Your reply was not sent" in huge.text
        assert 'id="attachments-error"' in huge.text
    assert relayed(store) == [] and replies_in(store, pid) == []


def test_limit_is_the_total_per_send_not_per_file(config: Config, store: Store, pid: str) -> None:
    config.pickup.max_reply_size = 10 * 1024
    with TestClient(create_app(config, store)) as client:
        register(client, store, pid)
        ok = reply(client, pid, "Two halves",
                   [("a.bin", b"a" * 5 * 1024, "application/octet-stream"),
                    ("b.bin", b"b" * 5 * 1024, "application/octet-stream")])
        assert ok.url.path == f"/m/{pid}" and len(relayed(store)) == 1


def test_only_the_owner_can_reply_or_see_replies(client: TestClient, other_client: TestClient,
                                                 store: Store, pid: str) -> None:
    register(client, store, pid)
    reply(client, pid, "Private answer", [("mine.txt", b"mine", "text/plain")])
    [stored] = replies_in(store, pid)
    other_pid = seed(store, OTHER)
    register(other_client, store, other_pid, OTHER)
    page = other_client.get(f"/m/{other_pid}")
    for target in (pid, stored["id"]):
        forged = other_client.post(f"/m/{target}/reply", data={
            "csrf_token": csrf(page), "text": "let me in"})
        assert forged.status_code == 404
    for url in (f"/m/{stored['id']}", f"/m/{stored['id']}/attachments/2",
                f"/m/{stored['id']}/attachments/1", f"/m/{stored['id']}/print",
                f"/m/{stored['id']}/body"):
        response = other_client.get(url)
        assert response.status_code == 404, url
        assert "Private answer" not in response.text and "mine" not in response.text
    assert len(relayed(store)) == 1
    # Signed out: asked to sign in, nothing sent. Without the CSRF token: refused.
    with TestClient(client.app) as stranger:
        stranger.get(f"/m/{pid}")
        out = stranger.post(f"/m/{pid}/reply", data={"csrf_token": "x" * 64, "text": "hi"},
                            follow_redirects=False)
        assert out.status_code == 303
    no_token = client.post(f"/m/{pid}/reply", data={"text": "hi"},
                           files=[("attachments", ("a.txt", b"a", "text/plain"))])
    assert no_token.status_code == 403
    assert len(relayed(store)) == 1 and count(store, "pickups") == 3
