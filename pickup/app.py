"""The pickup portal: where recipients of a secure message prove they own the address it
was sent to, then read it, download its attachments and reply securely."""

from __future__ import annotations

import os
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from gateway.config import Config, parse_duration
from gateway.storage.protocols import Storage
from pickup import account_views, code_views, message_views, reply_views, sender_views, views
from pickup.accounts import Accounts
from pickup.brand import load_brand
from pickup.mail import Mailer
from pickup.pages import STATIC_DIR, Pages
from pickup.resets import Resets
from pickup.security import Csrf, CsrfError, SecurityHeadersMiddleware, load_secret
from pickup.threads import Threads


class PortalStatic(StaticFiles):
    """Stylesheet and script: may be cached, but revalidated (ETag) so an upgrade shows at once."""

    def file_response(self, full_path: str | os.PathLike[str], stat_result: os.stat_result,
                      scope: Scope, status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        return response


def brand_css(request: Request) -> Response:
    css = views.portal(request).brand.css
    return Response(css, media_type="text/css", headers={"Cache-Control": "no-cache"})


def brand_logo(request: Request) -> Response:
    logo = views.portal(request).brand.logo
    if logo is None:
        raise HTTPException(404)
    return Response(logo.data, media_type=logo.content_type, headers={"Cache-Control": "no-cache"})


def favicon(request: Request) -> Response:
    """Pages name no icon of their own (data:), but browsers still ask on their own."""
    return Response(status_code=204, headers={"Cache-Control": "max-age=86400"})


def routes() -> list[Route | Mount]:
    message = "/m/{pickup_id:str}"
    return [
        Route("/", message_views.home, name="home"),
        Route("/login", views.login_form, name="login"),
        Route("/login", views.login, methods=["POST"], name="login_submit"),
        Route("/login/code", code_views.login_send, methods=["POST"], name="login_code"),
        Route("/login/code/check", code_views.login_check, methods=["POST"],
              name="login_code_check"),
        Route("/logout", views.logout, methods=["POST"], name="logout"),
        Route("/language", account_views.set_language, methods=["POST"], name="set_language"),
        Route("/forgot", account_views.forgot_form, name="forgot"),
        Route("/forgot", account_views.forgot, methods=["POST"], name="forgot_submit"),
        Route("/reset/{token:str}", account_views.reset_form, name="reset"),
        Route("/reset/{token:str}", account_views.reset, methods=["POST"], name="reset_submit"),
        Route("/account", account_views.account, name="account"),
        Route("/account/time-zone", account_views.set_time_zone, methods=["POST"],
              name="set_time_zone"),
        Route("/account/password", account_views.change_password, methods=["POST"],
              name="change_password"),
        Route("/account/sign-out-everywhere", account_views.sign_out_everywhere,
              methods=["POST"], name="sign_out_everywhere"),
        Route(message, message_views.message, name="message"),
        Route(f"{message}/login", views.message_login, methods=["POST"], name="message_login"),
        Route(f"{message}/code", views.request_code, methods=["POST"], name="request_code"),
        Route(f"{message}/sign-in-code", code_views.message_form, name="message_code"),
        Route(f"{message}/sign-in-code", code_views.message_send, methods=["POST"],
              name="message_code_send"),
        Route(f"{message}/sign-in-code/check", code_views.message_check, methods=["POST"],
              name="message_code_check"),
        Route(f"{message}/verify", views.verify_form, name="verify_form"),
        Route(f"{message}/verify", views.verify, methods=["POST"], name="verify"),
        Route(f"{message}/forgot", account_views.message_forgot_form, name="message_forgot"),
        Route(f"{message}/forgot", account_views.message_forgot, methods=["POST"],
              name="message_forgot_submit"),
        Route(f"{message}/body", message_views.body, name="body"),
        Route(f"{message}/print", message_views.print_view, name="print"),
        Route(f"{message}/message.eml", message_views.export_message, name="export_message"),
        Route(f"{message}/conversation.eml", message_views.export_conversation,
              name="export_conversation"),
        Route(f"{message}/reply", reply_views.reply, methods=["POST"], name="reply"),
        Route(f"{message}/attachments/{{number:int}}", message_views.attachment, name="attachment"),
        Route(f"{message}/inline/{{number:int}}", message_views.inline, name="inline"),
        Route("/s/{token:str}", sender_views.status, name="sender_status"),
        Route("/s/{token:str}/revoke", sender_views.confirm_revoke, name="sender_revoke"),
        Route("/s/{token:str}/revoke", sender_views.revoke, methods=["POST"],
              name="sender_revoke_submit"),
        Route("/brand.css", brand_css, name="brand_css"),
        Route("/brand/logo", brand_logo, name="brand_logo"),
        Route("/favicon.ico", favicon),
        Mount("/static", PortalStatic(directory=STATIC_DIR), name="static"),
    ]


def create_app(config: Config, store: Storage, wake_queue: Callable[[], None] = lambda: None
               ) -> Starlette:
    secret = load_secret(config.storage_dir)
    secure = config.pickup.base_url.lower().startswith("https://")
    idle_timeout = parse_duration(config.pickup.session_idle_timeout, "pickup.session_idle_timeout")
    csrf = Csrf(secret, secure)
    brand = load_brand(config.pickup)
    app = Starlette(
        debug=False,  # never a traceback on a page
        routes=routes(),
        middleware=[Middleware(SecurityHeadersMiddleware, hsts=secure)],
        exception_handlers={
            HTTPException: views.http_error,
            CsrfError: views.csrf_error,
            Exception: views.server_error,
        },
    )
    app.state.portal = views.Portal(
        config=config,
        store=store,
        accounts=Accounts(store, secret, idle_timeout),
        resets=Resets(store),
        threads=Threads(store),
        csrf=csrf,
        pages=Pages(brand, csrf, config.pickup.templates_dir, config.pickup.default_language),
        mailer=Mailer(config.notify.from_, config.pickup.organization,
                      config.pickup.templates_dir),
        brand=brand,
        wake_queue=wake_queue,
        secure_cookies=secure,
    )
    return app
