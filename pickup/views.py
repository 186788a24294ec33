"""The portal's endpoints and error pages.

Rules every endpoint follows:
- A GET never sends mail, consumes a code or signs anyone in: link scanners fetch every
  link in a notification before the recipient does.
- Every POST goes through read_form, which checks the CSRF token.
- Database, decryption and argon2 work is synchronous and slow, so it runs in a worker
  thread: GET endpoints are plain functions (Starlette runs them in its thread pool),
  POST endpoints read the form on the event loop and hand the rest to run_in_threadpool.
- A signed-in user gets the same 404 for an unknown, expired or someone else's message.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from gateway.config import Config
from gateway.crypto import DecryptionError
from gateway.store import Pickup, Route, Store
from pickup import mail, render
from pickup.accounts import (CODE_DIGITS, CODE_LIFETIME, NAME_MAX, Accounts, CodeCheck, CodeSend,
                             TooManyFailures, User, normalize_address, normalize_code,
                             password_problem)
from pickup.pages import Pages, path_for
from pickup.security import CSRF_FIELD, Csrf, CsrfError, add_security_headers

SESSION_COOKIE = "sealgate_session"
MAX_FORM_BYTES = 64 * 1024
_PICKUP_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


@dataclass
class Portal:
    config: Config
    store: Store
    accounts: Accounts
    csrf: Csrf
    pages: Pages
    wake_queue: Callable[[], None]
    secure_cookies: bool


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


def page(request: Request, name: str, context: dict[str, Any] | None = None,
         status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    response = portal(request).pages.render(request, name, context, status_code, headers)
    if getattr(request.state, "session_ended", False):
        response.delete_cookie(SESSION_COOKIE, path="/")  # stale: stop sending it
    return response


def redirect(request: Request, name: str, query: str = "", **params: Any) -> Response:
    target = path_for(request, name, **params) + (f"?{query}" if query else "")
    return RedirectResponse(target, status_code=303)  # 303: the browser follows with a GET


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


def not_found() -> HTTPException:
    return HTTPException(404)


def find_pickup(request: Request) -> Pickup | None:
    pickup_id = request.path_params["pickup_id"]
    if not _PICKUP_ID.match(pickup_id):
        return None
    return portal(request).store.get_pickup(pickup_id)


def owned_pickup(request: Request, user: User) -> Pickup:
    """The requested pickup if it is USER's; otherwise 404, whatever the reason."""
    pickup = find_pickup(request)
    if pickup is None or pickup.recipient != user.address:
        raise not_found()
    return pickup


def anonymous_pickup(request: Request) -> Pickup | Response:
    """For the sign-in and verification steps: the pickup, or where to go instead."""
    pickup = find_pickup(request)
    user = current_user(request)
    if user is not None:
        if pickup is not None and pickup.recipient == user.address:
            return redirect(request, "message", pickup_id=pickup.id)
        raise not_found()
    if pickup is None:
        raise not_found()
    return pickup


async def read_form(request: Request) -> dict[str, str]:
    """The submitted text fields, after the CSRF check (raises CsrfError)."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_FORM_BYTES:
        raise HTTPException(413)
    form = await request.form(max_files=0, max_fields=32)
    values = {key: value for key, value in form.items() if isinstance(value, str)}
    portal(request).csrf.check(request, values.get(CSRF_FIELD))
    return values


def start_session(request: Request, user: User, target: str) -> Response:
    """Sign USER in with a brand-new token (never reuse one an attacker may have planted)."""
    app = portal(request)
    token = app.accounts.start_session(user.address, replacing=request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(SESSION_COOKIE, token, path="/", httponly=True, samesite="lax",
                        secure=app.secure_cookies)
    return response


# -- signed out: home and sign in ----------------------------------------------------------

def home(request: Request) -> Response:
    user = current_user(request)
    if user is None:
        return login_page(request)
    store = portal(request).store
    items = []
    for pickup in store.list_pickups(user.address):
        try:
            summary = render.summary(store.open_pickup(pickup.id))
        except (KeyError, OSError, DecryptionError):
            continue  # expired a moment ago, or damaged: opening it explains
        items.append({"pickup": pickup, "summary": summary})
    return page(request, "inbox.html", {"items": items})


def login_page(request: Request, pickup: Pickup | None = None, status_code: int = 200,
               values: dict[str, str] | None = None, errors: dict[str, str] | None = None,
               ) -> Response:
    notice = request.query_params.get("notice", "")
    if getattr(request.state, "session_ended", False):
        notice = "session-ended"
    return page(request, "login.html", {
        "pickup": pickup, "values": values or {}, "errors": errors or {}, "notice": notice,
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
        found = anonymous_pickup(request)
        if isinstance(found, Response):
            return found
        return sign_in(request, form, found)

    return await run_in_threadpool(run)


def sign_in(request: Request, form: dict[str, str], pickup: Pickup | None) -> Response:
    """Check address and password; arriving from a message, the address is the message's."""
    address = pickup.recipient if pickup else normalize_address(form.get("address", ""))
    password = form.get("password", "")
    errors: dict[str, str] = {}
    if not address:
        errors["address"] = "Enter your email address."
    elif "@" not in address or len(address) > 320:
        errors["address"] = "Enter your whole email address, like name@example.com."
    if not password:
        errors["password"] = "Enter your password."
    if not errors:
        try:
            user = portal(request).accounts.authenticate(address, password)
        except TooManyFailures:
            errors["password"] = ("Too many wrong passwords. Please wait 15 minutes and try again"
                                  + (", or reset your password below." if pickup else "."))
        else:
            if user is not None:
                if pickup is not None:
                    portal(request).store.audit(pickup.id, "sign-in", client_ip(request))
                    return start_session(request, user, path_for(request, "message",
                                                                  pickup_id=pickup.id))
                return start_session(request, user, path_for(request, "home"))
            errors["password"] = "The email address or password is not right. Please try again."
    return login_page(request, pickup, 400, {"address": address}, errors)


