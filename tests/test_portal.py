"""The pickup portal over HTTP (Starlette's TestClient, a real Store): the first visit,
signing in and out, sessions, CSRF, error pages and security headers. Reading, replying
and the account have test modules of their own (test_portal_*.py)."""

from __future__ import annotations

import re
import stat
from email.message import EmailMessage
from pathlib import Path

import pytest
from starlette.applications import Starlette

from gateway.config import Config
from gateway.storage.store import Store
from pickup import render
from pickup.accounts import token_hash
from pickup.app import create_app
from pickup.security import BODY_CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY
from tests.portal_fixtures import (
    BODY_TOKEN,
    NOTIFY_FROM,
    OTHER,
    PASSWORD,
    PATIENT,
    PDF,
    PNG,
    SENDER,
    FakeClock,
    TestClient,
    app,
    ask_code,
    assert_security_headers,
    body_frame,
    client,
    clock,
    code_mails,
    config,
    count,
    csrf,
    latest_code,
    other_client,
    pid,
    read_mail,
    register,
    seed,
    sign_in,
    store,
    submit_verification,
    wakes,
)

__all__ = ["app", "client", "clock", "config", "other_client", "pid", "store", "wakes"]
SHOWN = "Lab results"  # the subject: on the message page, never before sign-in


# -- first visit ---------------------------------------------------------------------------

def test_get_never_sends_codes_or_creates_sessions(client: TestClient, store: Store, pid: str,
                                                   wakes: list[int]) -> None:
    # What a link scanner does: fetch every URL, perhaps twice, perhaps with HEAD.
    for url in (f"/m/{pid}", f"/m/{pid}", f"/m/{pid}/verify", "/", "/login"):
        assert client.get(url).status_code == 200
    assert client.head(f"/m/{pid}").status_code == 200
    assert code_mails(store, PATIENT) == []
    assert wakes == []
    assert count(store, "open_codes") == 0
    assert count(store, "sessions") == 0
    assert "sealgate_session" not in client.cookies


def test_message_link_shows_address_read_only(client: TestClient, pid: str) -> None:
    page = client.get(f"/m/{pid}")
    assert re.search(r'value="pat@patients\.test" readonly', page.text)
    assert "Email me a verification code" in page.text
    assert BODY_TOKEN not in page.text and "Lab results" not in page.text
    assert "St. Example Hospital" in page.text


def test_post_sends_one_code_without_the_message(client: TestClient, store: Store, pid: str,
                                                 wakes: list[int], clock: FakeClock) -> None:
    response = ask_code(client, pid)
    assert response.status_code == 200
    assert response.url.path == f"/m/{pid}/verify"
    assert "We have emailed a verification code" in response.text
    mails = code_mails(store, PATIENT)
    assert len(mails) == 1 and wakes == [1]

    raw = store.read_spool(mails[0])
    mail = read_mail(store, mails[0])
    assert mail["From"].addresses[0].addr_spec == NOTIFY_FROM
    assert mail["To"] == PATIENT
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["Date"] and mail["Message-ID"]
    for secret in (BODY_TOKEN, b"Lab results", b"Resultats", b"R\xc3\xa9sultats"):
        assert (secret.encode() if isinstance(secret, str) else secret) not in raw
    assert f"/m/{pid}/verify".encode() in raw
    # Sent as ordinary mail: not confidential, so it can never turn into a pickup itself.
    status = store.queued_message(mails[0])
    assert status is not None
    [route] = status.recipients
    assert not route.confidential and route.mode == "opportunistic"

    # Throttled: a second click within a minute sends nothing and says so.
    again = ask_code(client, pid)
    assert "less than a minute ago" in again.text
    assert len(code_mails(store, PATIENT)) == 1
    clock.advance(61)
    ask_code(client, pid)
    assert len(code_mails(store, PATIENT)) == 2


