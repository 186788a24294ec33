"""The portal's shared request helpers, signing in and out, the first visit (verification
code and account), and the error pages. Reading (message_views), replying (reply_views)
and the account pages (account_views) have modules of their own.

Rules every endpoint follows:
- A GET never sends mail, consumes a code or token, or signs anyone in: link scanners
  fetch every link in a notification before the recipient does.
- Every POST goes through read_form (or the reply's own parser), which checks the CSRF token.
- Database, decryption and argon2 work is synchronous and slow, so it runs in a worker
  thread: GET endpoints are plain functions (Starlette runs them in its thread pool),
  POST endpoints read the form on the event loop and hand the rest to run_in_threadpool.
- A signed-in user gets the same 404 for an unknown, expired or someone else's message,
  attachment or reply: authorization is checked on every request, for every object.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from gateway.config import Config
from gateway.ops.logs import portal_sign_in, portal_sign_in_failed
from gateway.storage.protocols import Route, Storage
from pickup import i18n
from pickup.accounts import (
    CODE_DIGITS,
    CODE_LIFETIME,
    NAME_MAX,
    Accounts,
    CodeCheck,
    CodeSend,
    TooManyFailures,
    User,
    normalize_address,
    normalize_code,
)
from pickup.brand import Brand
from pickup.mail import Mailer
from pickup.pages import Pages, language_of, path_for
from pickup.passwords import PASSWORD_MAX, PASSWORD_MIN, password_problem
from pickup.resets import Resets
from pickup.security import CSRF_FIELD, Csrf, add_security_headers
from pickup.threads import MESSAGE, Item, Threads
from pickup.timezones import DEFAULT_ZONE, valid_zone

SESSION_COOKIE = "sealgate_session"
MAX_FORM_BYTES = 64 * 1024
_PICKUP_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


@dataclass
class Portal:
    config: Config
    store: Storage
    accounts: Accounts
    resets: Resets
    threads: Threads
    csrf: Csrf
    pages: Pages
    mailer: Mailer
    brand: Brand
    wake_queue: Callable[[], None]
    secure_cookies: bool

    def public_url(self, request: Request, name: str, **params: Any) -> str:
        """An absolute link for mail. base_url is the portal's public root (like the
        notification link), so the route's own path follows it, without root_path."""
        return self.config.pickup.base_url.rstrip("/") + str(
            request.app.url_path_for(name, **params))


def portal(request: Request) -> Portal:
    found: Portal = request.app.state.portal
    return found


# -- helpers -------------------------------------------------------------------------------

def current_user(request: Request) -> User | None:
    """The signed-in user, resolved once per request (call from a worker thread)."""
    if hasattr(request.state, "user"):
        user: User | None = request.state.user
        return user
    token = request.cookies.get(SESSION_COOKIE, "")
    user = portal(request).accounts.resolve_session(token) if token else None
    request.state.user = user
    request.state.session_ended = bool(token) and user is None
    return user


def language(request: Request) -> str:
    """The language of this request's page (and of mail it sends); see pickup.i18n. The
    signed-in account's saved choice counts where the request has resolved its user."""
    return language_of(request, portal(request).config.pickup.default_language)


def tr(request: Request) -> i18n.Gettext:
    """gettext in this request's language, for messages made in Python."""
    return i18n.gettext_for(language(request))


