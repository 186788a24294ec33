"""What recipients of the commercial portals miss (issue 14): signing in by an emailed
code, pages that name the sender, optional names, password errors that say which rule
failed, .eml export before deletion, and notifications that look genuine."""

from __future__ import annotations

import email
import email.policy
import re

from gateway.config import Config
from gateway.storage.store import Store
from gateway.vault.notify import build_notification
from pickup.app import create_app
from tests.portal_fixtures import (
    PATIENT,
    SENDER,
    FakeClock,
    TestClient,
    app,
    ask_code,
    client,
    clock,
    config,
    count,
    csrf,
    latest_code,
    mail_text,
    mails,
    other_client,
    pid,
    register,
    seed,
    store,
    submit_verification,
    wakes,
)

__all__ = ["app", "client", "clock", "config", "other_client", "pid", "store", "wakes"]


def sign_in_codes(store: Store) -> list[str]:
    return mails(store, PATIENT, "sign-in code")


def latest_sign_in_code(store: Store) -> str:
    match = re.search(r"\b(\d{8})\b", mail_text(store, sign_in_codes(store)[0]))
    assert match
    return match.group(1)


def ask_sign_in_code(client: TestClient, pickup_id: str) -> object:
    page = client.get(f"/m/{pickup_id}")
    return client.post(f"/m/{pickup_id}/sign-in-code", data={"csrf_token": csrf(page)})


def enter_sign_in_code(client: TestClient, pickup_id: str, code: str) -> object:
    page = client.get(f"/m/{pickup_id}/sign-in-code")
    return client.post(f"/m/{pickup_id}/sign-in-code/check",
                       data={"csrf_token": csrf(page), "code": code})


def registered_and_signed_out(client: TestClient, store: Store, pid: str,
                              clock: FakeClock) -> None:
    register(client, store, pid)
    client.cookies.clear()
    clock.advance(61)  # past the one-code-a-minute limit


# -- sign in by code -----------------------------------------------------------------------

def test_a_forgotten_password_is_no_lock_out_the_emailed_code_signs_in(
        client: TestClient, other_client: TestClient, store: Store, pid: str,
        clock: FakeClock) -> None:
    registered_and_signed_out(client, store, pid, clock)
    asked = ask_sign_in_code(other_client, pid)
    assert asked.url.path == f"/m/{pid}/sign-in-code"  # type: ignore[attr-defined]
    done = enter_sign_in_code(other_client, pid, latest_sign_in_code(store))
    assert done.url.path == f"/m/{pid}" and "Lab results" in done.text  # type: ignore[attr-defined]


def test_the_sign_in_code_page_never_sends_a_code_on_get(client: TestClient, store: Store,
                                                         pid: str, clock: FakeClock) -> None:
    registered_and_signed_out(client, store, pid, clock)
    assert client.get(f"/m/{pid}/sign-in-code").status_code == 200
    assert sign_in_codes(store) == []


def test_a_sign_in_code_works_once(client: TestClient, other_client: TestClient, store: Store,
                                   pid: str, clock: FakeClock) -> None:
    registered_and_signed_out(client, store, pid, clock)
    ask_sign_in_code(client, pid)
    code = latest_sign_in_code(store)
    enter_sign_in_code(client, pid, code)
    again = enter_sign_in_code(other_client, pid, code)
    assert again.status_code == 400 and "no longer valid" in again.text  # type: ignore[attr-defined]


def test_a_sign_in_code_expires_after_15_minutes(client: TestClient, store: Store, pid: str,
                                                 clock: FakeClock) -> None:
    registered_and_signed_out(client, store, pid, clock)
    ask_sign_in_code(client, pid)
    clock.advance(15 * 60 + 1)
    late = enter_sign_in_code(client, pid, latest_sign_in_code(store))
    assert late.status_code == 400 and "no longer valid" in late.text  # type: ignore[attr-defined]


def test_a_sign_in_code_allows_five_tries(client: TestClient, store: Store, pid: str,
                                          clock: FakeClock) -> None:
    registered_and_signed_out(client, store, pid, clock)
    ask_sign_in_code(client, pid)
    code = latest_sign_in_code(store)
    wrong = "00000000" if code != "00000000" else "11111111"
    answers = [enter_sign_in_code(client, pid, wrong).text for _ in range(5)]  # type: ignore[attr-defined]
    assert "4 tries left" in answers[0] and "1 try left" in answers[3]
    assert "no longer valid" in answers[4]
    assert "no longer valid" in enter_sign_in_code(client, pid, code).text  # type: ignore[attr-defined]


