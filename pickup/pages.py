"""HTML pages: the Jinja2 environment (autoescaping on), the filters the templates use and
one render function that adds what every page needs (organization, signed-in user, the
CSRF token for its forms)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from pickup.security import Csrf

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
PORTAL_TEMPLATES = TEMPLATES / "portal"
STATIC_DIR = PORTAL_TEMPLATES / "static"


def utc(value: float | datetime | None) -> str:
    """'23 Nov 2026, 15:04 UTC': one unambiguous format until users can pick a time zone."""
    if value is None:
        return ""
    moment = value if isinstance(value, datetime) else datetime.fromtimestamp(value, timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%d %b %Y, %H:%M UTC")


def filesize(size: int) -> str:
    if size < 1000:
        return "1 byte" if size == 1 else f"{size} bytes"
    value = float(size)
    for unit in ("KB", "MB", "GB"):
        value /= 1000
        if value < 1000:
            break
    return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"


def path_for(request: Request, name: str, /, **params: Any) -> str:
    """A path (no scheme or host) for route NAME, honouring the ASGI root_path."""
    return str(request.scope.get("root_path", "")) + str(request.app.url_path_for(name, **params))


@jinja2.pass_context
def _path_for(context: Any, name: str, /, **params: Any) -> str:
    return path_for(context["request"], name, **params)


class Pages:
    def __init__(self, organization: str, csrf: Csrf) -> None:
        self.organization = organization
        self.csrf = csrf
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(PORTAL_TEMPLATES),
            autoescape=True,  # every .html here, whatever select_autoescape would guess
            undefined=jinja2.StrictUndefined,  # a typo in a template fails its test, not silently
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters["utc"] = utc
        env.filters["filesize"] = filesize
        env.globals["path_for"] = _path_for
        self.templates = Jinja2Templates(env=env)

    def render(self, request: Request, name: str, context: dict[str, Any] | None = None,
               status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
        def csrf_token() -> str:
            # Called by templates that contain a form; only those mint a CSRF cookie.
            return self.csrf.form_token(self.csrf.cookie_for(request))

        values: dict[str, Any] = {
            "organization": self.organization,
            "user": getattr(request.state, "user", None),
            "csrf_token": csrf_token,
            "errors": {},
            "values": {},
            "notice": "",
        }
        values.update(context or {})
        response = self.templates.TemplateResponse(request, name, values, status_code=status_code,
                                                   headers=headers)
        self.csrf.finish(request, response)  # the template has rendered by now
        return response
