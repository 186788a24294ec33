"""A stored RFC 5322 message turned into what the portal shows: headers, a text body or a
sanitized HTML body, and the list of attachments.

The message comes from anyone on the internet, so every part is treated as hostile: HTML
goes through nh3 with a short allow-list, remote images never load (they would tell the
sender when and where the message was read), and a malformed part degrades to text
instead of failing the page.
"""

from __future__ import annotations

import email
import email.policy
import mimetypes
import re
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser
from email.utils import parsedate_to_datetime

import nh3

# Images shown inline (cid:) only in formats browsers cannot run script from (no SVG).
INLINE_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})

ALLOWED_TAGS = frozenset({
    "a", "abbr", "b", "blockquote", "br", "caption", "cite", "code", "dd", "del", "div", "dl",
    "dt", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "ol",
    "p", "pre", "q", "s", "small", "span", "strong", "sub", "sup", "table", "tbody", "td",
    "tfoot", "th", "thead", "tr", "u", "ul",
})
# No class, id or style: the message must not be able to dress up as the portal around it
# (and inline style is refused by the page's CSP anyway).
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "abbr": {"title"},
    "img": {"src", "alt", "width", "height"},
    "ol": {"start"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
}
LINK_SCHEMES = frozenset({"http", "https", "mailto"})
_IMG_TAG = re.compile(r"<img\b[^>]*>")
_CONTENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")


@dataclass(frozen=True)
class Attachment:
    number: int  # 1-based, stable for a given message: the download URL uses it
    filename: str
    content_type: str
    size: int
    content_id: str


@dataclass(frozen=True)
class MessageView:
    sender: str
    to: str
    cc: str
    date: datetime | None
    subject: str
    text: str | None  # shown when there is no HTML body
    html: str | None  # already sanitized
    attachments: list[Attachment]


@dataclass(frozen=True)
class Summary:
    """What the inbox lists; from the headers only."""

    sender: str
    subject: str
    date: datetime | None


@dataclass(frozen=True)
class Download:
    filename: str
    content_type: str
    charset: str
    data: bytes

    @property
    def content_type_header(self) -> str:
        return f"{self.content_type}; charset={self.charset}" if self.charset else self.content_type


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def summary(raw: bytes) -> Summary:
    headers = BytesHeaderParser(policy=email.policy.default).parsebytes(raw)
    return Summary(addresses(headers, "from"), header(headers, "subject"), message_date(headers))


def message_view(raw: bytes, inline_url: Callable[[int], str]) -> MessageView:
    """The view of RAW; INLINE_URL(number) is where an inline (cid:) image can be fetched."""
    message = parse(raw)
    body, listed = _structure(message)
    attachments = [info for info, _ in listed]
    text = html = None
    if body is not None and body.get_content_subtype() == "html":
        cids = {a.content_id: a.number for a in attachments
                if a.content_id and a.content_type in INLINE_IMAGE_TYPES}
        html = sanitize_html(_text(body),
                             lambda cid: inline_url(cids[cid]) if cid in cids else None)
    elif body is not None:
        text = _text(body)
    return MessageView(
        sender=addresses(message, "from"), to=addresses(message, "to"),
        cc=addresses(message, "cc"),
        date=message_date(message), subject=header(message, "subject"), text=text, html=html,
        attachments=attachments,
    )


def attachment(raw: bytes, number: int) -> Download | None:
    """Attachment NUMBER of RAW (as listed by message_view), or None."""
    _, listed = _structure(parse(raw))
    for info, part in listed:
        if info.number == number:
            return Download(info.filename, info.content_type, _charset(part), _payload(part))
    return None


def sanitize_html(html: str, cid_url: Callable[[str], str | None]) -> str:
    """HTML safe to place inside a portal page. CID_URL maps a Content-ID to a local image
    URL, or None to drop the image."""

    def keep(tag: str, attribute: str, value: str) -> str | None:
        if tag == "a" and attribute == "href":
            scheme = urllib.parse.urlsplit(value.strip()).scheme.lower()
            return value if scheme in LINK_SCHEMES else None  # no relative or odd schemes
        if tag == "img" and attribute == "src":
            if value.strip().lower().startswith("cid:"):
                return cid_url(urllib.parse.unquote(value.strip()[4:]).strip("<>"))
            return None  # remote images are tracking beacons: never load them
        if tag == "img" and attribute == "alt":
            return value.replace("<", "").replace(">", "").replace('"', "")  # see _IMG_TAG
        if attribute in ("width", "height", "colspan", "rowspan", "start"):
            return value if value.strip().isdigit() else None
        return value

    cleaned = nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        clean_content_tags={"script", "style", "title", "head"},
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        attribute_filter=keep,
        url_schemes=set(LINK_SCHEMES) | {"cid"},
        link_rel="noopener noreferrer nofollow",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        strip_comments=True,
    )
    # nh3 cannot drop an element from a filter, only its attribute: remove the <img> tags
    # left without a src. Attribute values cannot contain '>' (alt is filtered above, the
    # others are digits or our own URLs), so the pattern sees whole tags.
    return _IMG_TAG.sub(lambda m: m.group(0) if ' src="' in m.group(0) else "", cleaned)


