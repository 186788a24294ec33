"""The sender's pages (issue 14, "Senders"): the status of each recipient's copy behind the
receipt link, a confirmation page and a CSRF-protected POST that revokes every copy at once,
every view and revoke audited, and a link that works for its message only while it lasts."""

from __future__ import annotations

import re

from gateway.storage.store import Route, Store
from gateway.vault.expiry import Retention, housekeeping
from gateway.vault.sender_links import sender_link_url
from gateway.vault.unnotified import NOTIFICATION_DELAYED, NOTIFICATION_FAILED, NOTIFIED
from tests.portal_fixtures import (
    PATIENT,
    SENDER,
    FakeClock,
    Page,
    TestClient,
    app,
    assert_security_headers,
    client,
    clock,
    config,
    csrf,
    secure_message,
    store,
    wakes,
)

__all__ = ["app", "client", "clock", "config", "store", "wakes"]

KIM = "kim@patients.test"
DAY = 86400.0


def stored_for(store: Store, *recipients: str) -> str:
    """One message from SENDER stored for pickup for each of RECIPIENTS; its queue id."""
    queue_id = store.enqueue(SENDER, [Route(r, True, "pickup") for r in recipients],
                             secure_message())
    for rcpt in recipients:
        store.store_pickup(queue_id, SENDER, rcpt, store.clock() + 7 * DAY)
    return queue_id


def sender_path(store: Store, queue_id: str) -> str:
    url = sender_link_url(store, "http://testserver", queue_id, SENDER)
    return url.removeprefix("http://testserver")


def copy_of(store: Store, queue_id: str, rcpt: str) -> str:
    return next(p.id for p in store.message_pickups(queue_id) if p.recipient == rcpt)


def section_of(page: Page, rcpt: str) -> str:
    """The status section of RCPT on the page, tags removed."""
    match = re.search(rf"<h2[^>]*>{re.escape(rcpt)}</h2>(.*?)</section>", page.text, re.S)
    assert match, f"no section for {rcpt}"
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(1)).split())


def revoke(client: TestClient, path: str) -> Page:
    confirm = client.get(f"{path}/revoke")
    return client.post(f"{path}/revoke", data={"csrf_token": csrf(confirm)})


def test_the_status_page_has_a_section_per_recipient(client: TestClient, store: Store) -> None:
    page = client.get(sender_path(store, stored_for(store, PATIENT, KIM)))
    assert page.status_code == 200
    assert "Stored" in section_of(page, PATIENT) and "Deleted on" in section_of(page, KIM)


def test_a_fresh_copy_is_not_yet_notified_opened_downloaded_or_replied(
        client: TestClient, store: Store) -> None:
    section = section_of(client.get(sender_path(store, stored_for(store, PATIENT))), PATIENT)
    for what in ("Notified", "Opened", "Downloaded", "Replied"):
        assert f"{what} Not yet" in section


def test_the_status_shows_when_the_recipient_was_notified(client: TestClient,
                                                          store: Store) -> None:
    queue_id = stored_for(store, PATIENT, KIM)
    store.audit(copy_of(store, queue_id, PATIENT), NOTIFIED)
    page = client.get(sender_path(store, queue_id))
    assert "Notified Not yet" not in section_of(page, PATIENT)
    assert "Notified Not yet" in section_of(page, KIM)


def test_the_status_says_when_a_recipient_could_not_be_notified(client: TestClient,
                                                               store: Store) -> None:
    queue_id = stored_for(store, PATIENT)
    store.audit(copy_of(store, queue_id, PATIENT), NOTIFICATION_FAILED, "", "550 no such user")
    assert "Notified Could not be notified" in section_of(
        client.get(sender_path(store, queue_id)), PATIENT)


def test_the_status_says_when_the_email_to_a_recipient_is_delayed(client: TestClient,
                                                                  store: Store) -> None:
    queue_id = stored_for(store, PATIENT)
    store.audit(copy_of(store, queue_id, PATIENT), NOTIFICATION_DELAYED, "", "451 4.7.5 later")
    assert "Notified Not yet: the email to them is delayed" in section_of(
        client.get(sender_path(store, queue_id)), PATIENT)


def test_the_status_shows_opened_downloaded_and_replied(client: TestClient, store: Store,
                                                        clock: FakeClock) -> None:
    queue_id = stored_for(store, PATIENT)
    pickup_id = copy_of(store, queue_id, PATIENT)
    store.mark_pickup_read(pickup_id)
    store.audit(pickup_id, "download", "203.0.113.9", "Résultats 2026.pdf")
    reply_id, size = store.spool_stream(iter([b"Subject: Re\r\n\r\nthanks\r\n"]))
    store.store_reply(pickup_id, reply_id, PATIENT, SENDER, size)
    section = section_of(client.get(sender_path(store, queue_id)), PATIENT)
    for what in ("Opened", "Downloaded", "Replied"):
        assert re.search(rf"{what} \d", section), f"{what} has no time"


def test_every_view_is_audited_for_each_copy(client: TestClient, store: Store) -> None:
    queue_id = stored_for(store, PATIENT, KIM)
    path = sender_path(store, queue_id)
    client.get(path)
    client.get(path)
    for rcpt in (PATIENT, KIM):
        views = [e for e in store.audit_events(copy_of(store, queue_id, rcpt))
                 if e.event == "sender-view"]
        assert len(views) == 2 and views[0].client == "testclient"


def test_the_pages_carry_the_portals_security_headers(client: TestClient, store: Store) -> None:
    path = sender_path(store, stored_for(store, PATIENT))
    assert_security_headers(client.get(path))
    assert_security_headers(client.get(f"{path}/revoke"))


