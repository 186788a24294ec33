"""Accounts in the portal: password rules and hashing, the reset link, changing the
password, signing out everywhere, notices to the address, and sign-in throttling that
tells no one which addresses exist."""

from __future__ import annotations

import re

import pytest
from starlette.applications import Starlette

from gateway.storage.store import Store
from pickup.passwords import common_passwords, password_problem
from tests.portal_fixtures import (
    OTHER,
    PASSWORD,
    PATIENT,
    FakeClock,
    Page,
    TestClient,
    app,
    client,
    clock,
    config,
    count,
    csrf,
    login,
    mail_text,
    mails,
    other_client,
    pid,
    register,
    seed,
    sign_in,
    store,
    submit_verification,
    wakes,
)

__all__ = ["app", "client", "clock", "config", "other_client", "pid", "store", "wakes"]

NEW_PASSWORD = "a brand new passphrase"


def reset_link(store: Store, address: str = PATIENT) -> str:
    found = re.search(r"https?://\S+(/reset/[A-Za-z0-9_-]+)",
                      mail_text(store, mails(store, address, "Reset your password")[0]))
    assert found
    return found.group(1)


def ask_reset(client: TestClient, pickup_id: str | None = None, address: str = PATIENT) -> Page:
    url = f"/m/{pickup_id}/forgot" if pickup_id else "/forgot"
    page = client.get(url)
    return client.post(url, data={"csrf_token": csrf(page), "address": address})


def set_new_password(client: TestClient, link: str, password: str = NEW_PASSWORD,
                     confirmation: str | None = None) -> Page:
    page = client.get(link)
    if page.status_code != 200:  # a spent link shows no form: post anyway, with a fresh token
        page = client.get("/login")
    return client.post(link, data={"csrf_token": csrf(page), "password": password,
                                   "password_confirm": password if confirmation is None
                                   else confirmation})


# -- password rules ----------------------------------------------------------------------------

def test_password_rules() -> None:
    assert password_problem("short", "short") == ("password",
                                                  "Too short: use at least 8 characters.")
    assert password_problem("x" * 64, "x" * 64) is None  # long passphrases welcome...
    assert password_problem("y" * 128, "y" * 128) is None
    assert password_problem("y" * 129, "y" * 129)[0] == "password"  # type: ignore[index]
    assert password_problem("alllowercaseletters", "alllowercaseletters") is None  # no rules
    for common in ("password", "Password1", "iloveyou", "12345678", "qwertyuiop"):
        problem = password_problem(common, common)
        assert problem and "most common passwords" in problem[1], common
    assert password_problem("pat@patients.test", "pat@patients.test", PATIENT)
    assert len(common_passwords()) == 10_000


def test_common_password_is_refused_at_registration(client: TestClient, store: Store,
                                                    pid: str) -> None:
    from tests.portal_fixtures import ask_code, latest_code
    ask_code(client, pid)
    response = submit_verification(client, pid, latest_code(store, PATIENT),
                                   password="Password1", password_confirm="Password1")
    assert response.status_code == 400
    error = re.search(r'id="password-error">(.*?)</p>', response.text, re.S)
    assert error and "most common passwords" in error.group(1)
    assert count(store, "users") == 0


def test_passwords_are_hashed_with_argon2id(client: TestClient, store: Store, pid: str) -> None:
    register(client, store, pid)
    credentials = store.get_credentials(PATIENT)
    assert credentials is not None
    stored = credentials.password_hash
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert PASSWORD not in stored


# -- notices ---------------------------------------------------------------------------------

def test_registration_sends_a_notice(client: TestClient, store: Store, pid: str) -> None:
    register(client, store, pid)
    [notice] = mails(store, PATIENT, "Your account for")
    text = mail_text(store, notice)
    assert "was set up" in text and "http://127.0.0.1:8025/login" in text
    assert "HEMOGLOBIN" not in text and "Lab results" not in text


# -- forgot password -------------------------------------------------------------------------

def test_reset_link_from_the_message_page(client: TestClient, other_client: TestClient,
                                          store: Store, pid: str, wakes: list[int]) -> None:
    register(client, store, pid)
    page = other_client.get(f"/m/{pid}/forgot")
    assert re.search(r'value="pat@patients\.test" readonly', page.text)
    wakes.clear()
    sent = ask_reset(other_client, pid)
    assert "Check your email" in sent.text and wakes == [1]
    link = reset_link(store)
    assert len(link.rsplit("/", 1)[1]) >= 43  # 256 bits

    # Opening the link (as scanners do, twice) spends nothing and signs no one in.
    for _ in range(2):
        form = other_client.get(link)
        assert form.status_code == 200 and "Choose a new password" in form.text
    assert "sealgate_session" not in other_client.cookies
    mismatch = set_new_password(other_client, link, confirmation="something else")
    assert mismatch.status_code == 400 and 'id="password_confirm-error"' in mismatch.text

    done = set_new_password(other_client, link)
    assert done.url.path == f"/m/{pid}" and "Lab results" in done.text
    # The old password and every old session are gone; the link is spent.
    assert "Lab results" not in client.get(f"/m/{pid}").text
    assert sign_in(client, pid).status_code == 400
    assert sign_in(client, pid, NEW_PASSWORD).url.path == f"/m/{pid}"
    again = client.get(link)
    assert again.status_code == 404 and "no longer works" in again.text
    assert "no longer works" in set_new_password(other_client, link, "yet another one!").text
    assert mails(store, PATIENT, "was changed")


