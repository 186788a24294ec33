"""One streaming pass over a large stored message: its MIME structure without its contents.

The email package keeps every part of a message in memory, several times over; a 100 MiB
message would cost the portal most of a gigabyte. scan() reads the message once, chunk by
chunk, and builds the same tree of EmailMessage parts the email package would, except that
a leaf part holds at most BODY_CAP bytes of its body, and only when it is text (a body the
page may show); every leaf's place in the message (PartExtent: byte range, transfer
encoding, decoded size) is recorded on the side, so an attachment can be sent later by
streaming its range through a decoder (decoded_range). render.py decides what to show
from the tree with the same code as for a message parsed whole.

Boundaries are recognised as the email package does (RFC 2046): a line "--boundary",
"--boundary--" for the last, optional trailing blanks; the line break before it belongs to
the delimiter; an enclosing part's boundary also ends the parts inside it.
"""

from __future__ import annotations

import binascii
import email.policy
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesHeaderParser

from gateway.mime_delimiter import delimiter_of, next_delimiter

BODY_CAP = 2 << 20  # encoded bytes of a text part kept to be shown
HEADER_CAP = 256 << 10  # bytes of one part's header section kept
LONG_LINE = 4 << 20  # a "line" longer than this is passed on in pieces
MAX_PARTS = 1000  # parts beyond this many are not listed: each costs memory
_HEADER_LINE = re.compile(rb"(From |[\041-\071\073-\176]*:|[\t ])")  # as the email package
_NOT_BASE64 = bytes(b for b in range(256)
                    if not (chr(b).isascii() and (chr(b).isalnum() or chr(b) in "+/=")))


@dataclass
class PartExtent:
    """Where a leaf part's body lies in the message, and what it decodes to."""

    start: int  # offset of the body's first byte
    end: int  # offset just past its last byte
    encoding: str  # Content-Transfer-Encoding, lower case
    size: int = 0  # bytes once decoded
    shown_in_part: bool = False  # the text kept for showing stops at BODY_CAP


@dataclass
class Scanned:
    message: EmailMessage
    extents: dict[int, PartExtent]  # by id() of the leaf part in MESSAGE
    too_deep: bool  # a multipart nested deeper than max_depth was kept whole, as a file
    parts_left_out: bool  # more than MAX_PARTS parts: the rest are not listed


# -- transfer encodings, decoded piece by piece ----------------------------------------------

