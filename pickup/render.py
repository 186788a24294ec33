"""A stored RFC 5322 message turned into what the portal shows: headers, a text body or a
sanitized HTML body, and the list of attachments.

The message comes from anyone on the internet, so every part is treated as hostile: HTML
goes through nh3 with a short allow-list, remote images never load (they would tell the
sender when and where the message was read), and a malformed part degrades to text
instead of failing the page. Sanitized HTML is shown in a sandboxed frame with its own
Content-Security-Policy, so even what nh3 might let through can neither script nor load.

What the portal shows as plain text (names, addresses, subjects, file names) goes through
visible(): raw 8-bit header bytes become text, and bidirectional controls are shown as
<U+202E> instead of silently reordering what follows them ("invoice<U+202E>fdp.exe").

A stored message is read as a stream (read_message). Up to IN_MEMORY_LIMIT it is parsed whole
by the email package; a larger one is scanned in one pass (mime_scan), which keeps its
structure and at most mime_scan.BODY_CAP of a text body ("shown in part" beyond that), and
its attachments are then streamed from their byte range, decoded on the fly
(attachment_chunks). Either way the same code below decides what the page shows.
"""

from __future__ import annotations

import email.policy
import mimetypes
import re
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.feedparser import BytesFeedParser
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser
from email.utils import parsedate_to_datetime

import nh3
from markupsafe import Markup, escape

from gateway.storage.protocols import MessageStream
from gateway.vault.crypto import DecryptionError
from pickup import mime_scan
from pickup.mime_scan import PartExtent

# Images shown inline (cid:) only in formats browsers cannot run script from (no SVG).
INLINE_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})

ALLOWED_TAGS = frozenset({
    "a", "abbr", "b", "blockquote", "br", "caption", "cite", "code", "dd", "del", "div", "dl",
    "dt", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "ol",
    "p", "pre", "q", "s", "small", "span", "strong", "sub", "sup", "table", "tbody", "td",
    "tfoot", "th", "thead", "tr", "u", "ul",
})
# No class or id: the message must not be able to dress up as the portal around it.
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "abbr": {"title"},
    "img": {"src", "alt", "width", "height"},
    "ol": {"start"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
}
# In its own frame the message may keep its look: presentational attributes and inline
# style limited to these properties (the frame's CSP blocks any url() they might hold).
FRAME_TAGS = frozenset({"center", "font"})
FRAME_ATTRIBUTES = {
    "*": {"style", "align", "dir"},
    "font": {"color", "face", "size"},
    "table": {"width", "border", "cellpadding", "cellspacing", "bgcolor", "align"},
    "td": {"width", "height", "bgcolor", "valign", "align"},
    "th": {"width", "height", "bgcolor", "valign", "align"},
    "tr": {"bgcolor", "valign", "align"},
}
STYLE_PROPERTIES = frozenset({
    "background-color", "border", "border-bottom", "border-collapse", "border-color",
    "border-left", "border-radius", "border-right", "border-spacing", "border-style",
    "border-top", "border-width", "color", "font", "font-family", "font-size", "font-style",
    "font-weight", "height", "letter-spacing", "line-height", "margin", "margin-bottom",
    "margin-left", "margin-right", "margin-top", "max-width", "min-width", "padding",
    "padding-bottom", "padding-left", "padding-right", "padding-top", "text-align",
    "text-decoration", "text-indent", "text-transform", "vertical-align", "white-space",
    "width", "word-break",
})
_DANGEROUS_STYLE = re.compile(r"url\s*\(|expression|@import|\\|javascript:|behavior", re.I)
LINK_SCHEMES = frozenset({"http", "https", "mailto"})
_IMG_TAG = re.compile(r"<img\b[^>]*>")
_URL = re.compile(r"\bhttps?://[^\s<>\"'\x00-\x1f]+", re.IGNORECASE)
_CONTENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")
# Bidirectional controls (Unicode TR 9): ALM, LRM, RLM, LRE..RLO, LRI..PDI.
_BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# The parser recurses once per level of multipart or message/* nesting: below this depth
# a part is kept whole, as a file, so a message nested 1,000 levels deep still opens.
MAX_MIME_DEPTH = 50
# Messages up to this size are parsed whole, in memory; larger ones are scanned as a stream.
IN_MEMORY_LIMIT = 4 << 20
_AS_RECEIVED = email.policy.SMTP.clone(refold_source="none")
HEADER_CAP = mime_scan.HEADER_CAP


