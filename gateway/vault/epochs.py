"""Expiry epochs: the UTC day on which a stored message expires. Every pickup's data key is
wrapped by the key-encryption key (KEK) of its epoch, so once the last message of a day has
expired that day's KEK can be destroyed, and with it every copy of those messages.

Key ids (they sit in each blob's header and pickup row; alphanumeric, like the random hex
ids of the key ring before epochs):
    e<YYYYMMDD>g<generation>   the KEK of one epoch; `sealgate keys rotate` raises the
                               generation, so later pickups of the same day get a new KEK
    <8 hex digits>             a KEK of the ring before epochs ("legacy"): it still
                               decrypts what it wrapped and is destroyed once that expired
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

DAY = 86400.0
_EPOCH_KEY = re.compile(r"e(\d{8})g(\d+)")


def epoch_of(expires: float, now: float) -> date:
    """The epoch whose KEK wraps a pickup expiring at EXPIRES, stored at NOW: its UTC expiry
    day, never one already over (a key of a past day may be destroyed at any moment)."""
    return datetime.fromtimestamp(max(expires, now), UTC).date()


def epoch_key_id(epoch: date, generation: int) -> str:
    return f"e{epoch:%Y%m%d}g{generation}"


def key_epoch(key_id: str) -> date | None:
    """The epoch of KEY_ID; None for a key of the ring before epochs."""
    found = _EPOCH_KEY.fullmatch(key_id)
    if found is None:
        return None
    return datetime.strptime(found[1], "%Y%m%d").replace(tzinfo=UTC).date()


def epoch_end(epoch: date) -> float:
    """When EPOCH is over: UTC midnight after it. Its KEK may go from then on."""
    start = datetime(epoch.year, epoch.month, epoch.day, tzinfo=UTC)
    return (start + timedelta(days=1)).timestamp()
