"""Signing in by code (pickup.sign_in = "code" or "both"): instead of a password, a fresh
code is emailed to the address, with the limits of the first-visit code (15 minutes, 5
tries, one a minute and 10 a day per address) and the sign-in throttle of passwords. So a
forgotten password locks nobody out.

From a message link the code goes to the message's recipient; from the sign-in page to the
address typed in, and the page answers the same whether or not that address has an
account. As everywhere, only a POST sends mail or signs in.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from gateway.ops.logs import portal_sign_in, portal_sign_in_failed
from pickup.accounts import CODE_DIGITS, CODE_LIFETIME, CodeCheck, CodeSend, normalize_address
from pickup.pages import path_for
from pickup.threads import Item
from pickup.views import (
    anonymous_message,
    client_ip,
    current_user,
    language,
    page,
    portal,
    queue_mail,
    read_form,
    redirect,
    start_session,
    tr,
    wake_up,
)


def codes_allowed(request: Request) -> None:
    if portal(request).config.pickup.sign_in == "password":
        raise HTTPException(404)


def code_page(request: Request, item: Item | None, address: str, notice: str = "",
              status_code: int = 200, errors: dict[str, str] | None = None) -> Response:
    return page(request, "sign_in_code.html", {
        "pickup": item.pickup if item else None, "address": address, "notice": notice,
        "errors": errors or {}, "code_digits": CODE_DIGITS,
        "minutes": int(CODE_LIFETIME // 60),
    }, status_code)


def mail_code(request: Request, address: str, item: Item | None) -> CodeSend:
    """A fresh sign-in code to ADDRESS, which has an account."""
    app = portal(request)
    issued = app.accounts.issue_code(address)
    if issued.outcome is CodeSend.SENT:
        link = (app.public_url(request, "message_code", pickup_id=item.id) if item
                else app.public_url(request, "login"))
        queue_mail(request, address, app.mailer.sign_in_code(
            address, issued.code, link, int(CODE_LIFETIME // 60), app.store.clock(),
            language(request)))
        if item is not None:
            app.store.audit(item.id, "sign-in-code-sent", client_ip(request))
    return issued.outcome


# -- from a message link -----------------------------------------------------------------------

async def message_send(request: Request) -> Response:
    await read_form(request)

    def run() -> Response:
        codes_allowed(request)
        found = anonymous_message(request)
        if isinstance(found, Response):
            return found
        recipient = found.pickup.recipient
        if portal(request).accounts.get_user(recipient) is None:
            return redirect(request, "message", pickup_id=found.id)  # first visit instead
        outcome = mail_code(request, recipient, found)
        return redirect(request, "message_code", query=f"notice={outcome.value}",
                        pickup_id=found.id)

    return await wake_up(request, await run_in_threadpool(run))


def message_form(request: Request) -> Response:
    codes_allowed(request)
    found = anonymous_message(request)
    if isinstance(found, Response):
        return found
    if portal(request).accounts.get_user(found.pickup.recipient) is None:
        return redirect(request, "message", pickup_id=found.id)
    return code_page(request, found, found.pickup.recipient,
                     notice=request.query_params.get("notice", ""))


async def message_check(request: Request) -> Response:
    form = await read_form(request)

    def run() -> Response:
        codes_allowed(request)
        found = anonymous_message(request)
        if isinstance(found, Response):
            return found
        return check(request, found.pickup.recipient, form.get("code", ""), found)

    return await run_in_threadpool(run)


# -- from the sign-in page ---------------------------------------------------------------------

def address_error(request: Request, address: str) -> str:
    _ = tr(request)
    if not address:
        return _("Enter your email address.")
    if "@" not in address or len(address) > 320:
        return _("Enter your whole email address, like name@example.com.")
    return ""


async def login_send(request: Request) -> Response:
    form = await read_form(request)

    def run() -> Response:
        codes_allowed(request)
        if current_user(request) is not None:
            return redirect(request, "home")
        # "code_address" when the page also has the password form (one id per page)
        address = normalize_address(form.get("address") or form.get("code_address", ""))
        problem = address_error(request, address)
        if problem:
            from pickup.views import login_page
            field = "address" if portal(request).config.pickup.sign_in == "code" else \
                "code_address"
            return login_page(request, None, 400, {"address": address}, {field: problem})
        if portal(request).accounts.get_user(address) is not None:
            mail_code(request, address, None)
        # The same page either way: it tells no one which addresses have accounts.
        return code_page(request, None, address, notice="sent-if-account")

    return await wake_up(request, await run_in_threadpool(run))


async def login_check(request: Request) -> Response:
    form = await read_form(request)

    def run() -> Response:
        codes_allowed(request)
        address = normalize_address(form.get("address", ""))
        if address_error(request, address):
            return redirect(request, "login")
        return check(request, address, form.get("code", ""), None)

    return await run_in_threadpool(run)


# -- checking a code ---------------------------------------------------------------------------

def check(request: Request, address: str, typed: str, item: Item | None) -> Response:
    """Sign in when TYPED is the newest code of ADDRESS; wrong codes count as failed sign-ins
    (the password throttle pauses both)."""
    from pickup.accounts import TooManyFailures, normalize_code

    _ = tr(request)
    app = portal(request)
    code = normalize_code(typed)
    client = client_ip(request)
    if not (code.isdigit() and len(code) == CODE_DIGITS):
        return code_page(request, item, address, status_code=400, errors={
            "code": _("Enter the %(digits)d-digit code from the email we sent you.")
            % {"digits": CODE_DIGITS}})
    try:
        outcome, left = app.accounts.redeem_sign_in_code(address, code, client)
    except TooManyFailures:
        portal_sign_in_failed(address, client, "paused-code")
        return code_page(request, item, address, status_code=400, errors={
            "code": _("Too many wrong tries. Please wait 15 minutes and try again.")})
    if outcome is CodeCheck.OK:
        user = app.accounts.get_user(address)
        assert user is not None
        portal_sign_in(address, client, "sign-in-code")
        if item is not None:
            app.store.audit(item.id, "sign-in", client, "code")
            return start_session(request, user, path_for(request, "message", pickup_id=item.id))
        return start_session(request, user, path_for(request, "home"))
    if outcome is CodeCheck.WRONG:
        portal_sign_in_failed(address, client, "wrong-sign-in-code")
        message = _("That code is not right. Check the most recent email from us and try again"
                    " (%(tries)s left).") % {
            "tries": tr_tries(request, left)}
    else:
        portal_sign_in_failed(address, client, "sign-in-code-no-longer-valid")
        message = _("This code is no longer valid: it has expired, was already used, or was"
                    " typed wrong too many times. Ask for a new code below.")
    return code_page(request, item, address, status_code=400, errors={"code": message})


def tr_tries(request: Request, left: int) -> str:
    from pickup.i18n import translations
    found: str = translations(language(request)).ngettext("%(num)d try", "%(num)d tries",
                                                          left) % {"num": left}
    return found
