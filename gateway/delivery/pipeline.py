"""SMTP command pipelining (RFC 2920) on an aiosmtplib connection.

aiosmtplib sends one command and waits for its reply; it cannot pipeline. Its protocol also
keeps only one reply at a time: data that arrives while a parsed reply is still waiting to
be picked up is dropped, and a second reply that came in the same segment as the first is
never handed out. So for a pipelined group this module takes the reading over: under the
connection's command lock it swaps in its own protocol (transport.set_protocol, which
asyncio, its TLS transport and uvloop all support), writes the whole group in one write,
collects the replies in order, and gives the transport back to aiosmtplib's protocol with
nothing left unread.
"""

from __future__ import annotations

import asyncio
from typing import cast

import aiosmtplib
from aiosmtplib.email import quote_address
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

from gateway.mailbox import is_plain_mailbox

__all__ = ["data_payload", "envelope_lines", "exchange"]

_MAX_LINE = 8192            # a reply line longer than this is not SMTP (RFC 5321 4.5.3.1.5: 512)
_MAX_REPLY_BYTES = 1 << 20  # and a group's replies together never come near this


def envelope_lines(sender: str, rcpts: list[str], options: list[str], encoding: str,
                   rcpt_options: dict[str, list[str]] | None = None) -> bytes:
    """MAIL FROM, one RCPT TO per recipient and DATA: the group RFC 2920 lets a client send
    at once (DATA last, since what follows depends on its reply). RCPT_OPTIONS: parameters
    by recipient (DSN's NOTIFY and ORCPT)."""
    lines = [b"MAIL FROM:" + _address(sender, encoding) + _params(options)]
    lines += [b"RCPT TO:" + _address(rcpt, encoding) + _params((rcpt_options or {}).get(rcpt, []))
              for rcpt in rcpts]
    lines.append(b"DATA")
    return b"".join(line + b"\r\n" for line in lines)


def _params(options: list[str]) -> bytes:
    return b"".join(b" " + o.encode("ascii") for o in options)


def data_payload(content: bytes) -> bytes:
    """CONTENT as sent after a 354: CRLF line endings, dot-stuffed, ended by a lone dot.

    Mail from the spool came in over SMTP, so it almost always has CRLF line endings and no
    line starting with a dot; checking that with bytes.count/find (C loops) is several times
    cheaper than the regular-expression rewrites, which then only run when needed."""
    lf, crlf = content.count(b"\n"), content.count(b"\r\n")
    if lf != crlf or content.count(b"\r") != crlf or not content.endswith(b"\r\n"):
        content = normalize_message_line_endings(content)
    if content.startswith(b".") or b"\n." in content:
        content = PERIOD_REGEX.sub(b"..", content)
    return content + b".\r\n"


def _address(address: str, encoding: str) -> bytes:
    if is_plain_mailbox(address):
        return b"<" + address.encode("ascii") + b">"
    quoted = quote_address(address).encode(encoding)
    if any(byte < 0x20 or byte == 0x7F for byte in quoted):
        raise ValueError(f"control character in address {address!r}")
    return quoted


async def exchange(client: aiosmtplib.SMTP, data: bytes, replies: int,
                   timeout: float | None) -> list[aiosmtplib.SMTPResponse]:
    """Write DATA (complete command lines, or a message payload) in one write and return the
    REPLIES replies that answer it, in order. On any error the connection is in an unknown
    state: the caller must close it."""
    protocol = client.protocol
    lock = getattr(protocol, "_command_lock", None)
    # uvloop's transports are not asyncio.Transport subclasses, but have the same methods.
    transport = cast(asyncio.Transport | None, protocol.transport if protocol else None)
    if protocol is None or lock is None or transport is None or transport.is_closing():
        raise aiosmtplib.SMTPServerDisconnected("Server not connected")
    async with lock:
        collector = _ReplyCollector(replies, protocol)
        # The transport's documented protocol swap: replies go to the collector until done.
        transport.set_protocol(collector)
        try:
            transport.write(data)
            async with asyncio.timeout(timeout):
                return await collector.done
        except TimeoutError:
            raise aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response") from None
        finally:
            transport.set_protocol(protocol)


class _ReplyCollector(asyncio.Protocol):
    """Parses replies off the stream until it has as many as it waits for; a lost connection
    is passed on to the SMTP client's own protocol, so the client knows it too."""

    def __init__(self, expected: int, owner: asyncio.BaseProtocol) -> None:
        self.expected = expected
        self.owner = owner
        self.buffer = bytearray()
        self.replies: list[aiosmtplib.SMTPResponse] = []
        self.done: asyncio.Future[list[aiosmtplib.SMTPResponse]] = (
            asyncio.get_running_loop().create_future())

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return  # unsolicited data after the last reply: ignored, as aiosmtplib does
        self.buffer += data
        try:
            while len(self.replies) < self.expected and (reply := self._next_reply()):
                self.replies.append(reply)
        except aiosmtplib.SMTPResponseException as exc:
            self._fail(exc)
            return
        if len(self.replies) == self.expected:
            self.done.set_result(self.replies)
        elif len(self.buffer) > _MAX_REPLY_BYTES:
            self._fail(aiosmtplib.SMTPResponseException(-1, "Response too long"))

    def eof_received(self) -> bool:
        self._fail(aiosmtplib.SMTPServerDisconnected("Unexpected EOF received"))
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(aiosmtplib.SMTPServerDisconnected("Connection lost"))
        self.owner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.owner.pause_writing()

    def resume_writing(self) -> None:
        self.owner.resume_writing()

    def _fail(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)
            self.done.exception()  # retrieved: nobody may await it after a disconnect

    def _next_reply(self) -> aiosmtplib.SMTPResponse | None:
        """The first complete (possibly multi-line) reply in the buffer, removed from it."""
        offset, lines = 0, []
        while (end := self.buffer.find(b"\n", offset)) != -1:
            line = bytes(self.buffer[offset:end + 1])
            offset = end + 1
            if len(line) > _MAX_LINE or not line[:3].isdigit():
                text = line[:80].decode("utf-8", "replace").strip()
                raise aiosmtplib.SMTPResponseException(-1, f"Malformed SMTP response line: {text}")
            lines.append(line[4:].strip(b" \t\r\n"))
            if line[3:4] != b"-":
                del self.buffer[:offset]
                message = b"\n".join(lines).decode("utf-8", "surrogateescape")
                return aiosmtplib.SMTPResponse(int(line[:3]), message)
        return None
