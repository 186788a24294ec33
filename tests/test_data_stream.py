"""DATA read as a stream: the content is the same however the client's octets are split
into packets, and what follows the end of data stays for the command loop."""

from __future__ import annotations

import asyncio

import pytest

from gateway.inbound import codes
from gateway.inbound.data_stream import ContentCheck, read_data

LINE_LIMIT_READER = 1001  # aiosmtpd's StreamReader limit: DATA must not depend on it


def read(packets: list[bytes], size_limit: int | None = None) -> tuple[bytes, str | None, bytes]:
    """(content, problem, what is left in the reader) for DATA arriving as PACKETS."""

    async def run() -> tuple[bytes, str | None, bytes]:
        reader = asyncio.StreamReader(limit=LINE_LIMIT_READER)
        for packet in packets:
            reader.feed_data(packet)
        reader.feed_eof()
        pieces: list[bytes] = []

        async def collect(piece: bytes) -> None:
            pieces.append(piece)

        check = ContentCheck(size_limit)
        await read_data(reader, check, collect)
        return b"".join(pieces), check.problem, await reader.read()

    return asyncio.run(run())


def split_every(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


WIRE = b"Subject: hi\r\n\r\n..dot\r\n.x\r\nline\r\n" + b"y" * 998 + b"\r\n.\r\n"
UNSTUFFED = b"Subject: hi\r\n\r\n.dot\r\nx\r\nline\r\n" + b"y" * 998 + b"\r\n"


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 1000, 1 << 20])
def test_content_is_the_same_for_every_packet_size(size: int) -> None:
    assert read(split_every(WIRE, size)) == (UNSTUFFED, None, b"")


def test_empty_message_ends_at_once() -> None:
    assert read([b".\r\nQUIT\r\n"]) == (b"", None, b"QUIT\r\n")


def test_leading_dot_of_the_first_line_is_transparency() -> None:
    assert read([b"..a\r\n.\r\n"])[0] == b".a\r\n"


def test_pipelined_commands_after_the_end_stay_in_the_reader() -> None:
    content, problem, rest = read([b"a: b\r\n\r\nbody\r\n.\r\nRSET\r\nNOOP\r\n"])
    assert (content, problem, rest) == (b"a: b\r\n\r\nbody\r\n", None, b"RSET\r\nNOOP\r\n")


def test_large_content_arrives_in_large_pieces() -> None:
    pieces: list[int] = []

    async def run() -> None:
        reader = asyncio.StreamReader(limit=LINE_LIMIT_READER)
        reader.feed_data(b"a: b\r\n\r\n" + (b"z" * 998 + b"\r\n") * 1000 + b".\r\n")

        async def collect(piece: bytes) -> None:
            pieces.append(len(piece))

        await read_data(reader, ContentCheck(None), collect)

    asyncio.run(run())
    assert max(pieces) > 900_000


@pytest.mark.parametrize("bad", [b"a\rb\r\n", b"a\nb\r\n", b"a\x00b\r\n", b"a\r\r\n"],
                         ids=["CR", "LF", "NUL", "CR-CRLF"])
def test_bare_line_ending_is_the_problem(bad: bytes) -> None:
    assert read(split_every(b"a: b\r\n\r\n" + bad + b".\r\n", 3))[1] == codes.BARE_LINE_ENDING


def test_bare_cr_split_from_its_line_at_a_packet_edge_is_not_a_problem() -> None:
    assert read([b"a: b\r", b"\n\r\nx\r", b"\n.\r\n"]) == (b"a: b\r\n\r\nx\r\n", None, b"")


def test_smuggled_end_does_not_end_data() -> None:
    _, problem, rest = read([b"a: b\r\n\r\nx\n.\nMAIL FROM:<e@x>\r\n.\r\nNOOP\r\n"])
    assert problem == codes.BARE_LINE_ENDING and rest == b"NOOP\r\n"


def test_line_of_999_octets_split_across_packets_is_the_problem() -> None:
    wire = b"a: b\r\n\r\n" + b"x" * 999 + b"\r\n.\r\n"
    assert read(split_every(wire, 100))[1] == codes.LINE_TOO_LONG


def test_content_over_the_size_limit_is_the_problem_and_is_read_to_the_end() -> None:
    _, problem, rest = read([b"a: b\r\n\r\n" + b"x" * 500 + b"\r\n.\r\nQUIT\r\n"],
                            size_limit=100)
    assert (problem, rest) == (codes.MESSAGE_TOO_BIG, b"QUIT\r\n")
