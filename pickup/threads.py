"""Pickups as the portal sees them: messages stored by the gateway, and the recipient's
replies stored under the message they answer (its thread), through the storage's
PickupStore."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.storage.protocols import Pickup, PickupStore

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


def _item(pickup: Pickup) -> Item:
    return Item(pickup, pickup.kind, pickup.thread_id or "", pickup.replied_at)


class Threads:
    def __init__(self, store: PickupStore) -> None:
        self.store = store

    def get(self, pickup_id: str) -> Item | None:
        """The pickup while it has not expired."""
        found = self.store.get_pickup(pickup_id)
        return _item(found) if found else None

    def inbox(self, address: str) -> list[Item]:
        """Every current message for ADDRESS, newest first (replies live in their threads)."""
        return [_item(p) for p in self.store.inbox(address)]

    def replies(self, root: Item) -> list[Item]:
        """The replies in ROOT's thread, oldest first; only those of the thread's owner."""
        return [_item(p) for p in self.store.thread_replies(root.id, root.pickup.recipient)]

    def store_reply(self, root: Item, queue_id: str, size: int, author: str, to: str) -> str:
        """Encrypt the spooled reply into ROOT's thread and queue it for TO through the
        internal relay, in one unit of work: the queue runner cannot remove the spool file
        before the encrypted copy exists. Returns the reply's pickup id."""
        return self.store.store_reply(root.id, queue_id, author, to, size)