def content_disposition(filename: str, disposition: str = "attachment") -> str:
    """RFC 6266: an ASCII fallback for old clients plus the exact name as filename*."""
    fallback = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\' else "_" for ch in filename)
    encoded = urllib.parse.quote(filename, safe="")
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


def header(message: Message, name: str) -> str:
    try:
        value = message.get(name)
        return "" if value is None else " ".join(str(value).split())
    except Exception:  # a header malformed beyond what the parser tolerates: show nothing
        return ""


def addresses(message: Message, name: str) -> str:
    """An address header for people: 'Dr. Doctor <doctor@hospital.example>', unquoted."""
    try:
        value = message.get(name)
        found = getattr(value, "addresses", None)
        if not found:
            return header(message, name)
        return ", ".join(f"{a.display_name} <{a.addr_spec}>" if a.display_name else a.addr_spec
                         for a in found)
    except Exception:
        return header(message, name)


def message_date(message: Message) -> datetime | None:
    raw = header(message, "date")
    try:
        parsed = parsedate_to_datetime(raw) if raw else None
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed


# -- parts -------------------------------------------------------------------------------

def _structure(message: EmailMessage) -> tuple[EmailMessage | None,
                                               list[tuple[Attachment, EmailMessage]]]:
    """The body part to show, and every other leaf part as an attachment. The plain-text
    alternative of an HTML body is not an attachment either."""
    body = _body_part(message, ("html", "plain"))
    plain = _body_part(message, ("plain",))
    shown = {id(part) for part in (body, plain) if part is not None}
    return body, [(info, part) for info, part in _attachments(message) if id(part) not in shown]


def _body_part(message: EmailMessage, preference: tuple[str, ...]) -> EmailMessage | None:
    try:
        part = message.get_body(preferencelist=preference)
    except Exception:  # malformed structure: fall back to listing everything as attachments
        return None
    return part if isinstance(part, EmailMessage) else None


def _leaves(part: EmailMessage) -> Iterator[EmailMessage]:
    """Leaf parts in order; an attached message (message/rfc822) is one leaf, not opened."""
    if part.get_content_maintype() == "multipart" and part.is_multipart():
        for sub in part.iter_parts():
            if isinstance(sub, EmailMessage):
                yield from _leaves(sub)
    else:
        yield part


def _attachments(message: EmailMessage) -> Iterator[tuple[Attachment, EmailMessage]]:
    # Numbering counts every leaf, so a part keeps its number whichever body is shown.
    for number, part in enumerate(_leaves(message), start=1):
        content_type = _content_type(part)
        info = Attachment(
            number=number,
            filename=_filename(part, number, content_type),
            content_type=content_type,
            size=len(_payload(part)),
            content_id=header(part, "content-id").strip("<> "),
        )
        yield info, part


def _content_type(part: EmailMessage) -> str:
    value = part.get_content_type().lower()
    return value if _CONTENT_TYPE.match(value) else "application/octet-stream"


def _charset(part: EmailMessage) -> str:
    """The declared charset of a text part, so a download displays as the sender wrote it."""
    if part.get_content_maintype() != "text":
        return ""
    charset = part.get_content_charset() or ""
    return charset if re.fullmatch(r"[A-Za-z0-9._:-]{1,40}", charset) else ""


def _filename(part: EmailMessage, number: int, content_type: str) -> str:
    try:
        name = part.get_filename() or ""
    except Exception:
        name = ""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]  # never a path
    name = "".join(ch for ch in name if ch.isprintable()).strip().lstrip(".")[:200]
    if not name:
        extension = ".eml" if content_type == "message/rfc822" else (
            mimetypes.guess_extension(content_type) or ".bin")
        name = f"attachment-{number}{extension}"
    return name


def _payload(part: EmailMessage) -> bytes:
    if part.get_content_maintype() == "message" and part.is_multipart():
        inner = part.get_payload(0)
        return inner.as_bytes() if isinstance(inner, Message) else b""
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _text(part: EmailMessage) -> str:
    try:
        content = part.get_content()
        if isinstance(content, str):
            return content
    except Exception:  # unknown charset or broken encoding: still show what we can
        pass
    return _payload(part).decode("utf-8", errors="replace")
