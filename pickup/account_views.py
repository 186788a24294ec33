"""The account: profile (time zone), password change, signing out everywhere, and the
"forgot password" reset link."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway.ops.logs import portal_sign_in
from pickup import i18n
from pickup.accounts import TooManyFailures, User, normalize_address
from pickup.pages import path_for
from pickup.passwords import PASSWORD_MAX, PASSWORD_MIN
from pickup.resets import RESET_LIFETIME
from pickup.threads import MESSAGE
from pickup.timezones import valid_zone, zone_names
from pickup.views import (
    SESSION_COOKIE,
    account_notice,
    anonymous_message,
    client_ip,
    current_user,
    language,
    page,
    password_errors,
    portal,
    queue_mail,
    read_form,
    redirect,
    start_session,
    tr,
    wake_up,
)

# -- profile, password, sessions -------------------------------------------------------------

def account(request: Request) -> Response:
    user = current_user(request)
    if user is None:
        return redirect(request, "login")
    return account_page(request, user, notice=request.query_params.get("notice", ""))


def account_page(request: Request, user: User, status_code: int = 200, notice: str = "",
                 errors: dict[str, str] | None = None) -> Response:
    return page(request, "account.html", {
        "zones": zone_names(), "notice": notice, "errors": errors or {},
        "password_min": PASSWORD_MIN, "password_max": PASSWORD_MAX,
        "sign_in": portal(request).config.pickup.sign_in,
    }, status_code)


async def set_time_zone(request: Request) -> Response:
    form = await read_form(request)

    def run() -> Response:
        user = current_user(request)
        if user is None:
            return redirect(request, "login")
        zone = valid_zone(form.get("time_zone", "").strip())
        if zone is None:
            return account_page(request, user, 400, errors={
                "time_zone": tr(request)("Choose your time zone from the list.")})
        portal(request).accounts.set_time_zone(user.address, zone)
        return redirect(request, "account", query="notice=time-zone")

    return await run_in_threadpool(run)


async def change_password(request: Request) -> Response:
    form = await read_form(request)

    def run() -> Response:
        user = current_user(request)
        if user is None:
            return redirect(request, "login")
        app = portal(request)
        _ = tr(request)
        errors: dict[str, str] = {}
        if not form.get("current_password"):
            errors["current_password"] = _("Enter your current password.")
        else:
            try:
                if app.accounts.authenticate(user.address, form["current_password"],
                                             client_ip(request)) is None:
                    errors["current_password"] = _("That is not your current password.")
            except TooManyFailures:
                errors["current_password"] = _("Too many wrong passwords. Please wait 15"
                                               " minutes, or sign out and reset your password.")
        errors.update(password_errors(request, form, user.address))
        if errors:
            return account_page(request, user, 400, errors=errors)
        app.accounts.change_password(user.address, app.accounts.hash_password(form["password"]))
        account_notice(request, user.address, "password-changed")
        # Every session ended with the old password; this browser gets a fresh one.
        return start_session(request, user, path_for(request, "account") + "?notice=password")

    return await wake_up(request, await run_in_threadpool(run))


async def sign_out_everywhere(request: Request) -> Response:
    await read_form(request)

    def run() -> Response:
        user = current_user(request)
        if user is not None:
            portal(request).accounts.end_all_sessions(user.address)
        response = redirect(request, "login", query="notice=signed-out-everywhere")
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    return await run_in_threadpool(run)


# -- forgot password -------------------------------------------------------------------------

def forgot_form(request: Request) -> Response:
    return page(request, "forgot.html", {"pickup": None})


def message_forgot_form(request: Request) -> Response:
    found = anonymous_message(request)
    if isinstance(found, Response):
        return found
    return page(request, "forgot.html", {"pickup": found.pickup})


async def forgot(request: Request) -> Response:
    form = await read_form(request)

    def run() -> Response:
        address = normalize_address(form.get("address", ""))
        if "@" not in address or len(address) > 320:
            return page(request, "forgot.html", {
                "pickup": None, "values": {"address": address}, "errors": {
                    "address": tr(request)(
                        "Enter your whole email address, like name@example.com.")}}, 400)
        return send_reset(request, address, "")

    return await wake_up(request, await run_in_threadpool(run))


async def message_forgot(request: Request) -> Response:
    await read_form(request)

    def run() -> Response:
        found = anonymous_message(request)
        if isinstance(found, Response):
            return found
        return send_reset(request, found.pickup.recipient, found.id)

    return await wake_up(request, await run_in_threadpool(run))


def send_reset(request: Request, address: str, pickup_id: str) -> Response:
    """Mail a reset link when ADDRESS has an account; the page says the same either way, so
    it tells no one which addresses have accounts."""
    app = portal(request)
    token = app.resets.issue(address, pickup_id)
    if token is not None:
        link = app.public_url(request, "reset", token=token)
        now = app.store.clock()
        user = app.accounts.get_user(address)
        mail_language = (user.language if user else "") or language(request)
        queue_mail(request, address, app.mailer.password_reset(
            address, link, int(RESET_LIFETIME // 60), now, mail_language))
        if pickup_id:
            app.store.audit(pickup_id, "reset-link-sent", client_ip(request))
    return page(request, "forgot_sent.html", {"address": address,
                                              "minutes": int(RESET_LIFETIME // 60)})


def reset_form(request: Request) -> Response:
    link = portal(request).resets.peek(request.path_params["token"])
    if link is None:
        return page(request, "reset.html", {"link": None}, 404)
    return page(request, "reset.html", {"link": link, "password_min": PASSWORD_MIN,
                                        "password_max": PASSWORD_MAX})


async def reset(request: Request) -> Response:
    form = await read_form(request)

    def run() -> Response:
        app = portal(request)
        token = request.path_params["token"]
        link = app.resets.peek(token)
        if link is None:
            return page(request, "reset.html", {"link": None}, 404)
        errors = password_errors(request, form, link.address)
        if errors:
            return page(request, "reset.html", {
                "link": link, "errors": errors, "password_min": PASSWORD_MIN,
                "password_max": PASSWORD_MAX}, 400)
        spent = app.resets.redeem(token, app.accounts.hash_password(form["password"]))
        if spent is None:  # used by another request meanwhile
            return page(request, "reset.html", {"link": None}, 404)
        app.accounts.throttle.clear_account(spent.address)
        account_notice(request, spent.address, "password-changed")
        user = app.accounts.get_user(spent.address)
        assert user is not None
        target = path_for(request, "home")
        item = app.threads.get(spent.pickup_id) if spent.pickup_id else None
        if item is not None and item.kind == MESSAGE and item.pickup.recipient == user.address:
            app.store.audit(item.id, "password-reset", client_ip(request))
            target = path_for(request, "message", pickup_id=item.id)
        portal_sign_in(user.address, client_ip(request), "password-reset")
        return start_session(request, user, target)

    return await wake_up(request, await run_in_threadpool(run))


# -- language --------------------------------------------------------------------------------

def _local_path(target: str) -> str:
    """Where to go back to: a path of this site only (never //host or a scheme)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target \
            or any(ord(ch) < 33 for ch in target):
        return "/"
    return target[:2000]


async def set_language(request: Request) -> Response:
    """The language switcher on every page (a POST form: CSRF-checked like every other):
    remembered in a cookie, and for the account when signed in."""
    form = await read_form(request)

    def run() -> Response:
        chosen = i18n.supported(form.get("language", ""))
        target = _local_path(form.get("next", "/"))
        response = RedirectResponse(target, status_code=303)
        if chosen is None:
            return response
        user = current_user(request)
        if user is not None:
            portal(request).accounts.set_language(user.address, chosen)
        response.set_cookie(i18n.LANGUAGE_COOKIE, chosen, max_age=365 * 86400, path="/",
                            httponly=True, samesite="lax", secure=portal(request).secure_cookies)
        return response

    return await run_in_threadpool(run)
