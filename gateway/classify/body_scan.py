"""A bounded, streaming scan of a message body for the `[[rule]]`s that need it.

BodyScan is fed the body in pieces as they arrive (the SMTP DATA stream, or a file read in
chunks) and keeps no more than it must: the open line (at most LONG_LINE), each part's
header section (at most HEADER_CAP), and of the part being read at most `scan_limit`
decoded bytes of text, SNIFF_BYTES for its real type, and the few bytes the encryption
check carries over. MIME structure is followed as the email package and pickup/mime_scan.py
read it (RFC 2046 boundaries, an enclosing boundary also ending the parts inside it,
message/rfc822 parts looked into). When a text part is complete it is decoded (transfer
encoding, then charset; HTML to text) and every body_regex and text detector runs on it;
the rules themselves are judged at the end (rules.rule_match) from the findings.

A part that cannot be decoded (an unknown charset or transfer encoding, broken base64) or a
structure past the limits is a scan error: the policy's `on_scan_error` decides.
"""

from __future__ import annotations

import binascii
import email.header
import email.policy
import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from email.message import Message

from gateway.classify.detectors import ENCRYPTED_ATTACHMENT, TEXT_DETECTORS
from gateway.classify.rules import Attachment, ContentFindings, ContentRule, text_detectors
from gateway.classify.sniff import SNIFF_BYTES, EncryptionSniffer, sniff_type
from gateway.mime_delimiter import delimiter_of, next_delimiter

HEADER_CAP = 64 << 10
LONG_LINE = 64 << 10
MAX_PARTS = 1000
MAX_DEPTH = 30
HEAVY = 256 << 10
_NOT_BASE64 = bytes(b for b in range(256)
                    if not (chr(b).isascii() and (chr(b).isalnum() or chr(b) in "+/=")))
_IDENTITY = {"", "7bit", "8bit", "binary"}
_HTML_DROP = re.compile(r"<(script|style)\b.*?</\1\s*>|<!--.*?-->", re.IGNORECASE | re.DOTALL)
_HTML_BREAK = re.compile(r"<\s*/?\s*(?:br|p|div|tr|td|th|li|h[1-6]|table|blockquote|hr)\b[^>]*>",
                         re.IGNORECASE)
_HTML_TAG = re.compile(r"<[^>]*>")
# The only fields a part's reading depends on, with their continuation lines (the name as
# email's parser accepts it): three fields of a message's header section, not thirty, are
# read, and with compat32, at a fraction of email.policy.default's cost.
_CONTENT_FIELD = re.compile(rb"^[Cc][Oo][Nn][Tt][Ee][Nn][Tt]-[\x21-\x39\x3b-\x7e]*:[^\n]*"
                            rb"(?:\n[ \t][^\n]*)*\n?", re.MULTILINE)


class ScanError(Exception):
    """A part that cannot be decoded: the message says which and why."""


class _Decoder:
    def __init__(self, encoding: str, where: str) -> None:
        if encoding not in _IDENTITY and encoding not in ("base64", "quoted-printable"):
            raise ScanError(f"{where}: transfer encoding {encoding!r} cannot be decoded")
        self.encoding = encoding
        self.where = where
        self._rest = b""

    def feed(self, data: bytes) -> bytes:
        if self.encoding == "base64":
            data = self._rest + data.translate(None, _NOT_BASE64)
            whole = len(data) // 4 * 4
            self._rest = data[whole:]
            return self._base64(data[:whole])
        if self.encoding == "quoted-printable":
            data = self._rest + data
            cut = data.rfind(b"\n") + 1
            if cut == 0 and len(data) > LONG_LINE:
                cut = len(data) - 2
            self._rest = data[cut:]
            return binascii.a2b_qp(data[:cut])
        return data

    def flush(self) -> bytes:
        rest, self._rest = self._rest, b""
        if self.encoding == "base64":
            return self._base64(rest + b"=" * (-len(rest) % 4)) if rest.strip(b"=") else b""
        if self.encoding == "quoted-printable":
            return binascii.a2b_qp(rest)
        return rest

    def _base64(self, data: bytes) -> bytes:
        try:
            return binascii.a2b_base64(data)
        except binascii.Error as exc:
            raise ScanError(f"{self.where}: damaged base64 ({exc})") from None


