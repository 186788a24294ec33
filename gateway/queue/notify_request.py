"""What a recipient's NOTIFY (RFC 3461 4.1) and the policy ask to be told, and the DSN
request the deliverer passes on to a next hop that offers DSN.

No NOTIFY: failures and delays, as an MTA does without the extension (RFC 3461 4.1);
NEVER: nothing, not even the receipt the policy asks for (the sender said so).
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.delivery.dsn_options import DSNRequest
from gateway.storage.protocols import QueuedRecipient

__all__ = ["dsn_request", "wants_delay", "wants_failure", "wants_receipt"]


def _events(item: QueuedRecipient) -> set[str]:
    return set(item.notify.split(",")) if item.notify else set()


def wants_failure(item: QueuedRecipient) -> bool:
    return not item.notify or "FAILURE" in _events(item)


def wants_delay(item: QueuedRecipient) -> bool:
    return not item.notify or "DELAY" in _events(item)


def wants_receipt(item: QueuedRecipient) -> bool:
    """NOTIFY=SUCCESS, or the policy's receipt for confidential mail (unless NEVER); never
    for a null sender (RFC 3461 6.1: nobody to tell)."""
    if not item.sender or item.notify == "NEVER":
        return False
    return "SUCCESS" in _events(item) or item.receipt


def dsn_request(items: Sequence[QueuedRecipient]) -> DSNRequest:
    """The request of ITEMS (one message) for the next hop. RET=FULL goes on as HDRS when
    a copy is confidential: a next hop's failure report must not carry the body back."""
    first = items[0]
    ret = first.dsn.ret
    if ret == "FULL" and any(i.confidential for i in items):
        ret = "HDRS"
    return DSNRequest(ret, first.dsn.envid, {i.rcpt: i.notify for i in items},
                      {i.rcpt: i.orcpt for i in items})