async def logout(request: Request) -> Response:
    await read_form(request)
    token = request.cookies.get(SESSION_COOKIE, "")
    if token:
        await run_in_threadpool(portal(request).accounts.end_session, token)
    response = redirect(request, "login", query="notice=signed-out")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# -- first visit: verification code and account --------------------------------------------

def message(request: Request) -> Response:
    user = current_user(request)
    if user is not None:
        return show_message(request, user, owned_pickup(request, user))
    pickup = find_pickup(request)
    if pickup is None:
        raise not_found()
    if portal(request).accounts.get_user(pickup.recipient) is not None:
        return login_page(request, pickup)
    return page(request, "start.html", {"pickup": pickup})


async def request_code(request: Request) -> Response:
    await read_form(request)
    response, queued = await run_in_threadpool(send_code, request)
    if queued:
        # Here, on the event loop, not in the worker thread: the queue runner's wake-up
        # is an asyncio.Event, which is not thread-safe.
        portal(request).wake_queue()
    return response


def send_code(request: Request) -> tuple[Response, bool]:
    """Mail a fresh code to the message's recipient (never to an address from the form)."""
    found = anonymous_pickup(request)
    if isinstance(found, Response):
        return found, False
    app = portal(request)
    issued = app.accounts.issue_code(found.recipient)
    if issued.outcome is CodeSend.SENT:
        # base_url is the portal's public root (like the notification link), so the route's
        # own path follows it, without this request's root_path.
        link = app.config.pickup.base_url.rstrip("/") + str(
            request.app.url_path_for("verify_form", pickup_id=found.id))
        content = mail.verification_email(
            notify_from=app.config.notify.from_, organization=app.config.pickup.organization,
            to=found.recipient, code=issued.code, link=link, minutes=int(CODE_LIFETIME // 60),
            now=app.store.clock(),
        )
        app.store.enqueue(app.config.notify.from_, [Route(found.recipient)], content)
        app.store.audit(found.id, "code-sent", client_ip(request))
    return redirect(request, "verify_form", query=f"notice={issued.outcome.value}",
                    pickup_id=found.id), issued.outcome is CodeSend.SENT


def verify_form(request: Request) -> Response:
    found = anonymous_pickup(request)
    if isinstance(found, Response):
        return found
    return verify_page(request, found, notice=request.query_params.get("notice", ""))


def verify_page(request: Request, pickup: Pickup, status_code: int = 200, notice: str = "",
                values: dict[str, str] | None = None, errors: dict[str, str] | None = None,
                ) -> Response:
    reset = portal(request).accounts.get_user(pickup.recipient) is not None
    return page(request, "verify.html", {
        "pickup": pickup, "reset": reset, "notice": notice, "values": values or {},
        "errors": errors or {}, "code_digits": CODE_DIGITS,
    }, status_code)


async def verify(request: Request) -> Response:
    form = await read_form(request)
    return await run_in_threadpool(check_code, request, form)


def check_code(request: Request, form: dict[str, str]) -> Response:
    """Create the account (or set a new password) once the emailed code is right."""
    found = anonymous_pickup(request)
    if isinstance(found, Response):
        return found
    app = portal(request)
    reset = app.accounts.get_user(found.recipient) is not None
    code = normalize_code(form.get("code", ""))
    first_name = " ".join(form.get("first_name", "").split())
    last_name = " ".join(form.get("last_name", "").split())
    password, confirmation = form.get("password", ""), form.get("password_confirm", "")

    errors: dict[str, str] = {}
    if not (code.isdigit() and len(code) == CODE_DIGITS):
        errors["code"] = f"Enter the {CODE_DIGITS}-digit code from the email we sent you."
    if not reset:
        for field, label, value in (("first_name", "first name", first_name),
                                    ("last_name", "last name", last_name)):
            if not value:
                errors[field] = f"Enter your {label}."
            elif len(value) > NAME_MAX or not value.isprintable():
                errors[field] = f"Enter your {label} in at most {NAME_MAX} ordinary characters."
    problem = password_problem(password, confirmation)
    if problem:
        errors[problem[0]] = problem[1]

    if not errors:
        outcome, left = app.accounts.redeem_code(
            found.recipient, code, app.accounts.hash_password(password),
            None if reset else first_name, None if reset else last_name)
        if outcome is CodeCheck.OK:
            app.store.audit(found.id, "password-reset" if reset else "registered",
                            client_ip(request))
            user = app.accounts.get_user(found.recipient)
            assert user is not None
            return start_session(request, user, path_for(request, "message", pickup_id=found.id))
        if outcome is CodeCheck.WRONG:
            tries = "1 try" if left == 1 else f"{left} tries"
            errors["code"] = (f"That code is not right. Check the most recent email from us "
                              f"and try again ({tries} left).")
        else:
            errors["code"] = ("This code is no longer valid: it has expired, was already used, "
                              "or was typed wrong too many times. Ask for a new code below.")
            code = ""
    values = {"code": code, "first_name": first_name, "last_name": last_name}
    return verify_page(request, found, 400, values=values, errors=errors)


# -- signed in: message and attachments ----------------------------------------------------

def show_message(request: Request, user: User, pickup: Pickup) -> Response:
    store = portal(request).store
    try:
        raw = store.open_pickup(pickup.id)
    except KeyError:
        raise not_found() from None
    except (OSError, DecryptionError):
        store.audit(pickup.id, "open-failed", client_ip(request))
        return page(request, "error.html", {"kind": "damaged"}, 500)

    def inline_url(number: int) -> str:
        return path_for(request, "inline", pickup_id=pickup.id, number=number)

    view = render.message_view(raw, inline_url)
    store.mark_pickup_read(pickup.id)
    store.audit(pickup.id, "open", client_ip(request), request.headers.get("user-agent", "")[:200])
    return page(request, "message.html", {"pickup": pickup, "message": view})


def open_attachment(request: Request) -> tuple[Pickup, render.Download] | Response:
    user = current_user(request)
    if user is None:  # signed out meanwhile: the message page asks to sign in
        return redirect(request, "message", pickup_id=request.path_params["pickup_id"])
    pickup = owned_pickup(request, user)
    try:
        raw = portal(request).store.open_pickup(pickup.id)
    except (KeyError, OSError, DecryptionError):
        raise not_found() from None
    download = render.attachment(raw, request.path_params["number"])
    if download is None:
        raise not_found()
    return pickup, download


def attachment(request: Request) -> Response:
    found = open_attachment(request)
    if isinstance(found, Response):
        return found
    pickup, download = found
    portal(request).store.audit(pickup.id, "download", client_ip(request), download.filename)
    return Response(download.data, headers={
        "Content-Type": download.content_type_header,
        "Content-Disposition": render.content_disposition(download.filename),
        "X-Content-Type-Options": "nosniff",
    })


def inline(request: Request) -> Response:
    """An image the HTML body shows by cid:, only in formats that cannot carry script."""
    found = open_attachment(request)
    if isinstance(found, Response):
        return found
    _, download = found
    if download.content_type not in render.INLINE_IMAGE_TYPES:
        raise not_found()
    return Response(download.data, headers={
        "Content-Type": download.content_type,
        "Content-Disposition": render.content_disposition(download.filename, "inline"),
        "X-Content-Type-Options": "nosniff",
    })


# -- errors ----------------------------------------------------------------------------------

def error_page(request: Request, status_code: int, headers: dict[str, str] | None) -> Response:
    try:
        current_user(request)  # the 404 page says who is signed in
    except Exception:
        request.state.user = None
    kind = {404: "not-found", 413: "too-large"}.get(status_code, "bad-request")
    return page(request, "error.html", {"kind": kind}, status_code, headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return await run_in_threadpool(error_page, request, exc.status_code, exc.headers)


async def csrf_error(request: Request, exc: Exception) -> Response:
    request.state.user = None  # don't touch the session for a forged or stale form
    return page(request, "error.html", {"kind": "csrf"}, 403)


FALLBACK_500 = ("<!doctype html><meta charset=utf-8><title>Something went wrong</title>"
                "<h1>Something went wrong</h1><p>Please try again in a few minutes.</p>")


async def server_error(request: Request, exc: Exception) -> Response:
    """500 page. Runs outside the middleware stack, so it adds the security headers itself,
    and it must not need the database, which may be what failed."""
    request.state.user = None
    try:
        response = page(request, "error.html", {"kind": "server"}, 500)
    except Exception:
        response = HTMLResponse(FALLBACK_500, status_code=500)
    add_security_headers(response.headers, portal(request).secure_cookies)
    return response