@dataclass(eq=False)
class _Leaf:
    number: int
    content_type: str
    charset: str
    filename: str
    attachment: bool
    decoder: _Decoder | None
    text: bytearray | None  # decoded text kept for scanning, up to scan_limit
    start: bytearray = field(default_factory=bytearray)  # first decoded bytes, for sniffing
    sniffer: EncryptionSniffer | None = None
    sniffed: str | None = None
    sniff_done: bool = False
    truncated: bool = False

    @property
    def where(self) -> str:
        if self.attachment and self.filename:
            return f"attachment {self.filename!r} (part {self.number})"
        return f"part {self.number} ({self.content_type})"


@dataclass(eq=False)
class _Open:
    delimiter: bytes  # b"--" + boundary
    depth: int


def html_to_text(markup: str) -> str:
    """What a reader sees of an HTML part: no scripts, styles or comments, tags gone (block
    tags as line breaks), character references resolved."""
    text = _HTML_DROP.sub(" ", markup)
    text = _HTML_BREAK.sub("\n", text)
    return html.unescape(_HTML_TAG.sub("", text))


def decode_text(data: bytes, charset: str, where: str) -> str:
    charset = charset or "us-ascii"
    if charset in ("us-ascii", "ascii"):
        charset = "utf-8"  # 8-bit text declared as ASCII is common: read it as UTF-8
    try:
        return data.decode(charset, errors="replace")
    except LookupError:
        raise ScanError(f"{where}: unknown charset {charset!r}") from None


