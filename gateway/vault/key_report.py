"""What `sealgate keys list` shows: every key-encryption key there is, with its epoch, the
stored messages it wraps and when purge destroys it, then the keys already destroyed (from
the audit trail)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gateway.storage.protocols import KeyStore
from gateway.vault.shredding import key_status


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def key_rows(store: KeyStore, now: float) -> list[dict[str, Any]]:
    """One row per key, live ones first (by destruction date), then the destroyed ones."""
    live = sorted((key_status(u) for u in store.key_usage()),
                  key=lambda s: (s.destroyed_from, s.key_id))
    rows: list[dict[str, Any]] = [{
        "key_id": s.key_id,
        "epoch": s.epoch.isoformat() if s.epoch else None,
        "messages": s.pickups,
        "state": "live",
        # destroyed by the first purge from then on, once none of its messages is left
        "destroyed": _iso(max(s.destroyed_from, now) if s.pickups == 0 else s.destroyed_from),
    } for s in live]
    for event in store.key_destructions():
        key_id = event.pickup_id.removeprefix("key:")
        epoch = event.detail.removeprefix("epoch ") if event.detail.startswith("epoch ") else None
        rows.append({"key_id": key_id, "epoch": epoch, "messages": 0, "state": "destroyed",
                     "destroyed": _iso(event.at)})
    return rows


def format_key_rows(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no key-encryption keys yet (each is made with the first message of its epoch)"
    lines = [f"{'KEY':<14} {'EPOCH':<13} {'MESSAGES':>8}  DESTROYED"]
    for row in rows:
        epoch = row["epoch"] or "before epochs"
        when = row["destroyed"]
        if row["state"] == "live":
            when = f"from {when}" if row["messages"] else f"at the next purge from {when}"
        lines.append(f"{row['key_id']:<14} {epoch:<13} {row['messages']:>8}  {when}")
    return "\n".join(lines)
