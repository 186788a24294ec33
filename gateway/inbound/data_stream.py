"""DATA read in large chunks: end of data, dot-unstuffing and the content checks run on the
stream, so a message is never collected line by line (aiosmtpd's way) nor held whole.

Only CRLF.CRLF ends DATA (RFC 5321 4.1.1.4). Bare CR, bare LF and NUL anywhere are refused
(they are how SMTP smuggling hides a second message), as are text lines over 998 octets
(RFC 5321 4.5.3.1.6) and content over the size limit; the reply comes after the whole
message was read, so nothing of the content is ever taken for commands.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from gateway.inbound import codes

TERMINATOR = b"\r\n.\r\n"
MAX_LINE = 998  # octets, without the CRLF


class ContentCheck:
    """Unstuffs and checks raw DATA pieces fed in order. PROBLEM is the reply for the first
    fault found (None while the content is fine); after one, no content is passed on."""

    def __init__(self, size_limit: int | None) -> None:
        self.size_limit = size_limit
        self.size = 0  # raw octets so far, dot-stuffing included (as aiosmtpd counts)
        self.problem: str | None = None
        self._line = 0  # octets of the open line after unstuffing
        self._at_line_start = True
        self._held_cr = b""  # a trailing CR whose LF may start the next piece

    def feed(self, raw: bytes) -> bytes:
        """The unstuffed content of RAW (b"" once there is a problem)."""
        self.size += len(raw)
        if self.problem is not None:
            return b""
        if self.size_limit and self.size > self.size_limit:
            self._refuse(codes.MESSAGE_TOO_BIG)
            return b""
        piece = self._held_cr + raw
        self._held_cr = b""
        if piece.endswith(b"\r"):
            piece, self._held_cr = piece[:-1], b"\r"
        if not piece:
            return b""
        if self._at_line_start and piece[:1] == b".":
            piece = piece[1:]
        piece = piece.replace(b"\r\n.", b"\r\n")  # transparency (RFC 5321 4.5.2)
        self._at_line_start = piece.endswith(b"\r\n") or (not piece and self._at_line_start)
        if _has_bare_line_end(piece):
            self._refuse(codes.BARE_LINE_ENDING)
            return b""
        if self._line_too_long(piece):
            self._refuse(codes.LINE_TOO_LONG)
            return b""
        return piece

    def finish(self) -> None:
        """The end of data was read: a CR held back is bare."""
        if self._held_cr and self.problem is None:
            self._refuse(codes.BARE_LINE_ENDING)

    def _refuse(self, reply: str) -> None:
        self.problem = reply

    def _line_too_long(self, piece: bytes) -> bool:
        lines = piece.split(b"\r\n")
        self._line += len(lines[0])
        if len(lines) == 1:
            return self._line > MAX_LINE
        if self._line > MAX_LINE or max(map(len, lines[1:-1]), default=0) > MAX_LINE:
            return True
        self._line = len(lines[-1])
        return self._line > MAX_LINE


def _has_bare_line_end(piece: bytes) -> bool:
    """A CR not before LF, an LF not after CR, or a NUL: four passes at memchr speed, where a
    regular expression with look-around costs a step per octet."""
    pairs = piece.count(b"\r\n")
    return piece.count(b"\r") != pairs or piece.count(b"\n") != pairs or b"\x00" in piece


def _held_prefix(window: bytes) -> int:
    """Length of the longest end of WINDOW that could begin the terminator."""
    for length in range(min(len(window), len(TERMINATOR) - 1), 0, -1):
        if TERMINATOR.startswith(window[-length:]):
            return length
    return 0


async def read_data(reader: asyncio.StreamReader, check: ContentCheck,
                    deliver: Callable[[bytes], Awaitable[None]]) -> None:
    """Read DATA up to and including CRLF.CRLF, passing the checked, unstuffed content to
    DELIVER in pieces as large as the reader holds. Bytes after the terminator (pipelined
    commands) stay in READER for the command loop."""
    # The data starts at a line start, as if after a CRLF: ".\r\n" at once is an empty message.
    window, virtual = b"\r\n", 2
    while window:  # the first octets may complete a terminator that began in WINDOW
        window += await reader.readexactly(len(TERMINATOR) - len(window))
        if window == TERMINATOR:
            await _deliver(check, deliver, window[virtual:2])
            check.finish()
            return
        held = _held_prefix(window)
        await _deliver(check, deliver, window[virtual:len(window) - held])
        window, virtual = window[len(window) - held:], 0
    while True:
        try:
            chunk = await reader.readuntil(TERMINATOR)
        except asyncio.LimitOverrunError as overrun:
            # No terminator starts in the first CONSUMED octets: take them as content.
            await _deliver(check, deliver, await reader.readexactly(overrun.consumed))
            continue
        await _deliver(check, deliver, chunk[:-3])  # keep the CRLF that ends the last line
        check.finish()
        return


async def _deliver(check: ContentCheck, deliver: Callable[[bytes], Awaitable[None]],
                   raw: bytes) -> None:
    if raw:
        piece = check.feed(raw)
        if piece:
            await deliver(piece)
