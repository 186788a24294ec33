"""Pickups as the portal sees them: messages stored by the gateway, and the recipient's
replies stored under the message they answer (its thread).

These are portal queries over the store's pickups table (with the columns the portal's
migration added); they belong in the Store interface once a second back-end exists.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from gateway.storage.store import Pickup, Route, Store

MESSAGE, REPLY = "message", "reply"


@dataclass(frozen=True)
class Item:
    pickup: Pickup
    kind: str
    thread_id: str  # for a reply, the message it belongs under; empty for a message
    replied_at: float | None

    @property
    def id(self) -> str:
        return self.pickup.id

    @property
    def root_id(self) -> str:
        return self.thread_id if self.kind == REPLY else self.pickup.id


def _item(row: sqlite3.Row) -> Item:
    pickup = Pickup(row["id"], row["message_id"], row["sender"], row["recipient"], row["created"],
                    row["expires"], row["read_at"], row["size"])
    return Item(pickup, row["kind"], row["thread_id"] or "", row["replied_at"])


class Threads:
    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, pickup_id: str) -> Item | None:
        """The pickup while it has not expired."""
        rows = self.store.query("SELECT * FROM pickups WHERE id=? AND expires > ?",
                                (pickup_id, self.store.clock()))
        return _item(rows[0]) if rows else None

    def inbox(self, address: str) -> list[Item]:
        """Every current message for ADDRESS, newest first (replies live in their threads)."""
        rows = self.store.query(
            "SELECT * FROM pickups WHERE recipient=? AND kind=? AND expires > ?"
            " ORDER BY created DESC, rowid DESC", (address, MESSAGE, self.store.clock()))
        return [_item(row) for row in rows]

    def replies(self, root: Item) -> list[Item]:
        """The replies in ROOT's thread, oldest first; only those of the thread's owner."""
        rows = self.store.query(
            "SELECT * FROM pickups WHERE thread_id=? AND kind=? AND recipient=? AND expires > ?"
            " ORDER BY created, rowid", (root.id, REPLY, root.pickup.recipient, self.store.clock()))
        return [_item(row) for row in rows]

    def store_reply(self, root: Item, queue_id: str, size: int, author: str, to: str) -> str:
        """Encrypt the spooled reply into ROOT's thread and queue it for TO through the
        internal relay, in one transaction: the queue runner cannot remove the spool file
        before the encrypted copy exists. Returns the reply's pickup id."""
        owner = root.pickup.recipient

        def queue_and_link(db: sqlite3.Connection, pickup_id: str) -> None:
            self.store.insert_queue_rows(db, queue_id, author, [Route(to, mode="internal")], size)
            db.execute("UPDATE pickups SET kind=?, thread_id=? WHERE id=?",
                       (REPLY, root.id, pickup_id))
            db.execute("UPDATE pickups SET replied_at=? WHERE id=?",
                       (self.store.clock(), root.id))

        return self.store.store_pickup(queue_id, sender=author, recipient=owner,
                                       expires=root.pickup.expires, then=queue_and_link)