def test_register_with_wrong_then_right_code(client: TestClient, store: Store, pid: str) -> None:
    ask_code(client, pid)
    code = latest_code(store, PATIENT)
    wrong = "00000000" if code != "00000000" else "11111111"
    response = submit_verification(client, pid, wrong, first_name="Pat<b>", last_name="Ient")
    assert response.status_code == 400
    assert "That code is not right" in response.text
    assert 'value="Pat&lt;b&gt;"' in response.text  # kept, and escaped
    assert PASSWORD not in response.text  # passwords are never sent back
    assert count(store, "users") == 0 and count(store, "sessions") == 0

    response = submit_verification(client, pid, code)
    assert response.status_code == 200
    assert response.url.path == f"/m/{pid}"
    assert SHOWN in response.text and BODY_TOKEN in body_frame(client, pid).text
    credentials = store.get_credentials(PATIENT)
    assert credentials is not None
    assert (credentials.user.first_name, credentials.user.last_name) == ("Pat", "Ient")
    assert credentials.password_hash.startswith("$argon2id$")
    assert count(store, "sessions") == 1
    events = [e.event for e in store.audit_events(pid)]
    assert {"code-sent", "registered", "open"} <= set(events)
    opened = store.get_pickup(pid)
    assert opened is not None and opened.read_at is not None


