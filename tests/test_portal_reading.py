"""Reading in the portal over HTTP: the inbox, the message page with its sandboxed body
frame, the print view, time zones, branding, template overrides, and an XSS corpus in
HTML bodies and subjects."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from gateway.config import Config
from gateway.storage.store import Store
from pickup import render
from pickup.app import create_app
from pickup.security import BODY_CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY
from tests.portal_fixtures import (
    BODY_TOKEN,
    OTHER,
    PATIENT,
    FakeClock,
    TestClient,
    app,
    assert_security_headers,
    body_frame,
    client,
    clock,
    config,
    csrf,
    other_client,
    pid,
    plain_message,
    reading,
    register,
    secure_message,
    seed,
    store,
    wakes,
)

__all__ = ["app", "client", "clock", "config", "other_client", "pid", "reading", "store", "wakes"]
pytestmark = pytest.mark.usefixtures("reading")

# Each one has tricked some sanitizer, browser or mail client at some point.
XSS_BODIES = [
    '<script>alert(1)</script>',
    '<img src=x onerror=alert(1)>',
    '<svg onload=alert(1)>',
    '<svg><script>alert(1)</script></svg>',
    '<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>',
    '<iframe src="javascript:alert(1)"></iframe>',
    '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    '<object data="javascript:alert(1)"></object>',
    '<embed src="data:text/html,<script>alert(1)</script>">',
    '<a href="javascript:alert(1)">j1</a>',
    '<a href="JaVaScRiPt:alert(1)">j2</a>',
    '<a href="&#106;avascript:alert(1)">j3</a>',
    '<a href="java\tscript:alert(1)">j4</a>',
    '<a href=" javascript:alert(1)">j5</a>',
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">d</a>',
    '<a href="vbscript:msgbox(1)">v</a>',
    '<a href="/logout">relative</a>',
    '<form action="https://evil.example/"><input name=q>'
    '<button formaction="javascript:alert(1)">go</button></form>',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    '<base href="https://evil.example/">',
    '<link rel=stylesheet href="https://evil.example/x.css">',
    '<style>@import "https://evil.example/x.css"; body{background:url(https://evil.example/t.gif)}</style>',
    '<div style="background-image:url(https://evil.example/t.gif)">bg</div>',
    '<div style="width: expression(alert(1))">ie</div>',
    '<div style="color:red;background:u\\72l(https://evil.example/t.gif)">escaped url</div>',
    '<p style="color:red" onclick="alert(1)">click</p>',
    '<img src="https://evil.example/t.gif">',
    '<img src="//evil.example/t.gif">',
    '<img srcset="https://evil.example/t.gif 1x">',
    '<img src="cid:unknown@x">',
    '<img src="data:image/svg+xml,<svg onload=alert(1)>">',
    '<video src=x onerror=alert(1)></video>',
    '<audio src=x onerror=alert(1)></audio>',
    '<body onload=alert(1)>',
    '<input autofocus onfocus=alert(1)>',
    '<details open ontoggle=alert(1)>',
    '<table background="https://evil.example/t.gif"><tr><td>t</td></tr></table>',
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>"></noscript>',
    '<!--<img src=x onerror=alert(1)>-->',
    '<img style="x:><script>alert(1)</script>" src="cid:logo@hospital.example">',
    '"><script>alert(1)</script>',
    '<scr<script>ipt>alert(1)</script>',
    '<a href="https://ok.example" target="_top">top</a>',
    '<table><tr><td bgcolor="javascript:alert(1)">bg</td></tr></table>',
    '<font face="x" color="red" onmouseover="alert(1)">f</font>',
    '<xmp><img src=x onerror=alert(1)></xmp>',
    '<template><img src=x onerror=alert(1)></template>',
    '<a href="https://ok.example" ping="https://evil.example/ping">ping</a>',
]
XSS_SUBJECTS = [
    '<script>alert(1)</script>',
    '"><img src=x onerror=alert(1)>',
    "{{ 7 * 7 }} {% raw %}",
    "=?utf-8?b?PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==?=",  # <script>alert(1)</script>, encoded
    "</title><script>alert(1)</script>",
]
ALLOWED_TAGS = render.ALLOWED_TAGS | render.FRAME_TAGS


class TagCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def assert_harmless(document: str, pickup_id: str) -> None:
    """Every tag and attribute of DOCUMENT (the body frame) is on the allow-list, and no URL
    in it runs script or leaves the portal except a link the reader clicks."""
    body = document.split("<body>", 1)[1]  # the head is the portal's own
    assert "<script" not in body.lower()
    parser = TagCollector()
    parser.feed(body)
    for tag, attrs in parser.tags:
        assert tag in ALLOWED_TAGS, tag
        for name, value in attrs:
            value = value or ""
            assert not name.startswith("on"), (tag, name)
            assert name not in ("srcset", "srcdoc", "background", "action", "formaction",
                                "ping", "http-equiv"), (tag, name)
            assert "javascript" not in value.lower() and "vbscript" not in value.lower()
            if name == "href":
                assert re.match(r"(https?:|mailto:)", value), value
            if name == "src":
                assert value.startswith(f"/m/{pickup_id}/inline/"), value
            if name == "style":
                assert "url" not in value.lower() and "expression" not in value.lower()
            if name == "target":
                assert value == "_blank"


def message_with(html: str, subject: str = "XSS corpus") -> bytes:
    return secure_message(subject=subject, html=html)


# -- inbox and message page ------------------------------------------------------------------

def test_inbox_newest_first_unread_and_deletion_date(client: TestClient, store: Store,
                                                     clock: FakeClock, pid: str) -> None:
    clock.advance(60)
    newer = seed(store, raw=secure_message(subject="Second letter"))
    register(client, store, pid)  # opens the older one
    inbox = client.get("/")
    assert inbox.status_code == 200
    assert inbox.text.index(f"/m/{newer}") < inbox.text.index(f"/m/{pid}")
    items = inbox.text.split('<li class="inbox-item')[1:]
    assert len(items) == 2
    assert "unread" in items[0] and "New" in items[0] and "Second letter" in items[0]
    assert "unread" not in items[1]
    expires = store.get_pickup(newer).expires  # type: ignore[union-attr]
    assert f"deleted on {render_day(expires)}" in items[0]
    assert inbox.headers["cache-control"] == "no-store"


def render_day(moment: float, zone: str = "UTC") -> str:
    from pickup.timezones import format_day
    return format_day(moment, zone)


def test_message_page_shows_headers_attachments_and_frame(client: TestClient, store: Store,
                                                          pid: str) -> None:
    page = register(client, store, pid).text
    assert "Dr. Doctor &lt;doctor@hospital.example&gt;" in page and PATIENT in page
    assert "23 Nov 2026, 15:04 UTC" in page
    assert "Résultats 2026.pdf" in page and "360 bytes" in page
    assert "logo.png" not in page  # shown in the text, not listed as a file
    assert re.search(rf'href="/m/{pid}/attachments/\d+" download>Résultats 2026\.pdf', page)
    assert f'href="/m/{pid}/print"' in page
    assert "will be deleted on" in page
    assert f'action="/m/{pid}/reply"' in page and 'enctype="multipart/form-data"' in page


def test_plain_text_body_is_escaped_and_linked(client: TestClient, store: Store) -> None:
    pickup_id = seed(store, raw=plain_message("<b>not bold</b> see https://example.org/x\n"))
    page = register(client, store, pickup_id).text
    assert "&lt;b&gt;not bold&lt;/b&gt;" in page
    assert 'href="https://example.org/x"' in page
    assert "<iframe" not in page
    assert client.get(f"/m/{pickup_id}/body").status_code == 404  # no HTML body


def test_body_frame_keeps_safe_style_in_the_frame_only(client: TestClient, store: Store) -> None:
    html = ('<table width="100%" bgcolor="#eeeeee"><tr><td style="color: #003366; '
            'font-weight: bold; position: fixed">Styled</td></tr></table>')
    pickup_id = seed(store, raw=message_with(html))
    register(client, store, pickup_id)
    frame = body_frame(client, pickup_id).text
    assert 'bgcolor="#eeeeee"' in frame and 'width="100%"' in frame
    assert "color:#003366" in frame.replace(" ", "") and "position" not in frame
    printed = client.get(f"/m/{pickup_id}/print").text
    assert "Styled" in printed and "style=" not in printed and "bgcolor" not in printed


def test_body_frame_and_print_view_need_the_owner(client: TestClient, other_client: TestClient,
                                                  store: Store, pid: str) -> None:
    assert client.get(f"/m/{pid}/body").status_code == 404  # signed out
    assert client.get(f"/m/{pid}/print", follow_redirects=False).status_code == 303
    register(client, store, pid)
    other = seed(store, OTHER)
    register(other_client, store, other, OTHER)
    for url in (f"/m/{pid}/body", f"/m/{pid}/print", f"/m/{pid}/inline/3"):
        response = other_client.get(url)
        assert response.status_code == 404, url
        assert BODY_TOKEN not in response.text and "Lab results" not in response.text


def test_print_view_has_the_thread_without_navigation(client: TestClient, store: Store,
                                                      pid: str) -> None:
    register(client, store, pid)
    printed = client.get(f"/m/{pid}/print")
    assert printed.status_code == 200
    assert_security_headers(printed)
    text = printed.text
    assert BODY_TOKEN in text and "Dr. Doctor" in text and "Résultats 2026.pdf" in text
    assert 'class="site-header"' not in text and "Sign out" not in text
    assert "<iframe" not in text and "data-print hidden" in text
    assert "<script" not in text.split('<main class="wrap" id="main">', 1)[1]


# -- time zones --------------------------------------------------------------------------------

def test_times_are_shown_in_the_users_time_zone(client: TestClient, store: Store,
                                                pid: str) -> None:
    page = register(client, store, pid, time_zone="Asia/Tokyo")
    assert "24 Nov 2026, 00:04 JST" in page.text  # 15:04 UTC
    assert "Times are shown in Asia/Tokyo" in page.text
    account = client.get("/account")
    assert '<option value="Asia/Tokyo" selected>' in account.text
    changed = client.post("/account/time-zone", data={"csrf_token": csrf(account),
                                                      "time_zone": "America/New_York"})
    assert changed.url.path == "/account" and "now shown in America/New York" in changed.text
    assert "23 Nov 2026, 10:04 EST" in client.get(f"/m/{pid}").text
    assert "23 Nov 2026, 10:04 EST" in client.get(f"/m/{pid}/print").text
    bad = client.post("/account/time-zone", data={"csrf_token": csrf(account),
                                                  "time_zone": "../../etc/passwd"})
    assert bad.status_code == 400 and 'id="time_zone-error"' in bad.text


def test_unknown_browser_time_zone_falls_back_to_utc(client: TestClient, store: Store,
                                                     pid: str) -> None:
    page = register(client, store, pid, time_zone="Mars/Olympus_Mons")
    assert "23 Nov 2026, 15:04 UTC" in page.text


# -- XSS ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("framed", [True, False])
def test_xss_corpus_in_html_bodies_is_harmless(framed: bool) -> None:
    for payload in XSS_BODIES:
        cleaned = render.sanitize_html(f"<p>before</p>{payload}<p>after</p>",
                                       lambda cid: "/m/PID/inline/3" if cid.startswith("logo")
                                       else None, framed)
        assert_harmless(f"<html><head></head><body>{cleaned}</body></html>", "PID")
        assert "<p>before</p>" in cleaned, payload  # (raw-text tags may swallow what follows)


def test_xss_corpus_through_the_portal(client: TestClient, store: Store, clock: FakeClock) -> None:
    html = "".join(f"<div>{payload}</div>" for payload in XSS_BODIES)
    ids = []
    for subject in XSS_SUBJECTS:
        clock.advance(1)
        ids.append(seed(store, raw=message_with(html, subject)))
    register(client, store, ids[0])
    inbox = client.get("/").text
    for pickup_id in ids:
        frame = body_frame(client, pickup_id)
        assert frame.headers["content-security-policy"] == BODY_CONTENT_SECURITY_POLICY
        assert_harmless(frame.text, pickup_id)
        for page in (client.get(f"/m/{pickup_id}").text, client.get(f"/m/{pickup_id}/print").text,
                     inbox):
            scripts = re.findall(r"<script[^>]*>", page)
            assert set(scripts) <= {'<script src="/static/portal.js" defer>'}
            assert not re.search(r"<[a-z]+[^>]*\son[a-z]+=", page) and "<img src=x" not in page
            assert "</title><script>" not in page
    page = client.get(f"/m/{ids[2]}").text
    assert "{{ 7 * 7 }} {% raw %}" in page and "49" not in page.split("<h1", 1)[1][:200]
    decoded = client.get(f"/m/{ids[3]}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in decoded


# -- branding and templates ---------------------------------------------------------------------

def test_branding_from_config(config: Config, store: Store, tmp_path: Path, pid: str) -> None:
    logo = tmp_path / "logo.png"
    logo.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\1" * 30)
    config.pickup.logo_file = str(logo)
    config.pickup.brand_color = "#0A7D32"
    with TestClient(create_app(config, store)) as branded:
        page = branded.get(f"/m/{pid}")
        assert 'class="brand-logo" src="/brand/logo"' in page.text
        assert "St. Example Hospital" in page.text
        css = branded.get("/brand.css")
        assert css.headers["content-type"].startswith("text/css")
        assert "--accent: #0a7d32;" in css.text and "--on-accent: #ffffff" in css.text
        served = branded.get("/brand/logo")
        assert served.content == logo.read_bytes()
        assert served.headers["content-type"] == "image/png"
        assert_security_headers(served, cache="no-cache")
    config.pickup.brand_color = "#fde047"  # light: dark text on buttons
    with TestClient(create_app(config, store)) as light:
        assert "--on-accent: #111111" in light.get("/brand.css").text
    config.pickup.logo_file = ""
    with TestClient(create_app(config, store)) as plain:
        assert "brand-logo" not in plain.get(f"/m/{pid}").text
        assert plain.get("/brand/logo").status_code == 404


def test_templates_dir_overrides_pages_and_mail(config: Config, store: Store, tmp_path: Path,
                                                pid: str) -> None:
    overrides = tmp_path / "overrides"
    (overrides / "portal").mkdir(parents=True)
    (overrides / "mail").mkdir()
    (overrides / "portal" / "start.html").write_text(
        '{% extends "base.html" %}{% block content %}<h1>Welcome, patient of {{ organization }}'
        '</h1><form method="post" action="{{ path_for(\'request_code\', pickup_id=pickup.id) }}">'
        '<input type="hidden" name="csrf_token" value="{{ csrf_token() }}">'
        '<button>Send code</button></form>{% endblock %}')
    (overrides / "mail" / "verify_code.txt").write_text("Custom words. Code: {{ code }}\n")
    config.pickup.templates_dir = str(overrides)
    with TestClient(create_app(config, store)) as custom:
        page = custom.get(f"/m/{pid}")
        assert "Welcome, patient of St. Example Hospital" in page.text
        assert "portal.css" in page.text  # base.html still from the package
        custom.post(f"/m/{pid}/code", data={"csrf_token": csrf(page)})
        assert "Set up your account" in custom.get(f"/m/{pid}/verify").text
    from tests.portal_fixtures import code_mails, mail_text
    assert mail_text(store, code_mails(store, PATIENT)[0]).startswith("Custom words. Code: ")


def test_bad_logo_config_is_named(config: Config, store: Store, tmp_path: Path) -> None:
    from pickup.brand import BrandError
    config.pickup.logo_file = str(tmp_path / "missing.png")
    with pytest.raises(BrandError, match="pickup.logo_file"):
        create_app(config, store)
    config.pickup.logo_file = str(tmp_path / "logo.exe")
    with pytest.raises(BrandError, match="pickup.logo_file"):
        create_app(config, store)


def test_csp_of_pages_allows_only_own_files(client: TestClient, pid: str) -> None:
    policy = client.get(f"/m/{pid}").headers["content-security-policy"]
    assert policy == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert "sandbox" in BODY_CONTENT_SECURITY_POLICY
    assert "script" not in BODY_CONTENT_SECURITY_POLICY


def test_linkify_escapes_and_links_only_web_addresses() -> None:
    linked = render.linkify('See https://example.org/x?a=1&b=2. <b>(https://foo.test/y)</b> '
                            'javascript:alert(1) http://a.test/"onmouseover=alert(1)')
    assert linked.count("<a ") == 3
    assert '<a href="https://example.org/x?a=1&amp;b=2" target="_blank" rel="noopener ' in linked
    assert "2</a>. &lt;b&gt;(" in linked and "y</a>)&lt;/b&gt;" in linked
    assert 'href="http://a.test/"' in linked and "&#34;onmouseover" in linked
    assert "javascript:alert(1)" in linked and 'href="javascript' not in linked