def test_viewing_status_and_confirmation_destroys_nothing(client: TestClient,
                                                          store: Store) -> None:
    queue_id = stored_for(store, PATIENT, KIM)
    path = sender_path(store, queue_id)
    assert client.get(path).status_code == 200
    confirm = client.get(f"{path}/revoke")
    assert confirm.status_code == 200 and "Yes, destroy every copy" in confirm.text
    assert PATIENT in confirm.text and KIM in confirm.text
    assert len(store.message_pickups(queue_id)) == 2


def test_revoking_destroys_every_copy_at_once(client: TestClient, store: Store) -> None:
    queue_id = stored_for(store, PATIENT, KIM)
    ids = [p.id for p in store.message_pickups(queue_id)]
    answer = revoke(client, sender_path(store, queue_id))
    assert answer.status_code == 200  # the status page, after the redirect
    assert store.message_pickups(queue_id) == []
    assert all(store.get_pickup(i) is None for i in ids)


def test_revoking_destroys_the_replies_too(client: TestClient, store: Store) -> None:
    queue_id = stored_for(store, PATIENT)
    pickup_id = copy_of(store, queue_id, PATIENT)
    reply_id, size = store.spool_stream(iter([b"Subject: Re\r\n\r\nthanks\r\n"]))
    reply = store.store_reply(pickup_id, reply_id, PATIENT, SENDER, size)
    revoke(client, sender_path(store, queue_id))
    assert store.get_pickup(reply) is None


def test_a_revoke_is_audited_for_each_copy_with_the_client(client: TestClient,
                                                          store: Store) -> None:
    queue_id = stored_for(store, PATIENT, KIM)
    ids = [p.id for p in store.message_pickups(queue_id)]
    revoke(client, sender_path(store, queue_id))
    for pickup_id in ids:
        [event] = [e for e in store.audit_events(pickup_id) if e.event == "revoked"]
        assert event.client == "testclient" and SENDER in event.detail


def test_after_a_revoke_the_page_says_so_and_offers_no_revoke(client: TestClient,
                                                              store: Store) -> None:
    path = sender_path(store, stored_for(store, PATIENT))
    page = revoke(client, path)
    assert "You revoked this message on" in page.text
    assert "Revoke this message" not in page.text
    assert "until they pick it up" not in page.text  # nothing is kept any more
    assert client.get(f"{path}/revoke", follow_redirects=False).status_code == 303


def test_after_a_revoke_the_recipients_link_finds_nothing(client: TestClient,
                                                          store: Store) -> None:
    queue_id = stored_for(store, PATIENT)
    pickup_id = copy_of(store, queue_id, PATIENT)
    revoke(client, sender_path(store, queue_id))
    assert client.get(f"/m/{pickup_id}").status_code == 404


def test_a_revoke_without_the_csrf_token_is_refused(client: TestClient, store: Store) -> None:
    queue_id = stored_for(store, PATIENT)
    path = sender_path(store, queue_id)
    client.get(f"{path}/revoke")  # has the CSRF cookie, but the form field is missing
    assert client.post(f"{path}/revoke", data={}).status_code == 403
    assert client.post(f"{path}/revoke", data={"csrf_token": "0" * 64}).status_code == 403
    assert len(store.message_pickups(queue_id)) == 1


def test_a_link_with_a_wrong_secret_is_not_found(client: TestClient, store: Store) -> None:
    queue_id = stored_for(store, PATIENT)
    path = sender_path(store, queue_id)
    wrong = path[:-4] + ("AAAA" if not path.endswith("AAAA") else "BBBB")
    assert client.get(wrong).status_code == 404
    assert client.get(f"{wrong}/revoke").status_code == 404
    assert client.get("/s/nonsense").status_code == 404


def test_a_wrong_secret_cannot_revoke(client: TestClient, store: Store) -> None:
    queue_id = stored_for(store, PATIENT)
    path = sender_path(store, queue_id)
    token = csrf(client.get(f"{path}/revoke"))
    wrong = path[:-4] + ("AAAA" if not path.endswith("AAAA") else "BBBB")
    assert client.post(f"{wrong}/revoke", data={"csrf_token": token}).status_code == 404
    assert len(store.message_pickups(queue_id)) == 1


def test_a_link_to_one_message_cannot_touch_another(client: TestClient, store: Store) -> None:
    mine, other = stored_for(store, PATIENT), stored_for(store, KIM)
    revoke(client, sender_path(store, mine))
    assert len(store.message_pickups(other)) == 1


def test_the_link_stops_working_once_the_message_expired(client: TestClient, store: Store,
                                                         clock: FakeClock) -> None:
    path = sender_path(store, stored_for(store, PATIENT))
    clock.advance(7 * DAY)
    assert client.get(path).status_code == 404


def test_the_pages_are_in_spanish_for_a_spanish_browser(client: TestClient,
                                                        store: Store) -> None:
    path = sender_path(store, stored_for(store, PATIENT))
    headers = {"Accept-Language": "es-ES,es;q=0.9"}
    status = client.get(path, headers=headers)
    assert "Su mensaje seguro" in status.text and "Todavía no" in status.text
    assert "¿Revocar este mensaje?" in client.get(f"{path}/revoke", headers=headers).text


def test_housekeeping_forgets_the_links_of_expired_messages(store: Store,
                                                            clock: FakeClock) -> None:
    link_id = sender_path(store, stored_for(store, PATIENT)).split("/")[2].split(".")[0]
    clock.advance(7 * DAY)
    housekeeping(store, Retention(history=30 * DAY, host_knowledge=30 * DAY))
    clock.advance(-7 * DAY)  # gone from the store, not merely past its expiry
    assert store.get_sender_link(link_id) is None
