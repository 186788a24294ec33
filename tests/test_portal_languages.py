"""English and Spanish: complete catalogs, the language of a page (Accept-Language, the
switcher on every page, the account's saved choice), mail and notifications in it, and
dates formatted for it."""

from __future__ import annotations

import email
import email.policy
import io
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from gateway.config import Config
from gateway.resources import TEMPLATES_DIR
from gateway.storage.store import Store
from gateway.vault.notify import build_notification, notification_language
from pickup import i18n
from pickup.app import create_app
from tests.portal_fixtures import (
    PATIENT,
    SENDER,
    TestClient,
    app,
    ask_code,
    client,
    clock,
    code_mails,
    config,
    csrf,
    other_client,
    pid,
    read_mail,
    register,
    sign_in,
    store,
    wakes,
)

__all__ = ["app", "client", "clock", "config", "other_client", "pid", "store", "wakes"]
ROOT = Path(__file__).resolve().parent.parent
LOCALE = TEMPLATES_DIR / "locale"
SPANISH = {"Accept-Language": "es-ES,es;q=0.9,en;q=0.5"}


def used_messages() -> set[str]:
    """Every msgid the templates and the portal's code use (the extraction babel.cfg names)."""
    method_map = [("pickup/**.py", "python"), ("gateway/vault/notify.py", "python"),
                  ("templates/**.html", "jinja2"), ("templates/mail/**.txt", "jinja2")]
    options = {"templates/**.html": {"trimmed": "true"},
               "templates/mail/**.txt": {"trimmed": "true"}}
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "localized_subject": (2,)}
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
            str(ROOT), method_map, options, keywords):
        found.add(message[0] if isinstance(message, tuple) else message)
    return found


def test_every_language_is_a_catalog_with_every_string_the_portal_uses() -> None:
    assert i18n.languages() == ("en", "es")
    used = used_messages()
    assert len(used) > 150
    for language in i18n.languages()[1:]:
        with open(LOCALE / language / "LC_MESSAGES" / "messages.po", "rb") as handle:
            catalog = read_po(handle)
        translated = {m.id[0] if isinstance(m.id, tuple) else m.id for m in catalog
                      if m.id and m.string and all(m.string) and not m.fuzzy}
        assert sorted(used - translated) == [], language


def test_committed_mo_files_match_their_po_files() -> None:
    for po_path in LOCALE.glob("*/LC_MESSAGES/messages.po"):
        with open(po_path, "rb") as handle:
            po = {str(tuple(m.id) if m.pluralizable else m.id): str(
            tuple(m.string) if m.pluralizable else m.string) for m in read_po(handle) if m.id}
        mo = {str(tuple(m.id) if m.pluralizable else m.id): str(
            tuple(m.string) if m.pluralizable else m.string)
              for m in read_mo(io.BytesIO(po_path.with_suffix(".mo").read_bytes())) if m.id}
        assert mo == po, f"{po_path}: run scripts/update_catalogs.py"


def test_accept_language_picks_spanish(client: TestClient, pid: str) -> None:
    page = client.get(f"/m/{pid}", headers=SPANISH)
    assert '<html lang="es">' in page.text and "Tiene un mensaje seguro" in page.text
    assert page.headers["content-language"] == "es"


def test_an_unsupported_language_falls_back_to_the_default(client: TestClient, pid: str) -> None:
    page = client.get(f"/m/{pid}", headers={"Accept-Language": "de-DE, fr;q=0.8"})
    assert '<html lang="en">' in page.text


def test_the_switcher_sets_a_cookie_for_every_page(client: TestClient, pid: str) -> None:
    start = client.get(f"/m/{pid}")
    assert 'action="/language"' in start.text
    switched = client.post("/language", data={"csrf_token": csrf(start), "language": "es",
                                              "next": f"/m/{pid}"})
    assert switched.url.path == f"/m/{pid}" and '<html lang="es">' in switched.text
    assert '<html lang="es">' in client.get("/login").text