class UnreadableMessage(Exception):
    """The stored message cannot be parsed at all."""


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
    has_html: bool  # the sanitized HTML comes from body_html(), for the frame or print view
    attachments: list[Attachment]
    too_deep: bool = False  # parts nested deeper than MAX_MIME_DEPTH are offered as a file
    shown_in_part: bool = False  # a large message: its text stops early, or parts are unlisted


@dataclass(frozen=True)
class Summary:
    """What the inbox lists; from the headers only."""

    sender: str
    subject: str
    date: datetime | None


@dataclass(frozen=True)
class ThreadHeaders:
    """What a reply needs from the message it answers."""

    sender_address: str  # the From address, where a reply goes
    subject: str
    message_id: str  # '<...>' or empty
    references: list[str]


@dataclass(frozen=True)
class ReadMessage:
    """A stored message as read for the portal: the parts (whole, or as mime_scan left them,
    with EXTENTS saying where each leaf lies in the stored message)."""

    message: EmailMessage
    too_deep: bool
    extents: dict[int, PartExtent] | None = None  # None: parsed whole
    parts_left_out: bool = False
    size: int = 0


@dataclass(frozen=True)
class Download:
    filename: str
    content_type: str
    charset: str
    data: bytes  # the content; empty when EXTENT says where to stream it from
    extent: PartExtent | None = field(default=None, compare=False)

    @property
    def size(self) -> int:
        return self.extent.size if self.extent is not None else len(self.data)

    @property
    def content_type_header(self) -> str:
        return f"{self.content_type}; charset={self.charset}" if self.charset else self.content_type


class _DepthLimitedParser(BytesFeedParser):
    """The standard parser, except that a multipart or message/* part deeper than
    MAX_MIME_DEPTH becomes one opaque application/octet-stream part. (This hooks the
    parser's header step: _cur is the part just begun, _msgstack the parts it is in.)"""

    too_deep = False

    def _parse_headers(self, lines: list[str]) -> None:
        super()._parse_headers(lines)  # type: ignore[misc]
        part: Message = self._cur  # type: ignore[attr-defined]
        depth = len(self._msgstack)  # type: ignore[attr-defined]
        if depth > MAX_MIME_DEPTH and part.get_content_maintype() in ("multipart", "message"):
            del part["content-type"]
            part["Content-Type"] = "application/octet-stream"
            self.too_deep = True


def parse_limited(raw: bytes) -> tuple[EmailMessage, bool]:
    """RAW parsed, and whether parts were nested too deeply to be taken apart."""
    parser = _DepthLimitedParser(policy=email.policy.default)
    try:
        parser.feed(raw)
        message = parser.close()
    except Exception as exc:  # the parser records defects; anything it raises is fatal
        raise UnreadableMessage(f"{type(exc).__name__}: {exc}") from exc
    assert isinstance(message, EmailMessage)
    return message, parser.too_deep


def parse(raw: bytes) -> EmailMessage:
    return parse_limited(raw)[0]


def read_message(stream: MessageStream) -> ReadMessage:
    """The message in STREAM, read in one pass; never held whole above IN_MEMORY_LIMIT.
    DecryptionError when the stored copy changed while it was read."""
    if stream.size <= IN_MEMORY_LIMIT:
        message, too_deep = parse_limited(b"".join(stream.chunks()))
        return ReadMessage(message, too_deep, size=stream.size)
    try:
        scanned = mime_scan.scan(stream.chunks(), MAX_MIME_DEPTH)
    except (DecryptionError, OSError):
        raise
    except Exception as exc:  # like the parser: whatever the scan raises makes it unreadable
        raise UnreadableMessage(f"{type(exc).__name__}: {exc}") from exc
    return ReadMessage(scanned.message, scanned.too_deep, scanned.extents,
                       scanned.parts_left_out, stream.size)