def test_session_cookie_flags(client: TestClient, store: Store, pid: str) -> None:
    ask_code(client, pid)
    page = client.get(f"/m/{pid}/verify")
    response = client.post(f"/m/{pid}/verify", follow_redirects=False, data={
        "csrf_token": csrf(page), "code": latest_code(store, PATIENT), "first_name": "Pat",
        "last_name": "Ient", "password": PASSWORD, "password_confirm": PASSWORD})
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("sealgate_session=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # base_url is http here
    token = cookie.split(";")[0].split("=", 1)[1]
    assert len(token) >= 43  # 256 bits
    assert store.find_session(token) is None  # only a hash of the token is stored
    assert store.find_session(token_hash(token)) is not None


def test_code_is_single_use_expires_and_allows_five_tries(
        client: TestClient, other_client: TestClient, store: Store, pid: str,
        clock: FakeClock) -> None:
    # Five wrong tries and even the right code stops working.
    ask_code(client, pid)
    code = latest_code(store, PATIENT)
    wrong = "00000000" if code != "00000000" else "11111111"
    for left in (4, 3, 2, 1):
        assert f"({left} tr" in submit_verification(client, pid, wrong).text
    assert "no longer valid" in submit_verification(client, pid, wrong).text
    assert "no longer valid" in submit_verification(client, pid, code).text

    # 15 minutes, then expired.
    clock.advance(61)
    ask_code(client, pid)
    code = latest_code(store, PATIENT)
    clock.advance(15 * 60 + 1)
    assert "no longer valid" in submit_verification(client, pid, code).text

    # A new code replaces the old one; once used it never works again.
    ask_code(client, pid)
    code = latest_code(store, PATIENT)
    assert submit_verification(client, pid, code).url.path == f"/m/{pid}"
    reused = submit_verification(other_client, pid, code, password="another password",
                                 password_confirm="another password")
    # The address has an account now: a code never changes its password.
    assert reused.url.path == f"/m/{pid}" and "Sign in to read" in reused.text
    assert sign_in(other_client, pid, "another password").status_code == 400
    assert sign_in(other_client, pid).url.path == f"/m/{pid}"


def test_password_rules_are_explained(client: TestClient, store: Store, pid: str) -> None:
    ask_code(client, pid)
    code = latest_code(store, PATIENT)
    short = submit_verification(client, pid, code, password="short", password_confirm="short")
    assert short.status_code == 400 and "at least 8 characters" in short.text
    assert 'id="password-error"' in short.text
    mismatch = submit_verification(client, pid, code, password_confirm="different thing")
    assert 'id="password_confirm-error"' in mismatch.text and "not the same" in mismatch.text
    assert count(store, "users") == 0
    # Form errors did not use up the code.
    assert submit_verification(client, pid, code).url.path == f"/m/{pid}"


def test_forwarded_link_registers_only_the_original_address(
        client: TestClient, store: Store, pid: str) -> None:
    page = client.get(f"/m/{pid}")
    client.post(f"/m/{pid}/code", data={"csrf_token": csrf(page), "address": "thief@evil.test"})
    assert code_mails(store, "thief@evil.test") == []
    assert len(code_mails(store, PATIENT)) == 1
    verify = client.get(f"/m/{pid}/verify")
    client.post(f"/m/{pid}/verify", data={
        "csrf_token": csrf(verify), "address": "thief@evil.test",
        "code": latest_code(store, PATIENT),
        "first_name": "T", "last_name": "Hief", "password": PASSWORD, "password_confirm": PASSWORD})
    assert store.get_user("thief@evil.test") is None and count(store, "users") == 1


# -- reading -------------------------------------------------------------------------------

def test_message_view_and_attachment_download(client: TestClient, store: Store, pid: str) -> None:
    page = register(client, store, pid)
    assert "Dr. Doctor" in page.text and PATIENT in page.text
    assert "23 Nov 2026, 15:04 UTC" in page.text
    assert "Résultats 2026.pdf" in page.text
    link = re.search(rf'href="(/m/{pid}/attachments/\d+)"[^>]*>Résultats 2026\.pdf', page.text)
    assert link

    download = client.get(link.group(1))
    assert download.status_code == 200
    assert download.content == PDF
    assert download.headers["content-type"] == "application/pdf"
    assert download.headers["content-disposition"] == (
        "attachment; filename=\"R_sultats 2026.pdf\"; filename*=UTF-8''R%C3%A9sultats%202026.pdf")
    assert download.headers["x-content-type-options"] == "nosniff"
    assert download.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    audit = [e for e in store.audit_events(pid) if e.event == "download"]
    assert audit[0].detail == "Résultats 2026.pdf" and audit[0].client
    assert client.get(f"/m/{pid}/attachments/99").status_code == 404


def test_html_body_is_sanitized_and_framed(client: TestClient, store: Store, pid: str) -> None:
    page = register(client, store, pid).text
    frame = re.search(r'<iframe class="message-frame" src="(/m/[^"]+/body)"([^>]*)>', page)
    assert frame
    sandbox = 'sandbox="allow-same-origin allow-popups allow-popups-to-escape-sandbox"'
    assert sandbox in frame.group(2)
    assert "allow-scripts" not in page
    assert BODY_TOKEN not in page  # the HTML is only in the frame
    response = client.get(frame.group(1))
    assert_security_headers(response, policy=BODY_CONTENT_SECURITY_POLICY)
    assert response.headers["x-frame-options"] == "SAMEORIGIN"
    body = response.text.split("<body>", 1)[1]
    assert BODY_TOKEN in body
    assert "<script" not in body and "alert(" not in body
    assert "onerror" not in body
    assert "tracker.example" not in body
    assert "javascript:" not in body
    assert "click me" in body  # the text stays, the link goes
    assert '<a href="https://safe.example/page"' in body and "noopener" in body
    inline = re.search(rf'<img src="(/m/{pid}/inline/\d+)"', body)
    assert inline, "the cid: image is served from the portal"
    image = client.get(inline.group(1))
    assert image.status_code == 200 and image.content == PNG
    assert image.headers["content-type"] == "image/png"


def test_subject_is_escaped(client: TestClient, store: Store, pid: str) -> None:
    page = register(client, store, pid).text
    assert "&lt;script&gt;alert(" in page
    assert '<script>alert("subject")' not in page


def test_other_users_get_404_for_this_message(client: TestClient, other_client: TestClient,
                                              store: Store, pid: str) -> None:
    register(client, store, pid)
    other_pid = seed(store, OTHER)
    assert register(other_client, store, other_pid, OTHER).url.path == f"/m/{other_pid}"

    unknown = other_client.get("/m/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    foreign = other_client.get(f"/m/{pid}")
    assert unknown.status_code == foreign.status_code == 404
    assert unknown.text == foreign.text  # nothing tells the two apart
    assert SHOWN not in foreign.text
    for url in (f"/m/{pid}/attachments/1", f"/m/{pid}/attachments/4", f"/m/{pid}/inline/4",
                f"/m/{pid}/verify"):
        response = other_client.get(url)
        assert response.status_code == 404, url
        assert "%PDF" not in response.text
    inbox = other_client.get("/").text
    assert f"/m/{other_pid}" in inbox and f"/m/{pid}" not in inbox


def test_sign_in_with_password(client: TestClient, other_client: TestClient, store: Store,
                               pid: str) -> None:
    register(client, store, pid)
    page = other_client.get(f"/m/{pid}")
    assert "Sign in to read your secure message" in page.text
    assert re.search(r'value="pat@patients\.test" readonly', page.text)

    wrong = sign_in(other_client, pid, "wrong password")
    assert wrong.status_code == 400 and "not right" in wrong.text
    assert SHOWN not in wrong.text

    right = sign_in(other_client, pid)
    assert right.url.path == f"/m/{pid}" and SHOWN in right.text

    # The plain /login page, with an editable address.
    other_client.cookies.clear()
    login = other_client.get("/login")
    assert 'name="address"' in login.text and "readonly" not in login.text.split("<form")[1]
    bad = other_client.post("/login", data={"csrf_token": csrf(login), "address": PATIENT,
                                            "password": "nope nope"})
    assert bad.status_code == 400 and 'value="pat@patients.test"' in bad.text
    good = other_client.post("/login", data={
        "csrf_token": csrf(login), "address": " Pat@Patients.TEST ", "password": PASSWORD})
    assert good.url.path == "/" and "Your secure messages" in good.text


def test_every_sign_in_gets_a_new_token(client: TestClient, store: Store, pid: str) -> None:
    page = register(client, store, pid)
    first = client.cookies["sealgate_session"]
    # Signing in again while signed in replaces the old session.
    again = client.post("/login", data={"csrf_token": csrf(page), "address": PATIENT,
                                        "password": PASSWORD})
    assert again.url.path == "/"
    second = client.cookies["sealgate_session"]
    assert second != first
    assert count(store, "sessions") == 1
    client.cookies.delete("sealgate_session")
    sign_in(client, pid)
    assert client.cookies["sealgate_session"] not in (first, second)
    assert count(store, "sessions") == 2  # two browsers, say


def test_a_code_never_resets_a_password(client: TestClient, other_client: TestClient,
                                        store: Store, pid: str, clock: FakeClock) -> None:
    register(client, store, pid)
    # Registered: the link signs in; the code pages send back to it, and send nothing.
    assert other_client.get(f"/m/{pid}/verify", follow_redirects=False).status_code == 303
    clock.advance(61)
    before = len(code_mails(store, PATIENT))
    assert "Sign in to read" in ask_code(other_client, pid).text
    assert len(code_mails(store, PATIENT)) == before
    signin = other_client.get(f"/m/{pid}")
    assert f'href="/m/{pid}/forgot"' in signin.text


def test_wrong_passwords_pause_sign_in(client: TestClient, other_client: TestClient,
                                       store: Store, pid: str) -> None:
    register(client, store, pid)
    for _ in range(10):
        sign_in(other_client, pid, "wrong password")
    paused = sign_in(other_client, pid)
    assert paused.status_code == 400 and "Too many wrong passwords" in paused.text


def test_signed_out_home_is_the_login_form(client: TestClient) -> None:
    home = client.get("/")
    assert home.status_code == 200 and 'name="password"' in home.text


# -- sessions and CSRF ---------------------------------------------------------------------

def test_logout_ends_the_session_on_the_server(client: TestClient, store: Store, pid: str,
                                               app: Starlette) -> None:
    page = register(client, store, pid)
    token = client.cookies["sealgate_session"]
    response = client.post("/logout", data={"csrf_token": csrf(page)})
    assert response.url.path == "/login" and "You have signed out" in response.text
    assert count(store, "sessions") == 0
    with TestClient(app) as replay:
        old = replay.get(f"/m/{pid}", headers={"Cookie": f"sealgate_session={token}"})
    assert old.status_code == 200 and SHOWN not in old.text
    assert "Sign in" in old.text


def test_session_idle_timeout(client: TestClient, store: Store, pid: str,
                              clock: FakeClock) -> None:
    register(client, store, pid)
    clock.advance(29 * 60)
    assert SHOWN in client.get(f"/m/{pid}").text  # activity keeps it alive
    clock.advance(29 * 60)
    assert SHOWN in client.get(f"/m/{pid}").text
    clock.advance(31 * 60)
    expired = client.get(f"/m/{pid}")
    assert SHOWN not in expired.text and "not used for a while" in expired.text
    assert count(store, "sessions") == 0


def test_post_without_valid_csrf_is_403(client: TestClient, store: Store, pid: str) -> None:
    client.get(f"/m/{pid}")  # has the cookie, but sends no field
    for url, data in ((f"/m/{pid}/code", {}), ("/login", {"address": PATIENT, "password": "x"}),
                      (f"/m/{pid}/code", {"csrf_token": "0" * 64}), ("/logout", {})):
        response = client.post(url, data=data)
        assert response.status_code == 403, url
        assert "reload the page" in response.text
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    # A token from another browser (other cookie) does not pass either.
    token = csrf(client.get(f"/m/{pid}"))
    with TestClient(client.app) as stranger:
        assert stranger.post(f"/m/{pid}/code", data={"csrf_token": token}).status_code == 403
    assert code_mails(store, PATIENT) == []


def test_csrf_cookie_flags(client: TestClient, pid: str) -> None:
    cookie = client.get(f"/m/{pid}").headers["set-cookie"]
    assert cookie.startswith("sealgate_csrf=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie


def test_https_base_url_sets_secure_cookies_and_hsts(config: Config, store: Store,
                                                     pid: str) -> None:
    config.pickup.base_url = "https://portal.example"
    with TestClient(create_app(config, store), base_url="https://testserver") as secure:
        page = secure.get(f"/m/{pid}")
        assert "Secure" in page.headers["set-cookie"]
        assert page.headers["strict-transport-security"].startswith("max-age=")


# -- errors and headers --------------------------------------------------------------------

def test_unknown_and_expired_ids_are_a_friendly_404(client: TestClient, store: Store,
                                                    clock: FakeClock) -> None:
    for url in ("/m/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "/m/x", "/m/%2e%2e", "/nowhere"):
        response = client.get(url)
        assert response.status_code == 404
        assert "This message is not available" in response.text
        assert "Traceback" not in response.text
    short_lived = seed(store, days=0.5)
    assert client.get(f"/m/{short_lived}").status_code == 200
    clock.advance(0.5 * 86400 + 1)
    expired = client.get(f"/m/{short_lived}")
    assert expired.status_code == 404 and "This message is not available" in expired.text
    assert client.post(f"/m/{short_lived}/code",
                       data={"csrf_token": csrf(client.get("/login"))}).status_code == 404


def test_server_error_page_has_no_traceback(app: Starlette, store: Store, pid: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(pickup_id: str) -> None:
        raise RuntimeError("database on fire")

    monkeypatch.setattr(app.state.portal.threads, "get", broken)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get(f"/m/{pid}")
    assert response.status_code == 500
    assert "Something went wrong" in response.text
    assert "database on fire" not in response.text and "Traceback" not in response.text
    assert_security_headers(response)


def test_security_headers_on_every_response(client: TestClient, store: Store, pid: str) -> None:
    assert_security_headers(client.get(f"/m/{pid}"))
    assert_security_headers(client.get("/login"))
    assert_security_headers(client.get("/m/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"))
    assert_security_headers(client.post("/login", data={}))  # 403
    assert_security_headers(client.get("/logout"))  # 405
    assert_security_headers(client.get("/static/portal.css"), cache="no-cache")
    assert_security_headers(client.get(f"/m/{pid}/attachments/1", follow_redirects=False))
    page = register(client, store, pid)
    assert_security_headers(page)
    assert_security_headers(client.get(f"/m/{pid}/attachments/4"))
    assert_security_headers(client.get("/"))
    # No inline script or style in any page: the CSP would block it anyway.
    for html in (page.text, client.get("/").text, client.get("/account").text):
        assert re.findall(r"<script[^>]*>", html) == ['<script src="/static/portal.js" defer>']
        assert "style=" not in html and "<style" not in html


def test_stylesheet_is_served(client: TestClient) -> None:
    response = client.get("/static/portal.css")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")
    assert "@media" in response.text


def test_portal_secret_is_created_private(config: Config, app: Starlette) -> None:
    secret = Path(config.storage.dir) / "portal.secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert len(secret.read_bytes()) == 32


# -- rendering details ---------------------------------------------------------------------

def test_content_disposition_ascii_fallback() -> None:
    assert render.content_disposition('a"b\\c.txt') == (
        "attachment; filename=\"a_b_c.txt\"; filename*=UTF-8''a%22b%5Cc.txt")


def test_sanitize_drops_remote_images_and_keeps_text() -> None:
    cleaned = render.sanitize_html(
        '<div style="color:red" class="x" id="y"><img alt="a>b" src="http://t.example/p.gif">'
        '<img src="cid:known" alt="ok"><a href="/logout">rel</a><form><button>b</button></form>'
        '<style>body{display:none}</style>text</div>',
        lambda cid: "/m/x/inline/2" if cid == "known" else None)
    assert cleaned.startswith('<div><img src="/m/x/inline/2" alt="ok"><a ')
    assert cleaned.endswith(">rel</a>btext</div>")
    assert "href" not in cleaned  # relative links go: they would point into the portal
    assert cleaned.count("<img") == 1
    assert 'target="_blank"' in cleaned and 'rel="noopener noreferrer nofollow"' in cleaned


def test_plain_text_message_is_escaped_and_linked(client: TestClient, store: Store) -> None:
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = PATIENT
    message["Subject"] = "Plain"
    message.set_content("<b>not bold</b> see https://example.org/x\n")
    pickup_id = seed(store, raw=message.as_bytes())
    page = register(client, store, pickup_id).text
    assert "&lt;b&gt;not bold&lt;/b&gt;" in page
    assert 'href="https://example.org/x"' in page


# -- every route -------------------------------------------------------------------------------

def route_urls(app: Starlette, method: str, pickup_id: str) -> list[str]:
    params = {"pickup_id": pickup_id, "number": "1", "token": "t" * 43, "path": "/portal.css"}
    urls = []
    for route in app.routes:
        methods = getattr(route, "methods", None) or {"GET"}
        if method in methods:
            path = str(getattr(route, "path", ""))
            urls.append(re.sub(r"\{(\w+)(:\w+)?\}", lambda m: params[m.group(1)], path))
    return urls


def test_no_get_sends_mail_spends_a_token_or_signs_in(client: TestClient, other_client: TestClient,
                                                      app: Starlette, store: Store, pid: str,
                                                      wakes: list[int]) -> None:
    register(client, store, pid)
    other_client.post(f"/m/{pid}/forgot", data={"csrf_token": csrf(other_client.get("/login"))})
    state = {table: count(store, table) for table in ("messages", "sessions", "open_codes")}
    resets = store.portal_counts().open_resets
    wakes.clear()
    with TestClient(app) as scanner:  # what a link scanner does: fetch everything, signed out
        for url in route_urls(app, "GET", pid) + [f"/m/{pid}/verify", f"/m/{pid}/forgot"]:
            assert scanner.get(url).status_code in (200, 204, 303, 404), url
            assert scanner.head(url).status_code in (200, 204, 303, 404, 405), url
        assert "sealgate_session" not in scanner.cookies
    assert state == {table: count(store, table) for table in state} and wakes == []
    assert store.portal_counts().open_resets == resets == 1


def test_every_post_needs_the_csrf_token(client: TestClient, app: Starlette, store: Store,
                                         pid: str) -> None:
    register(client, store, pid)  # signed in, so each form would otherwise do its work
    mails_before = count(store, "messages")
    for url in route_urls(app, "POST", pid):
        for data in ({}, {"csrf_token": "0" * 64}):
            response = client.post(url, data={**data, "text": "x", "address": PATIENT,
                                               "password": PASSWORD, "time_zone": "UTC"})
            assert response.status_code == 403, url
            assert "reload the page" in response.text
    assert count(store, "messages") == mails_before
    assert client.get("/").status_code == 200 and "Your secure messages" in client.get("/").text