class Decoder:
    """Content-Transfer-Encoding undone on a stream: feed() pieces in order, then flush()."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._rest = b""

    def feed(self, data: bytes) -> bytes:
        if self.encoding == "base64":
            data = self._rest + data.translate(None, _NOT_BASE64)
            whole = len(data) // 4 * 4
            self._rest = data[whole:]
            return _base64(data[:whole])
        if self.encoding == "quoted-printable":
            data = self._rest + data
            cut = data.rfind(b"\n") + 1  # a soft break or =XX never spans a line end
            if cut == 0 and len(data) > LONG_LINE:
                cut = len(data) - 2
            self._rest = data[cut:]
            return binascii.a2b_qp(data[:cut])
        return data  # 7bit, 8bit, binary, and encodings the email package leaves alone too

    def flush(self) -> bytes:
        rest, self._rest = self._rest, b""
        if self.encoding == "base64":
            return _base64(rest + b"=" * (-len(rest) % 4)) if rest.strip(b"=") else b""
        if self.encoding == "quoted-printable":
            return binascii.a2b_qp(rest)
        return rest


def _base64(data: bytes) -> bytes:
    try:
        return binascii.a2b_base64(data)
    except binascii.Error:  # damaged encoding: what cannot be decoded is dropped
        return b""


def decoded_range(chunks: Iterable[bytes], extent: PartExtent) -> Iterator[bytes]:
    """The body EXTENT describes, decoded, from the message in CHUNKS. The stream is read to
    its end, where a MessageStream verifies it once more, and the last piece is yielded only
    after that: a response built from this is complete only when the message was genuine."""
    decoder = Decoder(extent.encoding)
    offset = 0
    held = b""
    for chunk in chunks:
        low, high = max(extent.start - offset, 0), min(extent.end - offset, len(chunk))
        offset += len(chunk)
        if low < high:
            if piece := decoder.feed(chunk[low:high]):
                if held:
                    yield held
                held = piece
    tail = decoder.flush()
    if held:
        yield held if not tail else held + tail
    elif tail:
        yield tail


# -- the structure --------------------------------------------------------------------------

@dataclass(eq=False)
class _Part:
    depth: int  # 1 for the message itself
    header: bytearray = field(default_factory=bytearray)
    message: EmailMessage | None = None
    delimiter: bytes = b""  # b"--" + boundary, for a multipart taken apart
    body_start: int = 0  # for a multipart: where its preamble begins
    has_parts: bool = False  # for a multipart: a delimiter was seen
    extent: PartExtent | None = None  # for a leaf
    decoder: Decoder | None = None
    kept: bytearray | None = None  # the start of a text body
    listed: bool = True
    parent: _Part | None = None


def _line_blocks(chunks: Iterable[bytes]) -> Iterator[tuple[bytes, bool]]:
    """CHUNKS regrouped to end at line ends, each with whether it begins a line."""
    rest = b""
    starts_line = True
    for chunk in chunks:
        data = rest + chunk
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            if len(data) < LONG_LINE:
                rest = data
                continue
            cut = len(data)
        yield data[:cut], starts_line
        starts_line = data[cut - 1:cut] == b"\n"
        rest = data[cut:]
    if rest:
        yield rest, starts_line


class _Scanner:
    def __init__(self, max_depth: int) -> None:
        self.max_depth = max_depth
        self.offset = 0  # of the block being read
        self.root = _Part(depth=1)
        self.current: _Part | None = self.root  # the part whose header or body is being read
        self.in_header = True
        self.open: list[_Part] = []  # multiparts whose parts are being read, outermost first
        self.pending = b""  # a line end held back: it may belong to a delimiter
        self.extents: dict[int, PartExtent] = {}
        self.too_deep = False
        self.parts = 0

    def feed(self, data: bytes, starts_line: bool) -> None:
        position = 0
        while position < len(data):
            if self.in_header:
                position = self._header_lines(data, position)
            else:
                position = self._body(data, position, starts_line)
        self.offset += len(data)

    def _header_lines(self, data: bytes, position: int) -> int:
        part = self.current
        assert part is not None
        while position < len(data):
            newline = data.find(b"\n", position)
            end = len(data) if newline < 0 else newline + 1
            line = data[position:end]
            if self._delimiter(line) is not None:
                self._begin_body(part, self.offset + position)
                return position  # the body reads the delimiter
            if line in (b"\r\n", b"\n"):
                self._begin_body(part, self.offset + end)
                return end
            if not _HEADER_LINE.match(line):
                self._begin_body(part, self.offset + position)
                return position  # no blank line: the body starts here, as the email package
            if len(part.header) < HEADER_CAP:
                part.header += line
            position = end
        return position

    def _begin_body(self, part: _Part, start: int) -> None:
        self.in_header = False
        try:
            message = BytesHeaderParser(policy=email.policy.default).parsebytes(bytes(part.header))
        except Exception:  # headers beyond repair: an untyped part
            message = EmailMessage()
        assert isinstance(message, EmailMessage)
        part.message = message
        if part.listed and part.parent is not None and part.parent.message is not None:
            part.parent.message.attach(message)  # in the order the parts begin
        maintype = message.get_content_maintype()
        if part.depth > self.max_depth and maintype in ("multipart", "message"):
            del message["content-type"]
            message["Content-Type"] = "application/octet-stream"
            self.too_deep = True
            maintype = "application"
        boundary = _boundary(message) if maintype == "multipart" else None
        if boundary is not None:
            part.delimiter = b"--" + boundary
            part.body_start = start
            message.set_payload([])
            self.open.append(part)
            self.current = None  # the preamble: nothing of it is kept
            return
        encoding = str(message.get("content-transfer-encoding", "")).strip().lower()
        part.extent = PartExtent(start, start, encoding)
        part.decoder = Decoder(encoding)
        part.kept = bytearray() if maintype == "text" else None

    def _body(self, data: bytes, position: int, starts_line: bool) -> int:
        found = next_delimiter(data, position, position > 0 or starts_line,
                               [p.delimiter for p in self.open])
        if found is None:
            self._content(data[position:], final=False)
            return len(data)
        self._content(data[position:found.start], final=True)
        self._next_part(found.level, found.closing)
        return found.end

    def _content(self, data: bytes, final: bool, at_end: bool = False) -> None:
        """Body bytes of the current part. The line end before a delimiter belongs to the
        delimiter, so the last one is held back until the next line shows what it is; at the
        end of the message (AT_END) it is the body's own."""
        data = self.pending + data
        held = 0 if at_end else (2 if data.endswith(b"\r\n") else
                                 1 if data.endswith((b"\n", b"\r")) else 0)
        self.pending = b"" if final else data[len(data) - held:]
        data = data[:len(data) - held]
        part = self.current
        if part is None or part.extent is None or part.decoder is None or not data:
            return  # a preamble or epilogue
        part.extent.end += len(data)
        part.extent.size += len(part.decoder.feed(data))
        if part.kept is not None and not part.extent.shown_in_part:
            room = BODY_CAP - len(part.kept)
            if len(data) > room:
                part.kept += data[:data.rfind(b"\n", 0, room) + 1]  # whole lines still decode
                part.extent.shown_in_part = True
            else:
                part.kept += data

    def _delimiter(self, line: bytes) -> tuple[int, bool] | None:
        """(which open multipart, whether it is the closing one) when LINE is a delimiter."""
        return delimiter_of(line, [p.delimiter for p in self.open])

    def _as_leaf(self, multipart: _Part) -> None:
        """A multipart in which no part ever began is, as the email package has it, one
        leaf holding all of its body: offered as a file, not lost."""
        message = multipart.message
        assert message is not None
        message.set_payload("")
        if multipart.listed:
            self.extents[id(message)] = PartExtent(multipart.body_start, self.offset, "",
                                                   self.offset - multipart.body_start)

    def _next_part(self, level: int, closing: bool) -> None:
        self.open[level].has_parts = True
        self._finish(self.current)
        del self.open[level + 1:]  # parts left open inside it end here too
        if closing:
            self.open.pop()
            self.current = None  # the epilogue
            return
        parent = self.open[level]
        part = _Part(depth=parent.depth + 1)
        self.parts += 1
        part.listed = self.parts <= MAX_PARTS and parent.listed
        part.parent = parent
        self.current = part
        self.in_header = True

    def _finish(self, part: _Part | None) -> None:
        if part is None:
            return
        if self.in_header:  # ended before its blank line: a part without a body
            self._begin_body(part, self.offset)
        if part.extent is None or part.decoder is None or part.message is None:
            return
        part.extent.size += len(part.decoder.flush())
        part.decoder = None
        kept = bytes(part.kept) if part.kept is not None else b""
        part.kept = None
        part.message.set_payload(kept.decode("ascii", "surrogateescape"))
        if part.listed:
            self.extents[id(part.message)] = part.extent

    def close(self) -> Scanned:
        # A part cut off by the end of the message, inside a multipart never closed, loses
        # its last line end, as the email package has it.
        self._content(b"", final=True, at_end=not self.open)
        self._finish(self.current)
        for multipart in self.open:
            if not multipart.has_parts:
                self._as_leaf(multipart)
        root = self.root.message
        if root is None:  # nothing but headers, or nothing at all
            self._begin_body(self.root, self.offset)
            self._finish(self.root)
            root = self.root.message
        assert root is not None
        return Scanned(root, self.extents, self.too_deep, self.parts > MAX_PARTS)


def _boundary(message: EmailMessage) -> bytes | None:
    try:
        boundary = message.get_boundary()
        return boundary.encode("ascii", "surrogateescape") if boundary else None
    except Exception:
        return None


def scan(chunks: Iterable[bytes], max_depth: int) -> Scanned:
    """The structure of the message in CHUNKS (see the module docstring). Multiparts nested
    deeper than MAX_DEPTH are kept whole, as application/octet-stream files."""
    scanner = _Scanner(max_depth)
    for block, starts_line in _line_blocks(chunks):
        scanner.feed(block, starts_line)
    return scanner.close()
