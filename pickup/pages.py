"""HTML pages: the Jinja2 environment (autoescaping on), the filters the templates use and
one render function that adds what every page needs (organization, signed-in user, the
CSRF token for its forms, the time zone to show times in)."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from gateway.resources import TEMPLATES_DIR
from pickup.brand import Brand
from pickup.mail import template_loader
from pickup.render import MAX_MIME_DEPTH, linkify, visible
from pickup.security import Csrf
from pickup.timezones import DEFAULT_ZONE, format_day, format_time

TEMPLATES = TEMPLATES_DIR
PORTAL_TEMPLATES = TEMPLATES / "portal"
STATIC_DIR = PORTAL_TEMPLATES / "static"


def filesize(size: int) -> str:
    """'1.5 MB': in units of 1024, as file managers (and the 100 MB reply limit) count."""
    if size < 1024:
        return "1 byte" if size == 1 else f"{size} bytes"
    value = float(size)
    for unit in ("KB", "MB", "GB"):  # noqa: B007 (unit is read after the loop)
        value /= 1024
        if value < 1024:
            break
    return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"


def path_for(request: Request, name: str, /, **params: Any) -> str:
    """A path (no scheme or host) for route NAME, honouring the ASGI root_path."""
    return str(request.scope.get("root_path", "")) + str(request.app.url_path_for(name, **params))


@jinja2.pass_context
def _path_for(context: Any, name: str, /, **params: Any) -> str:
    return path_for(context["request"], name, **params)


@jinja2.pass_context
def _when(context: Any, value: float | datetime | None) -> str:
    return format_time(value, context["time_zone"])


@jinja2.pass_context
def _day(context: Any, value: float | datetime | None) -> str:
    return format_day(value, context["time_zone"])


@cache
def portal_environment(templates_dir: str) -> jinja2.Environment:
    """Templates from TEMPLATES_DIR/portal first, when configured, then the package's.
    One environment per directory, so templates are compiled once per process, however
    many apps are made (tests make one each)."""
    override = str(Path(templates_dir) / "portal") if templates_dir else ""
    env = jinja2.Environment(
        loader=template_loader(override, PORTAL_TEMPLATES),
        autoescape=True,  # every .html here, whatever select_autoescape would guess
        undefined=jinja2.StrictUndefined,  # a typo in a template fails its test, not silently
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["day"] = _day
    env.filters["filesize"] = filesize
    env.filters["linkify"] = linkify
    env.filters["visible"] = visible  # envelope addresses: bidi controls written out
    env.globals["path_for"] = _path_for
    env.globals["max_mime_depth"] = MAX_MIME_DEPTH
    return env


class Pages:
    def __init__(self, brand: Brand, csrf: Csrf, templates_dir: str = "") -> None:
        self.brand = brand
        self.csrf = csrf
        self.templates = Jinja2Templates(env=portal_environment(templates_dir))

    def render(self, request: Request, name: str, context: dict[str, Any] | None = None,
               status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
        def csrf_token() -> str:
            # Called by templates that contain a form; only those mint a CSRF cookie.
            return self.csrf.form_token(self.csrf.cookie_for(request))

        user = getattr(request.state, "user", None)
        values: dict[str, Any] = {
            "organization": self.brand.organization,
            "has_logo": self.brand.logo is not None,
            "user": user,
            "time_zone": user.time_zone if user else DEFAULT_ZONE,
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