def page(request: Request, name: str, context: dict[str, Any] | None = None,
         status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    language(request)
    response = portal(request).pages.render(request, name, context, status_code, headers)
    response.headers["Content-Language"] = language(request)
    if getattr(request.state, "session_ended", False):
        response.delete_cookie(SESSION_COOKIE, path="/")  # stale: stop sending it
    return response


def redirect(request: Request, name: str, query: str = "", fragment: str = "",
             **params: Any) -> Response:
    target = path_for(request, name, **params) + (f"?{query}" if query else "") + (
        f"#{fragment}" if fragment else "")
    return RedirectResponse(target, status_code=303)  # 303: the browser follows with a GET


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


def not_found() -> HTTPException:
    return HTTPException(404)


def find_item(request: Request) -> Item | None:
    pickup_id = request.path_params["pickup_id"]
    if not _PICKUP_ID.match(pickup_id):
        return None
    return portal(request).threads.get(pickup_id)


def owned_item(request: Request, user: User) -> Item:
    """The requested message or reply if it is in one of USER's threads; otherwise 404,
    whatever the reason."""
    item = find_item(request)
    if item is None or item.pickup.recipient != user.address:
        raise not_found()
    return item


def anonymous_message(request: Request) -> Item | Response:
    """For the sign-in and verification steps: the message (never a reply, whose id no
    email ever carries), or where to go instead."""
    item = find_item(request)
    user = current_user(request)
    if user is not None:
        if item is not None and item.pickup.recipient == user.address:
            return redirect(request, "message", pickup_id=item.root_id)
        raise not_found()
    if item is None or item.kind != MESSAGE:
        raise not_found()
    return item


async def read_form(request: Request) -> dict[str, str]:
    """The submitted text fields, after the CSRF check (raises CsrfError)."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_FORM_BYTES:
        raise HTTPException(413)
    form = await request.form(max_files=0, max_fields=32)
    values = {key: value for key, value in form.items() if isinstance(value, str)}
    portal(request).csrf.check(request, values.get(CSRF_FIELD))
    return values


def queue_mail(request: Request, to: str, content: bytes) -> None:
    """Queue portal mail to TO; the queue is woken once the response is ready (wake_up)."""
    app = portal(request)
    app.store.enqueue(app.config.notify.from_, [Route(to)], content)
    request.state.wake = True


async def wake_up(request: Request, response: Response) -> Response:
    """Wake the queue runner for mail queued by this request. Here, on the event loop, not
    in a worker thread: the runner's wake-up is an asyncio.Event, which is not thread-safe."""
    if getattr(request.state, "wake", False):
        portal(request).wake_queue()
    return response


def start_session(request: Request, user: User, target: str) -> Response:
    """Sign USER in with a brand-new token (never reuse one an attacker may have planted)."""
    app = portal(request)
    token = app.accounts.start_session(user.address, replacing=request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(SESSION_COOKIE, token, path="/", httponly=True, samesite="lax",
                        secure=app.secure_cookies)
    return response


def password_errors(request: Request, form: dict[str, str], address: str) -> dict[str, str]:
    problem = password_problem(form.get("password", ""), form.get("password_confirm", ""),
                               address, tr(request))
    return {problem[0]: problem[1]} if problem else {}


def account_notice(request: Request, user_address: str, kind: str) -> None:
    """Tell the address that its account was created or its password changed."""
    app = portal(request)
    now = app.store.clock()
    user = app.accounts.get_user(user_address)
    mail_language = (user.language if user else "") or language(request)
    when = i18n.format_time(now, user.time_zone if user else DEFAULT_ZONE, mail_language)
    link = app.public_url(request, "login")
    compose = app.mailer.registered if kind == "registered" else app.mailer.password_changed
    queue_mail(request, user_address, compose(user_address, when, link, now, mail_language))


# -- signed out: home and sign in ----------------------------------------------------------

def login_page(request: Request, item: Item | None = None, status_code: int = 200,
               values: dict[str, str] | None = None, errors: dict[str, str] | None = None,
               ) -> Response:
    notice = request.query_params.get("notice", "")
    if getattr(request.state, "session_ended", False):
        notice = "session-ended"
    return page(request, "login.html", {
        "pickup": item.pickup if item else None, "values": values or {}, "errors": errors or {},
        "notice": notice, "password_max": PASSWORD_MAX,
        "sign_in": portal(request).config.pickup.sign_in,
    }, status_code)


def login_form(request: Request) -> Response:
    if current_user(request) is not None:
        return redirect(request, "home")
    return login_page(request)


async def login(request: Request) -> Response:
    form = await read_form(request)
    return await run_in_threadpool(sign_in, request, form, None)


async def message_login(request: Request) -> Response:
    form = await read_form(request)

    def run() -> Response:
        found = anonymous_message(request)
        if isinstance(found, Response):
            return found
        return sign_in(request, form, found)

    return await run_in_threadpool(run)


def sign_in(request: Request, form: dict[str, str], item: Item | None) -> Response:
    """Check address and password; arriving from a message, the address is the message's."""
    if portal(request).config.pickup.sign_in == "code":
        raise not_found()  # passwords are not used: the sign-in page asks for a code
    _ = tr(request)
    address = item.pickup.recipient if item else normalize_address(form.get("address", ""))
    password = form.get("password", "")
    errors: dict[str, str] = {}
    if not address:
        errors["address"] = _("Enter your email address.")
    elif "@" not in address or len(address) > 320:
        errors["address"] = _("Enter your whole email address, like name@example.com.")
    if not password:
        errors["password"] = _("Enter your password.")
    if not errors:
        try:
            user = portal(request).accounts.authenticate(address, password, client_ip(request))
        except TooManyFailures as paused:
            portal_sign_in_failed(address, client_ip(request), f"paused-{paused.reason}")
            errors["password"] = (
                _("Too many wrong passwords for this address. Please wait 15 minutes and try"
                  " again, or reset your password.")
                if paused.reason == "account" else
                _("Too many wrong passwords for your network. Please wait 15 minutes and try"
                  " again, or reset your password."))
        else:
            if user is not None:
                portal_sign_in(address, client_ip(request), "password")
                if item is not None:
                    portal(request).store.audit(item.id, "sign-in", client_ip(request))
                    return start_session(request, user, path_for(request, "message",
                                                                  pickup_id=item.id))
                return start_session(request, user, path_for(request, "home"))
            portal_sign_in_failed(address, client_ip(request), "wrong-password")
            errors["password"] = _("The email address or password is not right. Please try"
                                   " again.")
    return login_page(request, item, 400, {"address": address}, errors)


async def logout(request: Request) -> Response:
    await read_form(request)
    token = request.cookies.get(SESSION_COOKIE, "")
    if token:
        await run_in_threadpool(portal(request).accounts.end_session, token)
    response = redirect(request, "login", query="notice=signed-out")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# -- first visit: verification code and account --------------------------------------------

async def request_code(request: Request) -> Response:
    await read_form(request)
    return await wake_up(request, await run_in_threadpool(send_code, request))


def send_code(request: Request) -> Response:
    """Mail a fresh code to the message's recipient (never to an address from the form)."""
    found = anonymous_message(request)
    if isinstance(found, Response):
        return found
    app = portal(request)
    recipient = found.pickup.recipient
    if app.accounts.get_user(recipient) is not None:
        return redirect(request, "message", pickup_id=found.id)  # sign in instead
    issued = app.accounts.issue_code(recipient)
    if issued.outcome is CodeSend.SENT:
        link = app.public_url(request, "verify_form", pickup_id=found.id)
        content = app.mailer.verification(recipient, issued.code, link,
                                          int(CODE_LIFETIME // 60), app.store.clock(),
                                          language(request))
        queue_mail(request, recipient, content)
        app.store.audit(found.id, "code-sent", client_ip(request))
    return redirect(request, "verify_form", query=f"notice={issued.outcome.value}",
                    pickup_id=found.id)


def verify_form(request: Request) -> Response:
    found = anonymous_message(request)
    if isinstance(found, Response):
        return found
    if portal(request).accounts.get_user(found.pickup.recipient) is not None:
        return redirect(request, "message", pickup_id=found.id)
    return verify_page(request, found, notice=request.query_params.get("notice", ""))


def verify_page(request: Request, item: Item, status_code: int = 200, notice: str = "",
                values: dict[str, str] | None = None, errors: dict[str, str] | None = None,
                ) -> Response:
    pickup_config = portal(request).config.pickup
    return page(request, "verify.html", {
        "pickup": item.pickup, "notice": notice, "values": values or {},
        "errors": errors or {}, "code_digits": CODE_DIGITS, "password_min": PASSWORD_MIN,
        "password_max": PASSWORD_MAX, "require_name": pickup_config.require_name,
        "ask_password": pickup_config.sign_in != "code",
    }, status_code)


async def verify(request: Request) -> Response:
    form = await read_form(request)
    return await wake_up(request, await run_in_threadpool(check_code, request, form))


def check_code(request: Request, form: dict[str, str]) -> Response:
    """Create the account once the emailed code is right."""
    found = anonymous_message(request)
    if isinstance(found, Response):
        return found
    app = portal(request)
    _ = tr(request)
    recipient = found.pickup.recipient
    code = normalize_code(form.get("code", ""))
    first_name = " ".join(form.get("first_name", "").split())
    last_name = " ".join(form.get("last_name", "").split())
    time_zone = valid_zone(form.get("time_zone", "").strip()) or DEFAULT_ZONE
    ask_password = app.config.pickup.sign_in != "code"

    errors: dict[str, str] = {}
    if not (code.isdigit() and len(code) == CODE_DIGITS):
        errors["code"] = _("Enter the %(digits)d-digit code from the email we sent you.") % {
            "digits": CODE_DIGITS}
    for field, missing, too_long, value in (
            ("first_name", _("Enter your first name."),
             _("Enter your first name in at most %(num)d ordinary characters."), first_name),
            ("last_name", _("Enter your last name."),
             _("Enter your last name in at most %(num)d ordinary characters."), last_name)):
        if not value:
            if app.config.pickup.require_name:
                errors[field] = missing
        elif len(value) > NAME_MAX or not value.isprintable():
            errors[field] = too_long % {"num": NAME_MAX}
    if ask_password:
        errors.update(password_errors(request, form, recipient))

    if not errors:
        # Signing in by code only: a password nobody knows (it is never shown or sent).
        password = form["password"] if ask_password else secrets.token_urlsafe(32)
        outcome, left = app.accounts.redeem_code(
            recipient, code, app.accounts.hash_password(password), first_name,
            last_name, time_zone, language(request))
        if outcome is CodeCheck.OK:
            portal_sign_in(recipient, client_ip(request), "code")
            app.store.audit(found.id, "registered", client_ip(request))
            account_notice(request, recipient, "registered")
            user = app.accounts.get_user(recipient)
            assert user is not None
            return start_session(request, user, path_for(request, "message", pickup_id=found.id))
        if outcome is CodeCheck.REGISTERED:
            return redirect(request, "message", pickup_id=found.id)
        if outcome is CodeCheck.WRONG:
            portal_sign_in_failed(recipient, client_ip(request), "wrong-code")
            tries = i18n.translations(language(request)).ngettext(
                "%(num)d try", "%(num)d tries", left) % {"num": left}
            errors["code"] = _("That code is not right. Check the most recent email from us and"
                               " try again (%(tries)s left).") % {"tries": tries}
        else:
            portal_sign_in_failed(recipient, client_ip(request), "code-no-longer-valid")
            errors["code"] = _("This code is no longer valid: it has expired, was already used,"
                               " or was typed wrong too many times. Ask for a new code below.")
            code = ""
    values = {"code": code, "first_name": first_name, "last_name": last_name,
              "time_zone": form.get("time_zone", "")}
    return verify_page(request, found, 400, values=values, errors=errors)


# -- errors ----------------------------------------------------------------------------------

def error_page(request: Request, status_code: int, headers: dict[str, str] | None) -> Response:
    try:
        current_user(request)  # the 404 page says who is signed in
    except Exception:
        request.state.user = None
    kind = {404: "not-found", 413: "too-large"}.get(status_code, "bad-request")
    # The switcher returns home: an error page must not echo its URL (a 404 for an unknown
    # id and for someone else's message look exactly the same).
    return page(request, "error.html", {"kind": kind, "here": "/"}, status_code, headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers) if exc.headers else None
    return await run_in_threadpool(error_page, request, exc.status_code, headers)


async def csrf_error(request: Request, exc: Exception) -> Response:
    request.state.user = None  # don't touch the session for a forged or stale form
    return page(request, "error.html", {"kind": "csrf", "here": "/"}, 403)


FALLBACK_500 = ("<!doctype html><meta charset=utf-8><title>Something went wrong</title>"
                "<h1>Something went wrong</h1><p>Please try again in a few minutes.</p>")


async def server_error(request: Request, exc: Exception) -> Response:
    """500 page. Runs outside the middleware stack, so it adds the security headers itself,
    and it must not need the database, which may be what failed."""
    request.state.user = None
    try:
        response = page(request, "error.html", {"kind": "server", "here": "/"}, 500)
    except Exception:
        response = HTMLResponse(FALLBACK_500, status_code=500)
    add_security_headers(response.headers, portal(request).secure_cookies)
    return response
