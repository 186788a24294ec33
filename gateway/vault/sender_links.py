"""The sender's capability for one stored message: a link that shows the original sender
where each recipient's copy stands, and lets them revoke it.

A link is `LINK_ID.SECRET`: LINK_ID (64 random bits) finds the row, SECRET (256 random
bits, from `secrets`) proves the holder got the link; only SECRET's SHA-256 is stored and
it is compared in constant time, so neither the database nor the timing of a lookup gives
a working link away. A link is bound to the message (its queue id: every recipient's pickup
shares it) and to the envelope sender, and stops working when the last copy expires.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from gateway.storage.protocols import SenderLink, SenderLinkStore

LINK_ID_BYTES = 8
SECRET_BYTES = 32  # 256 bits: well beyond the 128 a capability needs
SENDER_PATH = "/s/"
_TOKEN = re.compile(r"^([0-9a-f]{16})\.([A-Za-z0-9_-]{43})$")


class NoStoredMessage(LookupError):
    """The message has no current pickup from that sender: there is nothing to link to."""


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _same_sender(a: str, b: str) -> bool:
    return a.strip().lower() == b.strip().lower()


def issue_sender_link(store: SenderLinkStore, message_id: str, sender: str) -> str:
    """A new link token for SENDER's message MESSAGE_ID (queue id); NoStoredMessage when no
    copy of it from SENDER is stored for pickup."""
    pickups = [p for p in store.message_pickups(message_id) if _same_sender(p.sender, sender)]
    if not pickups:
        raise NoStoredMessage(f"no stored message {message_id} from {sender}")
    link_id = secrets.token_hex(LINK_ID_BYTES)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    store.put_sender_link(SenderLink(link_id, _hash(secret), message_id, pickups[0].sender,
                                     store.clock(), max(p.expires for p in pickups)))
    return f"{link_id}.{secret}"


def sender_link_url(store: SenderLinkStore, base_url: str, message_id: str,
                    sender: str) -> str:
    """The URL of a new sender link for the receipt (pickup.base_url is BASE_URL);
    NoStoredMessage when nothing of the message is stored for SENDER."""
    return base_url.rstrip("/") + SENDER_PATH + issue_sender_link(store, message_id, sender)


def find_sender_link(store: SenderLinkStore, token: str) -> SenderLink | None:
    """The link TOKEN stands for, while it works; None for anything else (malformed, unknown,
    wrong secret, expired)."""
    match = _TOKEN.match(token)
    if match is None:
        return None
    link = store.get_sender_link(match.group(1))
    if link is None or not hmac.compare_digest(link.secret_hash, _hash(match.group(2))):
        return None
    return link
