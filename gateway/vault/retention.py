"""When a stored message is destroyed: pickup.retention_days after it was received, or what
the sender asked for with X-Sealgate-Expires (a duration like 7d, or an RFC 5322 date),
never beyond pickup.max_retention_days."""

from __future__ import annotations

import email.utils
import logging

from gateway.config import ConfigError, parse_duration

log = logging.getLogger("sealgate.retention")
EXPIRES_HEADER = "X-Sealgate-Expires"
DAY = 86400.0


def requested_expiry(value: str, received: float) -> float | None:
    """The absolute time VALUE asks for, or None when it is not understood."""
    value = value.strip()
    try:
        return received + parse_duration(value, EXPIRES_HEADER)
    except ConfigError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return when.timestamp() if when.tzinfo else None


def expiry_time(received: float, header: str | None, retention_days: int,
                max_retention_days: int, now: float) -> float:
    default = received + retention_days * DAY
    if not header:
        return default
    asked = requested_expiry(header, received)
    if asked is None or asked <= now:
        log.warning("ignoring %s: %r (not a duration or a future RFC 5322 date)",
                    EXPIRES_HEADER, header)
        return default
    return min(asked, received + max_retention_days * DAY)