def test_sign_in_codes_are_sent_at_most_once_a_minute(client: TestClient, store: Store,
                                                      pid: str, clock: FakeClock) -> None:
    registered_and_signed_out(client, store, pid, clock)
    ask_sign_in_code(client, pid)
    second = ask_sign_in_code(client, pid)
    assert "notice=wait" in str(second.url)  # type: ignore[attr-defined]
    assert len(sign_in_codes(store)) == 1


def test_the_sign_in_page_sends_a_code_without_telling_who_has_an_account(
        client: TestClient, store: Store, pid: str, clock: FakeClock) -> None:
    registered_and_signed_out(client, store, pid, clock)

    def ask(address: str) -> str:
        page = client.get("/login")
        return str(client.post("/login/code", data={"csrf_token": csrf(page),
                                                     "code_address": address}).text)

    known, unknown = ask(PATIENT), ask("nobody@nowhere.test")
    strip = re.compile(r'value="[0-9a-f]{64}"')
    assert strip.sub("", known.replace(PATIENT, "X")) == strip.sub(
        "", unknown.replace("nobody@nowhere.test", "X"))
    assert len(sign_in_codes(store)) == 1 and mails(store, "nobody@nowhere.test") == []
    page = client.get("/login")
    done = client.post("/login/code/check", data={
        "csrf_token": csrf(page), "address": PATIENT, "code": latest_sign_in_code(store)})
    assert done.url.path == "/" and "Your secure messages" in done.text


def test_sign_in_password_only_has_no_code_routes(config: Config, store: Store, pid: str,
                                                  clock: FakeClock) -> None:
    config.pickup.sign_in = "password"
    with TestClient(create_app(config, store)) as only_passwords:
        register(only_passwords, store, pid)
        only_passwords.cookies.clear()
        assert "sign-in code" not in only_passwords.get(f"/m/{pid}").text
        assert only_passwords.get(f"/m/{pid}/sign-in-code").status_code == 404


def test_sign_in_code_only_registers_without_a_password(config: Config, store: Store,
                                                        pid: str) -> None:
    config.pickup.sign_in = "code"
    with TestClient(create_app(config, store)) as codes_only:
        ask_code(codes_only, pid)
        assert 'name="password"' not in codes_only.get(f"/m/{pid}/verify").text
        done = submit_verification(codes_only, pid, latest_code(store, PATIENT))
        assert done.url.path == f"/m/{pid}"
        codes_only.cookies.clear()
        login = codes_only.get(f"/m/{pid}")
        assert 'name="password"' not in login.text and "Email me a sign-in code" in login.text


# -- name the sender, optional names, which password rule ------------------------------------

def test_the_start_page_names_organization_and_sender(client: TestClient, pid: str) -> None:
    page = client.get(f"/m/{pid}").text
    assert "St. Example Hospital" in page and SENDER in page
    assert "Sealgate" not in page


def test_names_are_optional_by_default(client: TestClient, store: Store, pid: str) -> None:
    ask_code(client, pid)
    done = submit_verification(client, pid, latest_code(store, PATIENT), first_name="",
                               last_name="")
    assert done.url.path == f"/m/{pid}" and count(store, "users") == 1


def test_require_name_asks_for_first_and_last_name(config: Config, store: Store,
                                                   pid: str) -> None:
    config.pickup.require_name = True
    with TestClient(create_app(config, store)) as named:
        ask_code(named, pid)
        missing = submit_verification(named, pid, latest_code(store, PATIENT), first_name=" ",
                                      last_name="")
        assert "Enter your first name" in missing.text and "Enter your last name" in missing.text
        assert count(store, "users") == 0


def test_the_weak_password_error_names_the_rule(client: TestClient, store: Store,
                                                pid: str) -> None:
    ask_code(client, pid)
    code = latest_code(store, PATIENT)
    own = submit_verification(client, pid, code, password="pat@patients.test",
                              password_confirm="pat@patients.test")
    common = submit_verification(client, pid, code, password="Password1",
                                 password_confirm="Password1")
    assert "your email address" in own.text and "most common passwords" not in own.text
    assert "most common passwords" in common.text


