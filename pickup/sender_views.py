"""The sender's pages, reached by the link in their receipt (gateway.vault.sender_links): where
each recipient's copy stands (stored, notified, opened, downloaded, replied, expires) and a
Revoke button that destroys every copy at once.

The link is the only credential, so the rules are strict: a GET only shows (link scanners
open every link in a mail), revoking is a POST from the confirmation page with the portal's
CSRF token, an unknown, wrong or expired link gets the same 404, and every view and revoke
is written to the audit trail of each copy (`sealgate pickup audit ID`), with the client.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from gateway.storage.protocols import AuditEvent, Pickup, SenderLink, Storage
from gateway.vault.sender_links import find_sender_link
from gateway.vault.unnotified import NOTIFICATION_DELAYED, NOTIFICATION_FAILED, NOTIFIED
from pickup.views import client_ip, not_found, page, portal, read_form, redirect

DOWNLOADS = ("download", "export")
SENDER_VIEW, REVOKED = "sender-view", "revoked"


@dataclass(frozen=True)
class RecipientStatus:
    """One recipient's copy as its sender sees it; times are None for what has not happened."""

    recipient: str
    stored: float
    notified: float | None
    notification_delayed: float | None  # still being retried at delivery.delay_warning
    notification_failed: float | None
    opened: float | None
    downloaded: float | None
    replied: float | None
    expires: float


def _first(events: list[AuditEvent], names: tuple[str, ...]) -> float | None:
    return next((e.at for e in events if e.event in names), None)


def recipient_status(store: Storage, pickup: Pickup) -> RecipientStatus:
    events = store.audit_events(pickup.id)
    return RecipientStatus(pickup.recipient, pickup.created, _first(events, (NOTIFIED,)),
                           _first(events, (NOTIFICATION_DELAYED,)),
                           _first(events, (NOTIFICATION_FAILED,)), pickup.read_at,
                           _first(events, DOWNLOADS), pickup.replied_at, pickup.expires)


def _link(request: Request) -> SenderLink:
    link = find_sender_link(portal(request).store, request.path_params["token"])
    if link is None:
        raise not_found()
    return link


def _copies(store: Storage, link: SenderLink) -> list[Pickup]:
    """The current copies of the link's message from its sender (the link is bound to both)."""
    return [p for p in store.message_pickups(link.message_id)
            if p.sender.lower() == link.sender.lower()]


def _audit(request: Request, link: SenderLink, copies: list[Pickup], event: str,
           detail: str) -> None:
    """EVENT in the trail of each copy; once none is left, in the message's (its queue id)."""
    store, client = portal(request).store, client_ip(request)
    for pickup_id in [p.id for p in copies] or [link.message_id]:
        store.audit(pickup_id, event, client, detail)


def status(request: Request) -> Response:
    link = _link(request)
    store = portal(request).store
    copies = _copies(store, link)
    _audit(request, link, copies, SENDER_VIEW, f"sender link {link.link_id}")
    return page(request, "sender_status.html", {
        "link": link, "token": request.path_params["token"],
        "recipients": [recipient_status(store, p) for p in copies]})


def confirm_revoke(request: Request) -> Response:
    link = _link(request)
    copies = _copies(portal(request).store, link)
    if not copies:  # nothing left to revoke: the status page says why
        return redirect(request, "sender_status", token=request.path_params["token"])
    return page(request, "sender_revoke.html", {
        "link": link, "token": request.path_params["token"],
        "recipients": [p.recipient for p in copies]})


async def revoke(request: Request) -> Response:
    await read_form(request)  # the CSRF check
    return await run_in_threadpool(_revoke, request)


def _revoke(request: Request) -> Response:
    link = _link(request)
    store = portal(request).store
    copies = _copies(store, link)
    destroyed = sum(store.destroy_conversation(p.id) for p in copies)
    # The copies' rows are gone, their trails stay: each says who revoked it and how.
    _audit(request, link, copies, REVOKED,
           f"revoked by the sender {link.sender} with sender link {link.link_id}"
           f" ({destroyed} stored messages)")
    store.mark_sender_link_revoked(link.link_id)
    return redirect(request, "sender_status", token=request.path_params["token"])
