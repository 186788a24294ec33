"""Retention: 21 days by default; X-Sealgate-Expires shortens it, never beyond the maximum."""

from __future__ import annotations

import pytest

from gateway.vault.retention import DAY, expiry_time

RECEIVED = 1_800_000_000.0


def expiry(header: str | None) -> float:
    return expiry_time(RECEIVED, header, retention_days=21, max_retention_days=30, now=RECEIVED)


def test_default_is_retention_days_after_receipt() -> None:
    assert expiry(None) == RECEIVED + 21 * DAY


@pytest.mark.parametrize("header, days", [("7d", 7), ("12h", 0.5), (" 2w ", 14)])
def test_duration_header_sets_the_expiry(header: str, days: float) -> None:
    assert expiry(header) == RECEIVED + days * DAY


def test_rfc5322_date_header_sets_the_expiry() -> None:
    # 1_800_000_000 is Fri, 15 Jan 2027 08:00:00 +0000; three days later:
    assert expiry("Mon, 18 Jan 2027 08:00:00 +0000") == RECEIVED + 3 * DAY


def test_header_can_never_exceed_the_maximum_retention() -> None:
    assert expiry("90d") == RECEIVED + 30 * DAY


@pytest.mark.parametrize("header", ["soon", "Mon, 18 Jan 2027", "Thu, 01 Jan 2026 00:00:00 +0000"])
def test_unusable_header_keeps_the_default(header: str) -> None:
    assert expiry(header) == RECEIVED + 21 * DAY