def header_section(stream: MessageStream) -> bytes:
    """The header section of the message in STREAM (at most HEADER_CAP bytes of it). The
    whole stream is read, so that a copy changed since it was opened still fails."""
    kept = bytearray()
    complete = False
    for chunk in stream.chunks():
        if complete:
            continue
        kept += chunk
        end = min((i + len(blank) for blank in (b"\r\n\r\n", b"\n\n")
                   if (i := kept.find(blank)) >= 0), default=-1)
        if end >= 0 or len(kept) > HEADER_CAP:
            del kept[end if end >= 0 else HEADER_CAP:]
            complete = True
    return bytes(kept)


def _as_read(source: bytes | ReadMessage) -> ReadMessage:
    if isinstance(source, ReadMessage):
        return source
    message, too_deep = parse_limited(source)
    return ReadMessage(message, too_deep, size=len(source))


def parse_headers(raw: bytes) -> Message:
    """The header section of RAW only (no recursion, however the body is nested)."""
    try:
        return BytesHeaderParser(policy=email.policy.default).parsebytes(raw)
    except Exception as exc:
        raise UnreadableMessage(f"{type(exc).__name__}: {exc}") from exc


def summary(raw: bytes) -> Summary:
    headers = parse_headers(raw)
    return Summary(addresses(headers, "from"), visible(header(headers, "subject")),
                   message_date(headers))


def message_view(source: bytes | ReadMessage) -> MessageView:
    """The view of SOURCE: headers, the text body, and the attachments."""
    read = _as_read(source)
    message = read.message
    body, listed = _structure(message, read.extents)
    has_html = body is not None and body.get_content_subtype() == "html"
    text = _text(body) if body is not None and not has_html else None
    # Images the HTML body shows in place are part of the text, not files to download.
    shown = _cids_in(_text(body)) if body is not None and has_html else set()
    return MessageView(
        sender=addresses(message, "from"), to=addresses(message, "to"),
        cc=addresses(message, "cc"),
        date=message_date(message), subject=visible(header(message, "subject")), text=text,
        has_html=has_html,
        attachments=[info for info, _ in listed if not _shown_inline(info, shown)],
        too_deep=read.too_deep,
        shown_in_part=read.parts_left_out or (
            body is not None and read.extents is not None and id(body) in read.extents
            and read.extents[id(body)].shown_in_part),
    )


def _cids_in(html: str) -> set[str]:
    return {urllib.parse.unquote(cid).strip("<>").lower()
            for cid in re.findall(r"""cid:([^"'\s>)]+)""", html, re.IGNORECASE)}


def _shown_inline(info: Attachment, shown: set[str]) -> bool:
    """Whatever its Content-Disposition says: senders' mail programs disagree on it."""
    return (bool(info.content_id) and info.content_id.lower() in shown
            and info.content_type in INLINE_IMAGE_TYPES)


def body_html(source: bytes | ReadMessage, inline_url: Callable[[int], str],
              framed: bool) -> str | None:
    """The sanitized HTML body of SOURCE, or None when it has none. INLINE_URL(number) is
    where an inline (cid:) image can be fetched. FRAMED keeps the sender's styling, for the
    sandboxed frame; otherwise the HTML is fit to sit inside a portal page."""
    read = _as_read(source)
    body, listed = _structure(read.message, read.extents)
    if body is None or body.get_content_subtype() != "html":
        return None
    cids = {info.content_id: info.number for info, _ in listed
            if info.content_id and info.content_type in INLINE_IMAGE_TYPES}
    return sanitize_html(_text(body), lambda cid: inline_url(cids[cid]) if cid in cids else None,
                         framed)


def thread_headers(raw: bytes, fallback_sender: str) -> ThreadHeaders:
    """From the headers of RAW only: who to answer, and how to thread the answer."""
    headers = parse_headers(raw)
    return ThreadHeaders(
        sender_address=first_address(headers, "from") or fallback_sender,
        subject=header(headers, "subject"),
        message_id=_msgid(header(headers, "message-id")),
        references=[ref for ref in (_msgid(r) for r in header(headers, "references").split())
                    if ref],
    )


