"""Reading: the inbox, a message with its thread of replies, the message body frame, the
print view, and attachment downloads. Every one needs a signed-in owner."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from email.header import Header
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gateway.storage.protocols import MessageStream, PickupStore
from gateway.vault.crypto import DecryptionError
from pickup import render
from pickup.accounts import User
from pickup.pages import path_for
from pickup.security import BODY_CONTENT_SECURITY_POLICY
from pickup.threads import MESSAGE, Item
from pickup.views import (
    anonymous_message,
    client_ip,
    current_user,
    login_page,
    not_found,
    owned_item,
    page,
    portal,
    redirect,
)

# What keeps a stored message from being shown: its blob is unreadable or fails to
# decrypt (tampered, or written by another key), or what it decrypts to cannot be parsed.
DAMAGED = (OSError, DecryptionError, render.UnreadableMessage)


def read(store: PickupStore, pickup_id: str) -> render.ReadMessage:
    """The pickup read as a stream: a large message never sits whole in memory."""
    with store.open_pickup_stream(pickup_id) as stream:
        return render.read_message(stream)


def read_headers(store: PickupStore, pickup_id: str) -> bytes:
    with store.open_pickup_stream(pickup_id) as stream:
        return render.header_section(stream)


@dataclass(frozen=True)
class Entry:
    """One message of a thread, ready for a template."""

    item: Item
    view: render.MessageView
    is_reply: bool


# -- pages -----------------------------------------------------------------------------------

def home(request: Request) -> Response:
    user = current_user(request)
    if user is None:
        return login_page(request)
    return inbox(request, user)


def message(request: Request) -> Response:
    """A notification link: the thread when signed in as its owner, otherwise the first
    step (verification code) or the sign-in form for the message's address."""
    user = current_user(request)
    if user is not None:
        item = owned_item(request, user)
        if item.kind != MESSAGE:
            return redirect(request, "message", fragment=f"reply-{item.id}",
                            pickup_id=item.root_id)
        return show_thread(request, user, item)
    found = anonymous_message(request)
    if isinstance(found, Response):
        return found
    if portal(request).accounts.get_user(found.pickup.recipient) is not None:
        return login_page(request, found)
    return page(request, "start.html", {"pickup": found.pickup})


def inbox(request: Request, user: User) -> Response:
    store = portal(request).store
    items = []
    for item in portal(request).threads.inbox(user.address):
        try:
            summary: render.Summary | None = render.summary(read_headers(store, item.id))
        except KeyError:
            continue  # expired a moment ago
        except DAMAGED:
            summary = None  # listed as damaged: opening it explains
        items.append({"pickup": item.pickup, "summary": summary, "replied": item.replied_at})
    return page(request, "inbox.html", {"items": items})


def thread_entries(request: Request, root: Item) -> list[Entry] | None:
    """ROOT and its replies, decrypted and parsed; None when ROOT cannot be opened."""
    app = portal(request)
    entries = []
    for item in [root, *app.threads.replies(root)]:
        try:
            view = render.message_view(read(app.store, item.id))
        except KeyError:
            if item is root:
                raise not_found() from None
            continue
        except DAMAGED:
            app.store.audit(item.id, "open-failed", client_ip(request))
            if item is root:
                return None
            continue
        entries.append(Entry(item, view, item is not root))
    return entries


def damaged_page(request: Request, reply_not_sent: bool = False) -> Response:
    """The message cannot be opened: say so, in the portal's layout (never a traceback)."""
    return page(request, "error.html", {"kind": "damaged", "reply_not_sent": reply_not_sent,
                                        "here": "/"}, 500)


def show_thread(request: Request, user: User, root: Item, status_code: int = 200,
                reply: dict[str, Any] | None = None) -> Response:
    app = portal(request)
    entries = thread_entries(request, root)
    if entries is None:
        return damaged_page(request, reply_not_sent=reply is not None)
    app.store.mark_pickup_read(root.id)
    agent = request.headers.get("user-agent", "")[:200]
    app.store.audit(root.id, "open", client_ip(request), agent)
    return page(request, "message.html", {
        "pickup": root.pickup, "entries": entries, "notice": request.query_params.get("notice", ""),
        "reply": reply or {"values": {}, "errors": {}},
        "max_reply_size": app.config.pickup.max_reply_size,
    }, status_code)