def test_the_switcher_needs_the_csrf_token(client: TestClient, pid: str) -> None:
    client.get(f"/m/{pid}")
    assert client.post("/language", data={"language": "es"}).status_code == 403


def test_the_switcher_goes_back_only_to_this_site(client: TestClient, pid: str) -> None:
    start = client.get(f"/m/{pid}")
    away = client.post("/language", data={"csrf_token": csrf(start), "language": "es",
                                          "next": "//evil.example/"}, follow_redirects=False)
    assert away.headers["location"] == "/"


def test_the_choice_is_remembered_for_the_account(client: TestClient, other_client: TestClient,
                                                  store: Store, pid: str) -> None:
    register(client, store, pid)
    page = client.get(f"/m/{pid}")
    switched = client.post("/language", data={"csrf_token": csrf(page), "language": "es",
                                              "next": "/"})
    assert switched.status_code == 200, switched.text
    user = store.get_user(PATIENT)
    assert user is not None and user.language == "es"
    assert '<html lang="es">' in sign_in(other_client, pid).text  # a new browser, no cookie


def test_the_code_mail_is_in_the_page_language(client: TestClient, store: Store,
                                               pid: str) -> None:
    client.headers.update(SPANISH)
    ask_code(client, pid)
    assert code_mails(store, PATIENT) == []  # no English subject
    mail = read_mail(store, [w.message_id for w in store.waiting_recipients()
                             if w.rcpt == PATIENT][-1])
    assert "código de verificación" in str(mail["Subject"])
    assert mail["Content-Language"] == "es"


def test_dates_are_formatted_for_the_language() -> None:
    moment = 1_800_000_000  # 15 Jan 2027
    assert i18n.format_day(moment, "UTC", "en") == "15 Jan 2027"
    assert i18n.format_day(moment, "UTC", "es") == "15 ene 2027"


def test_spanish_pages_show_dates_in_spanish(client: TestClient, store: Store, pid: str) -> None:
    register(client, store, pid)  # in English: the account remembers English
    client.cookies.set(i18n.LANGUAGE_COOKIE, "es")  # until the switcher says Spanish
    page = client.get(f"/m/{pid}").text
    assert "Se elimina el" in page and "Descargar el mensaje (.eml)" in page


def test_notifications_use_the_default_language(config: Config, store: Store) -> None:
    language, zone = notification_language(store, PATIENT, "es")
    raw = build_notification(notify_from="n@hospital.example", sender=SENDER, recipient=PATIENT,
                             link="https://secure.hospital.example/m/x", expires=1_800_000_000,
                             organization="Hospital", language=language, time_zone=zone)
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert "Mensaje seguro de" in str(message["Subject"])
    assert "ene 2027" in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_notifications_use_the_recipients_saved_language(client: TestClient, store: Store,
                                                         pid: str) -> None:
    register(client, store, pid)
    store.set_language(PATIENT, "es")
    assert notification_language(store, PATIENT, "en")[0] == "es"


def test_default_language_must_be_a_shipped_catalog(tmp_path: Path) -> None:
    from gateway.config import ConfigError, load_config
    path = tmp_path / "sealgate.toml"
    path.write_text('[pickup]\ndefault_language = "xx"\n')
    try:
        load_config(path)
    except ConfigError as exc:
        assert "pickup.default_language" in str(exc)
    else:
        raise AssertionError("accepted")


def test_every_page_and_error_renders_in_spanish(config: Config, store: Store, pid: str) -> None:
    with TestClient(create_app(config, store), headers=SPANISH) as spanish:
        for path in ("/login", "/forgot", f"/m/{pid}", f"/m/{pid}/verify", "/m/" + "x" * 20,
                     "/reset/" + "y" * 43):
            page = spanish.get(path)
            assert '<html lang="es">' in page.text, path
            assert "Sign in" not in page.text and "Secure messages" not in page.text, path