def first_address(message: Message, name: str) -> str:
    try:
        found = getattr(message.get(name), "addresses", None)
        return readable(str(found[0].addr_spec)) if found else ""
    except Exception:
        return ""


def _msgid(value: str) -> str:
    """A message id as '<left@right>', or '' for anything that could break a header."""
    value = value.strip()
    ok = re.fullmatch(r"<[!-;=?-~]{1,250}>", value)  # printable ASCII, no '<', '>' inside
    return value if ok else ""


def attachment(source: bytes | ReadMessage, number: int) -> Download | None:
    """Attachment NUMBER of SOURCE (as listed by message_view), or None. Of a large message
    the download says where its content lies (extent): see attachment_chunks."""
    read = _as_read(source)
    _, listed = _structure(read.message, read.extents)
    for info, part in listed:
        if info.number == number:
            if read.extents is not None:
                extent = read.extents.get(id(part))
                return None if extent is None else Download(
                    info.filename, info.content_type, _charset(part), b"", extent)
            return Download(info.filename, info.content_type, _charset(part), _payload(part))
    return None


def attachment_chunks(stream: MessageStream, download: Download) -> Iterator[bytes]:
    """The content of DOWNLOAD, decoded piece by piece from a new pass over STREAM; the last
    piece comes only once the pass has verified the stored copy (mime_scan.decoded_range)."""
    if download.extent is None:
        yield download.data
        return
    yield from mime_scan.decoded_range(stream.chunks(), download.extent)


def sanitize_html(html: str, cid_url: Callable[[str], str | None], framed: bool = False) -> str:
    """HTML safe to show. CID_URL maps a Content-ID to a local image URL, or None to drop
    the image. FRAMED allows the presentational attributes and inline style of
    FRAME_ATTRIBUTES, for the sandboxed frame; otherwise there is no style at all (the
    portal page's CSP refuses inline style anyway)."""
    tags = set(ALLOWED_TAGS) | (set(FRAME_TAGS) if framed else set())
    attributes = {tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()}
    if framed:
        for tag, names in FRAME_ATTRIBUTES.items():
            attributes.setdefault(tag, set()).update(names)

    def keep(tag: str, attribute: str, value: str) -> str | None:
        if tag == "img" and attribute != "alt" and ("<" in value or ">" in value):
            return None  # keeps whole <img> tags visible to _IMG_TAG below
        if attribute == "style":
            return None if _DANGEROUS_STYLE.search(value) else value
        if attribute in ("bgcolor", "color"):
            return value if re.fullmatch(r"#?[0-9A-Za-z]{1,20}", value.strip()) else None
        if tag == "a" and attribute == "href":
            scheme = urllib.parse.urlsplit(value.strip()).scheme.lower()
            return value if scheme in LINK_SCHEMES else None  # no relative or odd schemes
        if tag == "img" and attribute == "src":
            if value.strip().lower().startswith("cid:"):
                return cid_url(urllib.parse.unquote(value.strip()[4:]).strip("<>"))
            return None  # remote images are tracking beacons: never load them
        if tag == "img" and attribute == "alt":
            return value.replace("<", "").replace(">", "").replace('"', "")  # see _IMG_TAG
        if attribute in ("width", "height"):
            return value if re.fullmatch(r"\d{1,4}%?", value.strip()) else None
        if attribute in ("colspan", "rowspan", "start", "border", "cellpadding", "cellspacing",
                         "size"):
            return value if value.strip().isdigit() and len(value.strip()) < 5 else None
        return value

    cleaned = nh3.clean(
        html,
        tags=tags,
        clean_content_tags={"script", "style", "title", "head"},
        attributes=attributes,
        attribute_filter=keep,
        url_schemes=set(LINK_SCHEMES) | {"cid"},
        link_rel="noopener noreferrer nofollow",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        strip_comments=True,
        filter_style_properties=set(STYLE_PROPERTIES) if framed else None,
    )
    # nh3 cannot drop an element from a filter, only its attribute: remove the <img> tags
    # left without a src. No attribute value of an <img> can contain '>' (filtered above),
    # so the pattern sees whole tags.
    return _IMG_TAG.sub(lambda m: m.group(0) if ' src="' in m.group(0) else "", cleaned)


