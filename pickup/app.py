"""The pickup portal: where recipients of a secure message prove they own the address it
was sent to, then read it and download its attachments."""

from __future__ import annotations

import os
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from gateway.config import Config, parse_duration
from gateway.store import Store
from pickup import views
from pickup.accounts import Accounts
from pickup.pages import STATIC_DIR, Pages
from pickup.security import Csrf, CsrfError, SecurityHeadersMiddleware, load_secret


class PortalStatic(StaticFiles):
    """The stylesheet: may be cached, but revalidated (ETag) so an upgrade shows at once."""

    def file_response(self, full_path: str | os.PathLike[str], stat_result: os.stat_result,
                      scope: Scope, status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        return response


def routes() -> list[Route | Mount]:
    message = "/m/{pickup_id:str}"
    return [
        Route("/", views.home, name="home"),
        Route("/login", views.login_form, name="login"),
        Route("/login", views.login, methods=["POST"], name="login_submit"),
        Route("/logout", views.logout, methods=["POST"], name="logout"),
        Route(message, views.message, name="message"),
        Route(f"{message}/login", views.message_login, methods=["POST"], name="message_login"),
        Route(f"{message}/code", views.request_code, methods=["POST"], name="request_code"),
        Route(f"{message}/verify", views.verify_form, name="verify_form"),
        Route(f"{message}/verify", views.verify, methods=["POST"], name="verify"),
        Route(f"{message}/attachments/{{number:int}}", views.attachment, name="attachment"),
        Route(f"{message}/inline/{{number:int}}", views.inline, name="inline"),
        Mount("/static", PortalStatic(directory=STATIC_DIR), name="static"),
    ]


def create_app(config: Config, store: Store, wake_queue: Callable[[], None] = lambda: None
               ) -> Starlette:
    secret = load_secret(config.storage_dir)
    secure = config.pickup.base_url.lower().startswith("https://")
    idle_timeout = parse_duration(config.pickup.session_idle_timeout, "pickup.session_idle_timeout")
    csrf = Csrf(secret, secure)
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
        csrf=csrf,
        pages=Pages(config.pickup.organization, csrf),
        wake_queue=wake_queue,
        secure_cookies=secure,
    )
    return app