class BodyScan:
    """Feed the body (everything after the header section) with feed(), then close()."""

    def __init__(self, rules: Sequence[ContentRule], scan_limit: int, head: bytes) -> None:
        self.scan_limit = scan_limit
        self.regexes = [(r.index, r.body_regex, r.body_literals) for r in rules
                        if r.body_regex is not None]
        self.detectors = text_detectors(rules)
        self.scan_text = bool(self.regexes or self.detectors)
        self.want_encryption = any(ENCRYPTED_ATTACHMENT in r.detect for r in rules)
        self.want_sniff = self.want_encryption or any(r.attachment_types for r in rules)
        self.findings = ContentFindings()
        self._rest = b""
        self._open: list[_Open] = []
        self._leaf: _Leaf | None = None
        self._header: bytearray | None = None  # a part's header section being read
        self._header_depth = 1
        self._stopped = False  # after a scan error: nothing more is looked at
        self._at_start = True  # the body may begin with the empty line ending the header
        self._line_start = True  # whether the next block begins a line
        try:
            self._begin_part(head, depth=1)
        except ScanError as exc:
            self._fail(str(exc))

    # -- the stream -------------------------------------------------------------------------

    def heavy(self, size: int) -> bool:
        """Whether feeding SIZE more bytes may cost milliseconds (a large piece to decode, or
        a large text part that the piece may complete): worth running off the event loop."""
        leaf = self._leaf
        held = len(leaf.text) if leaf is not None and leaf.text is not None else 0
        return size + held > HEAVY

    def feed(self, piece: bytes) -> None:
        if self._stopped:
            return
        data = self._rest + piece
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            if len(data) < LONG_LINE:
                self._rest = data
                return
            cut = len(data)
        self._rest = data[cut:]
        self._guarded(data[:cut])

    def close(self) -> ContentFindings:
        if not self._stopped:
            rest, self._rest = self._rest, b""
            if rest:
                self._guarded(rest)
            if not self._stopped:
                try:
                    if self._header is not None:
                        self._end_header()
                    self._finish_leaf()
                except ScanError as exc:
                    self._fail(str(exc))
                except Exception as exc:  # noqa: BLE001 - a scan error (fail closed), not a crash
                    self._fail(f"the body could not be scanned ({type(exc).__name__}: {exc})")
        return self.findings

    def _guarded(self, block: bytes) -> None:
        try:
            self._block(block)
        except ScanError as exc:
            self._fail(str(exc))
        except Exception as exc:  # noqa: BLE001 - whatever breaks is a scan error, not a crash
            self._fail(f"the body could not be scanned ({type(exc).__name__}: {exc})")

    def _fail(self, reason: str) -> None:
        self.findings.errors.append(reason)
        self._stopped = True
        self._leaf = None

    def _block(self, data: bytes) -> None:
        """DATA: whole lines (or a piece of one over LONG_LINE)."""
        position = 0
        if self._at_start:
            self._at_start = False
            position = 2 if data.startswith(b"\r\n") else 1 if data.startswith(b"\n") else 0
        while position < len(data) and not self._stopped:
            if self._header is not None:
                position = self._header_lines(data, position)
            else:
                position = self._body(data, position)
        self._line_start = data.endswith(b"\n")  # a block may be a piece of a long line

    def _header_lines(self, data: bytes, position: int) -> int:
        assert self._header is not None
        while position < len(data):
            newline = data.find(b"\n", position)
            end = len(data) if newline < 0 else newline + 1
            line = data[position:end]
            if line in (b"\r\n", b"\n"):
                self._end_header()
                return end
            if self._delimiter(line) is not None:
                self._end_header()
                return position
            if len(self._header) + len(line) > HEADER_CAP:
                raise ScanError(f"part {self.findings.parts + 1}: header section over"
                                f" {HEADER_CAP} bytes")
            self._header += line
            position = end
        return position

    def _end_header(self) -> None:
        assert self._header is not None
        header, self._header = bytes(self._header), None
        self._begin_part(header, self._header_depth)

    def _body(self, data: bytes, position: int) -> int:
        found = next_delimiter(data, position, position > 0 or self._line_start,
                               [o.delimiter for o in self._open]) if self._open else None
        if found is None:
            self._content(data[position:])
            return len(data)
        self._content(data[position:found.start])
        self._next_part(found.level, found.closing)
        return found.end

    def _delimiter(self, line: bytes) -> tuple[int, bool] | None:
        return delimiter_of(line, [o.delimiter for o in self._open])

    def _next_part(self, level: int, closing: bool) -> None:
        self._finish_leaf()
        del self._open[level + 1:]
        if closing:
            self._open.pop()
            return  # the epilogue: not shown by mail clients, not scanned
        self._header = bytearray()
        self._header_depth = self._open[level].depth + 1

    # -- parts ------------------------------------------------------------------------------

    def _begin_part(self, header: bytes, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise ScanError(f"parts nested more than {MAX_DEPTH} deep")
        fields = _CONTENT_FIELD.findall(header)
        message = _content_fields(fields)
        # email's parameter parsing is a part's main cost: skipped where the parameter's
        # name (in any case, RFC 2231 sections included) is not written at all.
        written = b"".join(fields).lower()
        content_type = message.get_content_type()
        maintype = content_type.partition("/")[0]
        if maintype == "multipart":
            boundary = message.get_boundary()
            if boundary:
                self._open.append(_Open(b"--" + boundary.encode("ascii", "surrogateescape"),
                                        depth))
                return  # the preamble is not shown by mail clients, not scanned
        encoding = str(message.get("content-transfer-encoding", "")).strip().lower()
        if content_type == "message/rfc822" and encoding in _IDENTITY:
            self._header = bytearray()  # a forwarded message: its parts are scanned too
            self._header_depth = depth + 1
            return
        self.findings.parts += 1
        if self.findings.parts > MAX_PARTS:
            raise ScanError(f"more than {MAX_PARTS} parts")
        filename = _filename(message) if b"name" in written else ""
        disposition = message.get_content_disposition()
        is_text = maintype == "text"
        attachment = bool(filename) or disposition == "attachment" or not is_text
        leaf = _Leaf(self.findings.parts, content_type,
                     str(message.get_param("charset", "") or "").strip().lower()
                     if b"charset" in written else "",
                     filename, attachment, None,
                     bytearray() if is_text and self.scan_text else None)
        needs_decoding = leaf.text is not None or (attachment and self.want_sniff)
        if needs_decoding:
            leaf.decoder = _Decoder(encoding, leaf.where)
        self._leaf = leaf

    def _content(self, data: bytes) -> None:
        leaf = self._leaf
        if leaf is None or leaf.decoder is None or not data:
            return
        self._decoded(leaf, leaf.decoder.feed(data))

    def _decoded(self, leaf: _Leaf, data: bytes) -> None:
        if not data:
            return
        if leaf.attachment and self.want_sniff and not leaf.sniff_done:
            leaf.start += data[:SNIFF_BYTES - len(leaf.start)]
            if len(leaf.start) >= SNIFF_BYTES:
                self._sniffed(leaf)
        elif leaf.sniffer is not None:
            leaf.sniffer.feed(data)
        if leaf.text is not None and not leaf.truncated:
            room = self.scan_limit - len(leaf.text)
            if len(data) > room:
                leaf.text += data[:room]
                leaf.truncated = True
            else:
                leaf.text += data
        if leaf.sniff_done and leaf.sniffer is None and (leaf.text is None or leaf.truncated):
            leaf.decoder = None  # nothing more to learn from this part: skip the rest of it

    def _sniffed(self, leaf: _Leaf) -> None:
        leaf.sniff_done = True
        leaf.sniffed = sniff_type(bytes(leaf.start))
        if self.want_encryption and EncryptionSniffer.wanted(leaf.sniffed):
            assert leaf.sniffed is not None
            leaf.sniffer = EncryptionSniffer(leaf.sniffed)
            leaf.sniffer.feed(bytes(leaf.start))
        leaf.start = bytearray()

    def _finish_leaf(self) -> None:
        leaf, self._leaf = self._leaf, None
        if leaf is None:
            return
        if leaf.decoder is not None:
            self._decoded(leaf, leaf.decoder.flush())
        if leaf.attachment and self.want_sniff and not leaf.sniff_done:
            self._sniffed(leaf)
        if leaf.attachment:
            self.findings.attachments.append(Attachment(
                leaf.number, leaf.filename, leaf.content_type, leaf.sniffed,
                bool(leaf.sniffer and leaf.sniffer.encrypted)))
        if leaf.text is not None:
            if leaf.truncated:
                self.findings.truncated.append(leaf.where)
            text = decode_text(bytes(leaf.text), leaf.charset, leaf.where)
            leaf.text = None
            if leaf.content_type == "text/html":
                text = html_to_text(text)
            self._scan_text(text, leaf.where)

    def _scan_text(self, text: str, where: str) -> None:
        hits = self.findings.regex_hits
        # A pattern's required literals absent from the (ASCII) text: it cannot match. Not
        # for other text: case folding there is not plain lower-casing (the long s, Kelvin).
        lowered = text.lower() if self.regexes and text.isascii() else None
        for index, regex, literals in self.regexes:
            if index in hits:
                continue
            if literals and lowered is not None and all(x.find(lowered) < 0 for x in literals):
                continue
            if regex.search(text):
                hits[index] = where
        for name in self.detectors:
            count = TEXT_DETECTORS[name](text)
            if count:
                self.findings.detector_hits.setdefault(name, []).append((where, count))


def _content_fields(fields: list[bytes]) -> Message:
    """A message holding FIELDS as email's header parser (compat32) would hold them."""
    message = Message(policy=email.policy.compat32)
    for raw in fields:
        message.set_raw(*email.policy.compat32.header_source_parse(
            [raw.decode("ascii", "surrogateescape")]))
    return message


def _filename(message: Message) -> str:
    """The part's file name, RFC 2231 and RFC 2047 encodings undone."""
    name = message.get_filename() or ""
    if "=?" in name:
        try:
            name = str(email.header.make_header(email.header.decode_header(name)))
        except (ValueError, LookupError, UnicodeError):
            pass
    return name


def split_message(chunks: Iterable[bytes]) -> tuple[bytes, Iterable[bytes]]:
    """The header section of a message in CHUNKS and an iterator over the rest (the body),
    as the SMTP side splits it: at the first empty line."""
    iterator = iter(chunks)
    head = b""
    for chunk in iterator:
        head += chunk
        for ending in (b"\r\n\r\n", b"\n\n"):
            found = head.find(ending)
            if found >= 0:
                cut = found + len(ending) // 2
                body_start = head[cut:]

                def body(first: bytes = body_start) -> Iterable[bytes]:
                    yield first
                    yield from iterator
                return head[:cut], body()
        if len(head) > HEADER_CAP * 4:
            break
    return head, iter(())