def linkify(text: str) -> Markup:
    """TEXT escaped for HTML, with its http(s) links made clickable (opening in a new tab,
    no referrer). Jinja's urlize does the same in about a second per megabyte; this is one
    regular-expression pass."""
    pieces: list[str] = []
    position = 0
    for match in _URL.finditer(text):
        url = match.group(0).rstrip(".,;:!?'\"")
        if url.endswith(")") and "(" not in url:
            url = url[:-1]
        pieces.append(str(escape(text[position:match.start()])))
        link = escape(url)
        pieces.append(f'<a href="{link}" target="_blank" rel="noopener noreferrer nofollow">'
                      f"{link}</a>")
        position = match.start() + len(url)
    pieces.append(str(escape(text[position:])))
    return Markup("".join(pieces))


def content_disposition(filename: str, disposition: str = "attachment") -> str:
    """RFC 6266: an ASCII fallback for old clients plus the exact name as filename*."""
    fallback = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\' else "_" for ch in filename)
    encoded = urllib.parse.quote(filename, safe="")
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


def readable(text: str) -> str:
    """TEXT as proper Unicode. The parser keeps raw 8-bit bytes of a header (which RFC 6532
    allows as UTF-8) as surrogate escapes, which no page or mail can encode: decode them
    as UTF-8, and anything that is not UTF-8 as U+FFFD."""
    if not _SURROGATE.search(text):
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a surrogate that stands for no byte
        return _SURROGATE.sub("\ufffd", text)


def visible(text: str) -> str:
    """TEXT for showing: readable, with every bidirectional control written out as
    <U+XXXX>, so none can reorder a name, subject or file name on the screen."""
    return _BIDI_CONTROLS.sub(lambda m: f"<U+{ord(m.group(0)):04X}>", readable(text))


def header(message: Message, name: str) -> str:
    """The header's text, readable but not yet visible(): a reply may quote it."""
    try:
        value = message.get(name)
        return "" if value is None else readable(" ".join(str(value).split()))
    except Exception:  # a header malformed beyond what the parser tolerates: show nothing
        return ""


def addresses(message: Message, name: str) -> str:
    """An address header for people: 'Dr. Doctor <doctor@hospital.example>', unquoted."""
    try:
        value = message.get(name)
        found = getattr(value, "addresses", None)
        if not found:
            return visible(header(message, name))
        return visible(", ".join(f"{a.display_name} <{a.addr_spec}>" if a.display_name
                                 else a.addr_spec for a in found))
    except Exception:
        return visible(header(message, name))


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

def _structure(message: EmailMessage, extents: dict[int, PartExtent] | None = None,
               ) -> tuple[EmailMessage | None, list[tuple[Attachment, EmailMessage]]]:
    """The body part to show, and every other leaf part as an attachment. The plain-text
    alternative of an HTML body is not an attachment either. EXTENTS give the sizes of a
    scanned message's parts, whose contents were not kept."""
    body = _body_part(message, ("html", "plain"))
    plain = _body_part(message, ("plain",))
    shown = {id(part) for part in (body, plain) if part is not None}
    return body, [(info, part) for info, part in _attachments(message, extents)
                  if id(part) not in shown]


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


def _attachments(message: EmailMessage, extents: dict[int, PartExtent] | None,
                 ) -> Iterator[tuple[Attachment, EmailMessage]]:
    # Numbering counts every leaf, so a part keeps its number whichever body is shown.
    for number, part in enumerate(_leaves(message), start=1):
        content_type = _content_type(part)
        info = Attachment(
            number=number,
            filename=_filename(part, number, content_type),
            content_type=content_type,
            size=_size(part, extents),
            content_id=header(part, "content-id").strip("<> "),
        )
        yield info, part


def _size(part: EmailMessage, extents: dict[int, PartExtent] | None) -> int:
    if extents is None:
        return len(_payload(part))
    extent = extents.get(id(part))
    return extent.size if extent is not None else 0


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
        name = visible(part.get_filename() or "")
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
        # As it came (CRLF, the source's own folding): what the sender attached.
        return inner.as_bytes(policy=_AS_RECEIVED) if isinstance(inner, Message) else b""
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