# -- export before deletion ------------------------------------------------------------------

def test_the_message_downloads_as_its_decrypted_original(client: TestClient, store: Store,
                                                         pid: str) -> None:
    register(client, store, pid)
    download = client.get(f"/m/{pid}/message.eml")
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("message/rfc822")
    assert "attachment" in download.headers["content-disposition"]
    with store.open_pickup_stream(pid) as stored:
        assert download.content == b"".join(stored.chunks())
    parsed = email.message_from_bytes(download.content, policy=email.policy.default)
    assert [part.get_filename() for part in parsed.iter_attachments()] == ["Résultats 2026.pdf"]


def test_the_conversation_downloads_with_its_replies(client: TestClient, store: Store,
                                                     pid: str) -> None:
    register(client, store, pid)
    page = client.get(f"/m/{pid}")
    client.post(f"/m/{pid}/reply", data={"csrf_token": csrf(page), "text": "Thanks, REPLY-77"})
    download = client.get(f"/m/{pid}/conversation.eml")
    assert download.status_code == 200
    assert int(download.headers["content-length"]) == len(download.content)
    parsed = email.message_from_bytes(download.content, policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/digest"
    parts = [part.get_content() for part in parsed.iter_parts()]
    assert len(parts) == 2 and "REPLY-77" in parts[1].get_body(("plain",)).get_content()


def test_an_export_is_audited(client: TestClient, store: Store, pid: str) -> None:
    register(client, store, pid)
    client.get(f"/m/{pid}/message.eml")
    assert "export" in [event.event for event in store.audit_events(pid)]


def test_export_needs_the_owner(client: TestClient, other_client: TestClient, store: Store,
                                pid: str) -> None:
    other = seed(store, to="other@elsewhere.test")
    register(client, store, pid)
    assert client.get(f"/m/{other}/message.eml").status_code == 404
    assert other_client.get(f"/m/{pid}/message.eml").headers.get(
        "content-type", "").startswith("text/html")


def test_the_message_page_shows_the_deletion_date_prominently(client: TestClient,
                                                               store: Store, pid: str) -> None:
    register(client, store, pid)
    page = client.get(f"/m/{pid}").text
    assert re.search(r'<h2 id="deletion-title">Deleted on \d\d \w+ \d{4}</h2>', page)
    assert f"/m/{pid}/message.eml" in page


# -- genuine-looking notifications ---------------------------------------------------------------

def notification(**overrides: str) -> email.message.EmailMessage:
    values = {"notify_from": "secure-mail@hospital.example", "sender": SENDER,
              "recipient": PATIENT, "link": "https://secure.hospital.example/m/abcdefghijklmnop",
              "organization": "St. Example Hospital"}
    values.update(overrides)
    raw = build_notification(expires=1_800_000_000, **values)  # type: ignore[arg-type]
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


def notification_text(message: email.message.EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def test_the_notification_text_is_not_hard_wrapped_mid_sentence() -> None:
    for line in notification_text(notification()).splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("http"):
            assert stripped[-1] in ".:!?", repr(line)


def test_the_notification_names_organization_and_sender() -> None:
    message = notification()
    text = notification_text(message)
    assert "St. Example Hospital" in text and SENDER in text
    assert "St. Example Hospital" in str(message["From"]) and SENDER in str(message["Subject"])


def test_the_notification_says_how_to_tell_it_is_genuine() -> None:
    text = notification_text(notification())
    assert "secure.hospital.example" in text
    assert "never ask for a password by email" in text


def test_the_notification_has_no_tracking() -> None:
    message = notification()
    html = message.get_body(("html",))
    assert html is not None
    content = str(html.get_content())
    assert "<img" not in content.lower()
    links = set(re.findall(r'href="([^"]+)"', content)) | set(
        re.findall(r"https?://\S+", notification_text(message)))
    assert {link.rstrip(".") for link in links} <= {
        "https://secure.hospital.example/m/abcdefghijklmnop", "https://secure.hospital.example"}
