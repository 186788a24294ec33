"""Secure reply: the recipient answers the sender from the portal, with attachments.

A reply can only go to the sender of the thread's message (From of the original), never
to an address typed into the form. It is delivered through the organization's relay
(internal.relay) and kept, encrypted, in the thread.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import Response

from pickup import compose, render
from pickup.accounts import User
from pickup.message_views import DAMAGED, damaged_page, read_headers, show_thread
from pickup.pages import filesize
from pickup.security import CSRF_FIELD
from pickup.threads import MESSAGE, Item
from pickup.views import (
    client_ip,
    current_user,
    language,
    not_found,
    owned_item,
    portal,
    redirect,
    tr,
    wake_up,
)

MAX_TEXT_BYTES = 1024 * 1024  # the typed reply; attachments are counted separately
MAX_FILES = 20
FORM_OVERHEAD = 2 * 1024 * 1024  # multipart boundaries, part headers, the text itself
DRAIN_FACTOR = 4  # read and drop up to this many times the limit, so the browser shows the answer


class TooLarge(Exception):
    """The request body went past what a reply may carry."""


class DamagedOriginal(Exception):
    """The message being answered cannot be decrypted or parsed: nothing to reply to."""


async def _limited(stream: AsyncIterator[bytes], limit: int) -> AsyncGenerator[bytes, None]:
    seen = 0
    async for chunk in stream:
        seen += len(chunk)
        if seen > limit:
            raise TooLarge(seen)
        yield chunk


async def _drain(request: Request, limit: int) -> None:
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            return


async def reply(request: Request) -> Response:
    owner = await run_in_threadpool(_owner_and_root, request)
    if isinstance(owner, Response):
        return owner
    user, root = owner
    limit = portal(request).config.pickup.max_reply_size
    length = request.headers.get("content-length", "")
    if not length.isdigit() or int(length) > limit + FORM_OVERHEAD:
        # Past the limit before reading anything: the typed text cannot be kept either.
        await _drain(request, DRAIN_FACTOR * limit)
        errors = {"attachments": too_large_message(
            int(length) if length.isdigit() else 0, limit, language(request)) + " " + tr(
                request)("Your reply was not sent.")}
        return await run_in_threadpool(show_thread, request, user, root, 413,
                                       {"values": {}, "errors": errors})
    try:
        form = await parse_form(request, limit + FORM_OVERHEAD)
    except TooLarge:
        raise HTTPException(413) from None
    except MultiPartException:
        raise HTTPException(400) from None
    try:
        portal(request).csrf.check(request, form.get(CSRF_FIELD))
        response = await run_in_threadpool(send_reply, request, user, root, form)
    finally:
        await form.close()
    return await wake_up(request, response)


async def parse_form(request: Request, limit: int) -> FormData:
    """The reply form, read up to LIMIT bytes: multipart (what the page sends), or
    urlencoded from a client without files. Uploads are spooled to temporary files."""
    stream = _limited(request.stream(), limit)
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/x-www-form-urlencoded"):
        return await FormParser(request.headers, stream).parse()
    if not content_type.startswith("multipart/form-data"):
        raise HTTPException(400)
    return await MultiPartParser(request.headers, stream, max_files=MAX_FILES, max_fields=8,
                                 max_part_size=MAX_TEXT_BYTES).parse()


def _owner_and_root(request: Request) -> tuple[User, Item] | Response:
    user = current_user(request)
    if user is None:  # signed out meanwhile: the message page asks to sign in
        return redirect(request, "message", pickup_id=request.path_params["pickup_id"])
    item = owned_item(request, user)
    root = item if item.kind == MESSAGE else portal(request).threads.get(item.root_id)
    if root is None or root.pickup.recipient != user.address:
        raise not_found()
    return user, root


def too_large_message(total: int, limit: int, language: str = "en") -> str:
    from pickup.i18n import gettext_for
    _ = gettext_for(language)
    if total:
        return _("The attachments add up to %(total)s; one reply can carry at most %(limit)s in"
                 " total. Please remove some, or send them in more than one reply.") % {
            "total": filesize(total, language), "limit": filesize(limit, language)}
    return _("The attachments are too large; one reply can carry at most %(limit)s in total."
             " Please remove some, or send them in more than one reply.") % {
        "limit": filesize(limit, language)}


def send_reply(request: Request, user: User, root: Item, form: FormData) -> Response:
    text = form.get("text")
    text = text if isinstance(text, str) else ""
    uploads = [value for key, value in form.multi_items()
               if key == "attachments" and isinstance(value, UploadFile)
               and (value.filename or value.size)]
    limit = portal(request).config.pickup.max_reply_size
    total = sum(upload.size or 0 for upload in uploads)
    errors: dict[str, str] = {}
    if not text.strip() and not uploads:
        errors["text"] = tr(request)("Write your reply, or attach a file.")
    if total > limit:
        errors["attachments"] = too_large_message(total, limit, language(request))
    if errors:
        return show_thread(request, user, root, 400, {"values": {"text": text}, "errors": errors})

    try:
        reply_id = store_reply(request, user, root, text, [
            compose.Upload(upload.filename or "", upload.content_type or "", upload.size or 0,
                           upload.file)
            for upload in uploads])
    except DamagedOriginal:
        portal(request).store.audit(root.id, "open-failed", client_ip(request))
        return damaged_page(request, reply_not_sent=True)
    portal(request).store.audit(root.id, "reply-sent", client_ip(request),
                                f"{len(uploads)} attachments, {total} bytes")
    return redirect(request, "message", query="notice=reply-sent", fragment=f"reply-{reply_id}",
                    pickup_id=root.id)


def store_reply(request: Request, user: User, root: Item, text: str,
                uploads: list[compose.Upload]) -> str:
    """Write, encrypt and queue the reply; request.state.wake asks for the queue to run."""
    app = portal(request)
    try:
        headers = _headers(request, root, root.pickup.sender)
    except KeyError:
        raise not_found() from None  # expired while the reply was written
    if headers is None:
        raise DamagedOriginal(root.id)
    references = [*headers.references, headers.message_id]
    in_reply_to = headers.message_id
    for earlier in app.threads.replies(root):
        # A reply to a reply: it answers the latest message of the thread (one that cannot
        # be read any more is left out of the threading, not a reason to refuse the reply).
        try:
            found = _headers(request, earlier, "")
        except KeyError:
            found = None
        earlier_id = found.message_id if found is not None else ""
        references.append(earlier_id)
        in_reply_to = earlier_id or in_reply_to
    message = compose.Reply(
        author_name=user.display_name, author=user.address, to=headers.sender_address,
        subject=headers.subject, in_reply_to=in_reply_to,
        references=[ref for ref in references if ref], text=text,
        message_id_domain=app.config.notify.from_.rpartition("@")[2])
    queue_id, size = compose.spool(app.store, compose.reply_message(message, uploads,
                                                                    app.store.clock()))
    try:
        reply_id = app.threads.store_reply(root, queue_id, size, user.address,
                                           headers.sender_address)
    except BaseException:
        app.store.delete_message(queue_id)  # nothing was queued: drop the spool file
        raise
    request.state.wake = True
    return reply_id


def _headers(request: Request, item: Item, fallback_sender: str) -> render.ThreadHeaders | None:
    """What a reply needs from ITEM; None when it is damaged. KeyError when it is gone."""
    try:
        return render.thread_headers(read_headers(portal(request).store, item.id), fallback_sender)
    except DAMAGED:
        return None