def print_view(request: Request) -> Response:
    """The whole thread on one page without navigation, for paper or PDF. HTML bodies are
    inline here (without the sender's styling: the page's CSP allows none)."""
    user = current_user(request)
    if user is None:
        return redirect(request, "message", pickup_id=request.path_params["pickup_id"])
    root = owned_item(request, user)
    if root.kind != MESSAGE:
        return redirect(request, "print", pickup_id=root.root_id)
    entries = thread_entries(request, root)
    if entries is None:
        return damaged_page(request)
    bodies = {}
    for entry in entries:
        if entry.view.has_html:
            try:
                raw = read(portal(request).store, entry.item.id)
            except (KeyError, *DAMAGED):
                continue  # gone or damaged since thread_entries opened it: no text shown
            bodies[entry.item.id] = render.body_html(raw, _inline_url(request, entry.item), False)
    return page(request, "print.html", {"pickup": root.pickup, "entries": entries,
                                        "bodies": bodies})


def body(request: Request) -> Response:
    """The sanitized HTML body as a document of its own, for the sandboxed frame of the
    message page, with its own CSP (see BODY_CONTENT_SECURITY_POLICY)."""
    user = current_user(request)
    if user is None:
        raise not_found()
    item = owned_item(request, user)
    try:
        html = render.body_html(read(portal(request).store, item.id), _inline_url(request, item),
                                True)
    except (KeyError, *DAMAGED):
        raise not_found() from None
    if html is None:
        raise not_found()
    return page(request, "body.html", {"html": html}, headers={
        "Content-Security-Policy": BODY_CONTENT_SECURITY_POLICY,
        "X-Frame-Options": "SAMEORIGIN",
    })


def _inline_url(request: Request, item: Item) -> Any:
    def url(number: int) -> str:
        return path_for(request, "inline", pickup_id=item.id, number=number)
    return url


# -- files -----------------------------------------------------------------------------------

def open_attachment(request: Request) -> tuple[Item, render.Download, MessageStream] | Response:
    """The attachment asked for, with the message's stream open for sending it (the
    response closes it)."""
    user = current_user(request)
    if user is None:  # signed out meanwhile: the message page asks to sign in
        return redirect(request, "message", pickup_id=request.path_params["pickup_id"])
    item = owned_item(request, user)
    try:
        stream = portal(request).store.open_pickup_stream(item.id)
    except (KeyError, *DAMAGED):
        raise not_found() from None
    try:
        download = render.attachment(render.read_message(stream), request.path_params["number"])
    except DAMAGED:
        stream.close()
        raise not_found() from None
    except BaseException:
        stream.close()
        raise
    if download is None:
        stream.close()
        raise not_found()
    return item, download, stream


def file_response(download: render.Download, stream: MessageStream,
                  headers: dict[str, str]) -> Response:
    """DOWNLOAD as a response: whole when it is small, else streamed from the message with
    its Content-Length, so that a copy changed while it is sent ends as a truncated
    download (the browser reports it failed), never as a complete file."""
    if download.extent is None:
        stream.close()
        return Response(download.data, headers=headers)

    def chunks() -> Iterator[bytes]:
        try:
            yield from render.attachment_chunks(stream, download)
        finally:
            stream.close()

    return StreamingResponse(chunks(), headers={**headers,
                                                "Content-Length": str(download.size)})


def attachment(request: Request) -> Response:
    found = open_attachment(request)
    if isinstance(found, Response):
        return found
    item, download, stream = found
    portal(request).store.audit(item.root_id, "download", client_ip(request), download.filename)
    return file_response(download, stream, {
        "Content-Type": download.content_type_header,
        "Content-Disposition": render.content_disposition(download.filename),
        "X-Content-Type-Options": "nosniff",
    })