def test_forgot_page_says_the_same_for_unknown_addresses(client: TestClient, store: Store,
                                                         pid: str, clock: FakeClock) -> None:
    register(client, store, pid)
    known = ask_reset(client, address=PATIENT)
    unknown = ask_reset(client, address="nobody@nowhere.test")
    assert known.status_code == unknown.status_code == 200
    assert known.text.replace(PATIENT, "X") == unknown.text.replace("nobody@nowhere.test", "X")
    assert len(mails(store, PATIENT, "Reset your password")) == 1
    assert mails(store, "nobody@nowhere.test") == []
    # Throttled quietly: a second request within a minute sends nothing more.
    assert "Check your email" in ask_reset(client, address=PATIENT).text
    assert len(mails(store, PATIENT, "Reset your password")) == 1
    bad = ask_reset(client, address="not an address")
    assert bad.status_code == 400 and 'id="address-error"' in bad.text


def test_reset_link_expires_after_30_minutes(client: TestClient, store: Store, pid: str,
                                             clock: FakeClock) -> None:
    register(client, store, pid)
    ask_reset(client, address=PATIENT)
    link = reset_link(store)
    clock.advance(31 * 60)
    assert client.get(link).status_code == 404
    assert set_new_password(client, link).status_code == 404
    # Only the newest link works.
    ask_reset(client, address=PATIENT)
    older = reset_link(store)
    clock.advance(61)
    ask_reset(client, address=PATIENT)
    assert client.get(older).status_code == 404
    assert client.get(reset_link(store)).status_code == 200
    assert client.get("/reset/short").status_code == 404


# -- signed in: password change and sessions -------------------------------------------------

def test_change_password_rotates_and_ends_other_sessions(
        client: TestClient, other_client: TestClient, store: Store, pid: str) -> None:
    register(client, store, pid)
    login(other_client)
    assert count(store, "sessions") == 2
    before = client.cookies["sealgate_session"]
    account = client.get("/account")
    wrong = client.post("/account/password", data={
        "csrf_token": csrf(account), "current_password": "not it", "password": NEW_PASSWORD,
        "password_confirm": NEW_PASSWORD})
    assert wrong.status_code == 400 and 'id="current_password-error"' in wrong.text
    common = client.post("/account/password", data={
        "csrf_token": csrf(account), "current_password": PASSWORD, "password": "sunshine",
        "password_confirm": "sunshine"})
    assert common.status_code == 400 and 'id="password-error"' in common.text

    done = client.post("/account/password", data={
        "csrf_token": csrf(account), "current_password": PASSWORD, "password": NEW_PASSWORD,
        "password_confirm": NEW_PASSWORD})
    assert done.url.path == "/account" and "Your password was changed" in done.text
    assert client.cookies["sealgate_session"] != before
    assert count(store, "sessions") == 1
    assert "Your secure messages" not in other_client.get("/").text
    assert login(other_client, password=PASSWORD).status_code == 400
    assert login(other_client, password=NEW_PASSWORD).url.path == "/"
    assert "was changed" in mail_text(store, mails(store, PATIENT, "was changed")[0])


def test_sign_out_everywhere(client: TestClient, other_client: TestClient, store: Store,
                             pid: str) -> None:
    register(client, store, pid)
    login(other_client)
    account = client.get("/account")
    out = client.post("/account/sign-out-everywhere", data={"csrf_token": csrf(account)})
    assert out.url.path == "/login" and "every device" in out.text
    assert count(store, "sessions") == 0
    assert "Your secure messages" not in other_client.get("/").text


def test_account_page_needs_sign_in(client: TestClient) -> None:
    response = client.get("/account", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"


# -- sign-in throttling ------------------------------------------------------------------------

def test_throttle_per_account_does_not_reveal_the_address(
        client: TestClient, other_client: TestClient, store: Store, pid: str,
        clock: FakeClock) -> None:
    register(client, store, pid)
    answers = {}
    for address in (PATIENT, "nobody@patients.test"):
        for _ in range(10):
            wrong = login(other_client, address, "wrong password")
            assert "not right" in wrong.text
        answers[address] = login(other_client, address, PASSWORD)
    known, unknown = answers[PATIENT], answers["nobody@patients.test"]
    assert known.status_code == unknown.status_code == 400
    assert "Too many wrong passwords for this address" in known.text
    assert known.text.replace(PATIENT, "X") == unknown.text.replace("nobody@patients.test", "X")
    # The owner can still get in with a reset link; or wait.
    clock.advance(15 * 60 + 1)
    assert login(other_client, PATIENT, PASSWORD).url.path == "/"


def test_throttle_per_client_address(app: Starlette, store: Store, pid: str) -> None:
    with TestClient(app, client=("203.0.113.7", 4000)) as guesser, \
            TestClient(app, client=("198.51.100.1", 4000)) as elsewhere:
        for number in range(30):
            login(guesser, f"user{number}@patients.test", "guess guess")
        register(elsewhere, store, pid)
        blocked = login(guesser, PATIENT, PASSWORD)
        assert blocked.status_code == 400 and "for your network" in blocked.text
        assert login(elsewhere, PATIENT, PASSWORD).url.path == "/"


@pytest.mark.parametrize("address", [PATIENT, OTHER])
def test_wrong_password_and_unknown_address_read_the_same(client: TestClient, store: Store,
                                                         pid: str, address: str) -> None:
    seed(store, OTHER)
    register(client, store, pid)
    client.cookies.clear()
    response = login(client, address, "wrong password")
    assert response.status_code == 400
    assert "The email address or password is not right" in response.text
