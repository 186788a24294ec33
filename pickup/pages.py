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
from pickup import i18n
from pickup.brand import Brand
from pickup.mail import template_loader
from pickup.render import MAX_MIME_DEPTH, linkify, visible
from pickup.security import Csrf
from pickup.timezones import DEFAULT_ZONE

TEMPLATES = TEMPLATES_DIR
PORTAL_TEMPLATES = TEMPLATES / "portal"
STATIC_DIR = PORTAL_TEMPLATES / "static"


def filesize(size: int, language: str = "en") -> str:
    """'1.5 MB': in units of 1024, as file managers (and the 100 MB reply limit) count."""
    from babel.numbers import format_decimal
    if size < 1024:
        return i18n.translations(language).ngettext("%(num)d byte", "%(num)d bytes",
                                                    size) % {"num": size}
    value = float(size)
    for unit in ("KB", "MB", "GB"):  # noqa: B007 (unit is read after the loop)
        value /= 1024
        if value < 1024:
            break
    shown = format_decimal(round(value, 1) if value < 10 else round(value), "#,##0.#",
                           locale=language)
    return f"{shown} {unit}"


@jinja2.pass_context
def _filesize(context: Any, size: int) -> str:
    return filesize(size, context["language"])


def path_for(request: Request, name: str, /, **params: Any) -> str:
    """A path (no scheme or host) for route NAME, honouring the ASGI root_path."""
    return str(request.scope.get("root_path", "")) + str(request.app.url_path_for(name, **params))


@jinja2.pass_context
def _path_for(context: Any, name: str, /, **params: Any) -> str:
    return path_for(context["request"], name, **params)


@jinja2.pass_context
def _when(context: Any, value: float | datetime | None) -> str:
    return i18n.format_time(value, context["time_zone"], context["language"])


@jinja2.pass_context
def _day(context: Any, value: float | datetime | None) -> str:
    return i18n.format_day(value, context["time_zone"], context["language"])


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
    i18n.install(env)
    env.filters["when"] = _when
    env.filters["day"] = _day
    env.filters["filesize"] = _filesize
    env.filters["linkify"] = linkify
    env.filters["visible"] = visible  # envelope addresses: bidi controls written out
    env.globals["path_for"] = _path_for
    env.globals["max_mime_depth"] = MAX_MIME_DEPTH
    env.globals["native_name"] = i18n.native_name
    return env


def language_of(request: Request, default: str) -> str:
    """The page language of REQUEST (see pickup.i18n), decided once per request."""
    if hasattr(request.state, "language"):
        found: str = request.state.language
        return found
    user = getattr(request.state, "user", None)
    language = i18n.request_language(request.cookies.get(i18n.LANGUAGE_COOKIE),
                                     user.language if user else None,
                                     request.headers.get("accept-language", ""), default)
    request.state.language = language
    return language


class Pages:
    def __init__(self, brand: Brand, csrf: Csrf, templates_dir: str = "",
                 default_language: str = "en") -> None:
        self.brand = brand
        self.csrf = csrf
        self.default_language = default_language
        self.templates = Jinja2Templates(env=portal_environment(templates_dir))

    def render(self, request: Request, name: str, context: dict[str, Any] | None = None,
               status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
        def csrf_token() -> str:
            # Called by templates that contain a form; only those mint a CSRF cookie.
            return self.csrf.form_token(self.csrf.cookie_for(request))

        user = getattr(request.state, "user", None)
        language = language_of(request, self.default_language)
        values: dict[str, Any] = {
            "language": language,
            "languages": i18n.languages(),
            "here": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
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