def inline(request: Request) -> Response:
    """An image the HTML body shows by cid:, only in formats that cannot carry script."""
    found = open_attachment(request)
    if isinstance(found, Response):
        return found
    _, download, stream = found
    if download.content_type not in render.INLINE_IMAGE_TYPES:
        stream.close()
        raise not_found()
    return file_response(download, stream, {
        "Content-Type": download.content_type,
        "Content-Disposition": render.content_disposition(download.filename, "inline"),
        "X-Content-Type-Options": "nosniff",
    })


# -- export before deletion ------------------------------------------------------------------

def _export_name(subject: str, suffix: str) -> str:
    """A file name from the subject: letters, digits and a few marks, at most 60 of them."""
    kept = "".join(ch if ch.isalnum() or ch in " -_.,()" else " " for ch in subject)
    name = " ".join(kept.split())[:60].strip(" .") or "message"
    return f"{name}{suffix}.eml"


def _export_response(request: Request, root: Item, streams: list[MessageStream],
                     name: str) -> Response:
    """STREAMS as one .eml: a single message as it was stored (the decrypted original,
    attachments and all), several as a multipart/digest of message/rfc822 parts, which
    mail programs open as the conversation's messages. Streamed with its Content-Length,
    so that a copy damaged while it is read ends as a failed download, never a whole file."""
    if len(streams) == 1:
        framing: list[bytes] = [b"", b""]
    else:
        boundary = "sealgate-" + secrets.token_hex(16)
        head = ("MIME-Version: 1.0\r\n"
                f"Subject: {Header(name.removesuffix('.eml'), 'utf-8').encode()}\r\n"
                f'Content-Type: multipart/digest; boundary="{boundary}"\r\n\r\n')
        separator = f"\r\n--{boundary}\r\n\r\n".encode()
        framing = [head.encode() + separator[2:]]
        framing += [separator] * (len(streams) - 1)
        framing.append(f"\r\n--{boundary}--\r\n".encode())
    total = sum(len(piece) for piece in framing) + sum(stream.size for stream in streams)

    def chunks() -> Iterator[bytes]:
        try:
            for piece, stream in zip(framing, streams, strict=False):
                if piece:
                    yield piece
                yield from stream.chunks()
            if framing[-1]:
                yield framing[-1]
        finally:
            for stream in streams:
                stream.close()

    return StreamingResponse(chunks(), media_type="message/rfc822", headers={
        "Content-Disposition": render.content_disposition(name),
        "Content-Length": str(total),
        "X-Content-Type-Options": "nosniff",
    })


def _export(request: Request, whole_conversation: bool) -> Response:
    user = current_user(request)
    if user is None:  # signed out meanwhile: the message page asks to sign in
        return redirect(request, "message", pickup_id=request.path_params["pickup_id"])
    root = owned_item(request, user)
    if root.kind != MESSAGE:
        return redirect(request, "export_conversation" if whole_conversation else
                        "export_message", pickup_id=root.root_id)
    app = portal(request)
    items = [root, *app.threads.replies(root)] if whole_conversation else [root]
    try:
        subject = render.summary(read_headers(app.store, root.id)).subject
    except (KeyError, *DAMAGED):
        raise not_found() from None
    streams: list[MessageStream] = []
    try:
        for item in items:
            try:
                streams.append(app.store.open_pickup_stream(item.id))
            except KeyError:
                if item is root:
                    raise
    except (KeyError, *DAMAGED):
        for stream in streams:
            stream.close()
        raise not_found() from None
    app.store.audit(root.id, "export", client_ip(request),
                    f"conversation of {len(streams)}" if whole_conversation else "message")
    suffix = "" if not whole_conversation else " (conversation)"
    return _export_response(request, root, streams, _export_name(subject, suffix))


def export_message(request: Request) -> Response:
    """The message as an .eml file, to keep before it is deleted."""
    return _export(request, whole_conversation=False)


def export_conversation(request: Request) -> Response:
    """The message and every reply in its thread, as one .eml file."""
    return _export(request, whole_conversation=True)
