"""Telling the original sender when a recipient cannot be notified (placeholder names)."""

from __future__ import annotations

NOTIFIED = "notified"
NOTIFICATION_FAILED = "notification-failed"
