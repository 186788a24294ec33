"""Time zones: which ones a user may choose, and time stamps shown in the chosen one.

Zone names come from the system's tz database (Debian's tzdata); where it is missing, UTC
is the only choice rather than a crash.
"""

from __future__ import annotations

import zoneinfo
from datetime import datetime, timezone, tzinfo
from functools import cache

DEFAULT_ZONE = "UTC"


@cache
def zone_names() -> tuple[str, ...]:
    """Choosable zones, sorted; the legacy aliases (e.g. 'US/Eastern', 'EST5EDT') are left
    out of the list but still accepted when a browser reports one."""
    try:
        names = zoneinfo.available_timezones()
    except Exception:  # no tz database at all
        names = set()
    listed = {n for n in names if "/" in n and not n.startswith(("Etc/", "SystemV/", "US/"))}
    return tuple(sorted(listed | {DEFAULT_ZONE}))


def valid_zone(name: str) -> str | None:
    """NAME if it is a zone this machine knows, else None."""
    if name == DEFAULT_ZONE:
        return name
    if not name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
        return None
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None
    return name


@cache
def zone_info(name: str) -> tzinfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return timezone.utc


def _moment(value: float | datetime) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromtimestamp(value, timezone.utc)


def format_time(value: float | datetime | None, zone: str = DEFAULT_ZONE) -> str:
    """'23 Nov 2026, 16:04 CET': date, time and the zone's abbreviation, so a screenshot or
    a printout still says which zone it was."""
    if value is None:
        return ""
    local = _moment(value).astimezone(zone_info(zone))
    return local.strftime("%d %b %Y, %H:%M ") + (local.tzname() or zone)


def format_day(value: float | datetime | None, zone: str = DEFAULT_ZONE) -> str:
    """'14 Dec 2026': for deletion dates, where the hour is noise."""
    if value is None:
        return ""
    return _moment(value).astimezone(zone_info(zone)).strftime("%d %b %Y")
