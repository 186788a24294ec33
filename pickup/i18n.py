"""The portal's languages: Babel catalogs (templates/locale/LANG/LC_MESSAGES/messages.mo),
the language of a request, and dates and times formatted for it.

English is the source language (the msgids); every other language is a catalog shipped in
the templates package, so adding one is dropping its messages.po and messages.mo in
(gateway.config.portal_languages lists what is there). The .mo files are compiled from the
.po files and committed (tests/test_portal_languages.py checks they match), so a fresh
clone installs and runs without a compile step.

A request's language: the visitor's choice (the language cookie, set by the switcher on
every page), else the signed-in account's saved choice, else the best match of the
browser's Accept-Language, else pickup.default_language.
"""

from __future__ import annotations

import gettext as gettext_module
from collections.abc import Callable
from datetime import datetime, timezone
from functools import cache
from typing import Any

import jinja2
from babel import Locale
from babel.dates import format_date, format_datetime
from babel.support import Translations

from gateway.config import portal_languages
from gateway.resources import TEMPLATES_DIR
from pickup.timezones import zone_info

LOCALE_DIR = TEMPLATES_DIR / "locale"
LANGUAGE_COOKIE = "sealgate_language"
# Each language named in itself, for the switcher.
NATIVE_NAMES = {"en": "English", "es": "Español"}

Gettext = Callable[[str], str]


def languages() -> tuple[str, ...]:
    return portal_languages()


def native_name(language: str) -> str:
    return NATIVE_NAMES.get(language) or Locale.parse(language).get_display_name(language) \
        or language


def supported(language: str | None) -> str | None:
    """LANGUAGE when the portal speaks it, else None."""
    if not language:
        return None
    language = language.strip().lower().replace("_", "-").partition("-")[0]
    return language if language in languages() else None


@cache
def translations(language: str) -> gettext_module.NullTranslations:
    """The catalog for LANGUAGE (English: the msgids themselves)."""
    if language == "en" or language not in languages():
        return gettext_module.NullTranslations()
    return Translations.load(str(LOCALE_DIR), [language], domain="messages")


def gettext_for(language: str) -> Gettext:
    return translations(language).gettext


def from_accept_language(header: str) -> str | None:
    """The best language of an Accept-Language header that the portal speaks."""
    choices: list[tuple[float, int, str]] = []
    for position, item in enumerate(header.split(",")[:32]):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                continue
        found = supported(tag)
        if found and quality > 0:
            choices.append((-quality, position, found))
    return min(choices)[2] if choices else None


def request_language(cookie: str | None, saved: str | None, accept_language: str,
                     default: str) -> str:
    return (supported(cookie) or supported(saved) or from_accept_language(accept_language)
            or supported(default) or "en")


# -- dates and times -------------------------------------------------------------------------

def date_locale(language: str) -> str:
    """English dates day first ('23 Nov 2026'), as the portal always wrote them."""
    return "en_GB" if language == "en" else language


def _moment(value: float | datetime) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromtimestamp(value, timezone.utc)


def format_time(value: float | datetime | None, zone: str, language: str) -> str:
    """'23 Nov 2026, 16:04 CET' or '23 nov 2026, 16:04 CET': date, time and the zone's
    abbreviation (a screenshot or a printout still says which zone), in the language."""
    if value is None:
        return ""
    local = _moment(value).astimezone(zone_info(zone))
    return format_datetime(local, "dd MMM y, HH:mm", locale=date_locale(language)) + " " + (
        local.tzname() or zone)


def format_day(value: float | datetime | None, zone: str, language: str) -> str:
    """'14 Dec 2026' / '14 dic 2026': for deletion dates, where the hour is noise."""
    if value is None:
        return ""
    return format_date(_moment(value).astimezone(zone_info(zone)), "dd MMM y",
                       locale=date_locale(language))


# -- Jinja2 ----------------------------------------------------------------------------------

@jinja2.pass_context
def _gettext(context: Any, message: str) -> str:
    result: str = translations(context["language"]).gettext(message)
    return result


@jinja2.pass_context
def _ngettext(context: Any, singular: str, plural: str, n: int) -> str:
    translated = translations(context["language"])
    result: str = translated.ngettext(singular, plural, n)
    return result


def install(env: jinja2.Environment) -> None:
    """The i18n extension's gettext reads the language of the page being rendered (the
    render context's gettext_function), so one environment serves every language."""
    env.add_extension("jinja2.ext.i18n")
    env.policies["ext.i18n.trimmed"] = True  # a paragraph is one msgid, whatever its line breaks
    env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext=_gettext, ngettext=_ngettext, newstyle=True)
