"""Multipart delimiters are whole lines of an open multipart's boundary, as RFC 2046 and the
email package have them; the body scan and the portal's streaming read share this reading."""

from __future__ import annotations

from gateway.mime_delimiter import Delimiter, delimiter_of, next_delimiter

OPEN = [b"--outer", b"--inner"]


def test_a_delimiter_line_names_the_innermost_open_multipart_it_matches() -> None:
    assert delimiter_of(b"--inner\r\n", OPEN) == (1, False)
    assert delimiter_of(b"--outer  \r\n", OPEN) == (0, False)


def test_a_closing_delimiter_is_recognised() -> None:
    assert delimiter_of(b"--outer--\r\n", OPEN) == (0, True)


def test_a_line_that_only_begins_like_a_delimiter_is_not_one() -> None:
    assert delimiter_of(b"--outerx\r\n", OPEN) is None
    assert delimiter_of(b"--inner--x\r\n", OPEN) is None


def test_the_next_delimiter_is_found_with_its_line_end() -> None:
    data = b"text\r\n--inner\r\nmore"
    assert next_delimiter(data, 0, True, OPEN) == Delimiter(6, 15, 1, False)


def test_a_boundary_in_the_middle_of_a_line_is_not_a_delimiter() -> None:
    assert next_delimiter(b"x\r\n----inner\r\n", 0, True, OPEN) is None
    assert next_delimiter(b"a --inner\r\n", 0, True, OPEN) is None


def test_data_that_does_not_begin_a_line_cannot_begin_with_a_delimiter() -> None:
    assert next_delimiter(b"--inner\r\n", 0, False, OPEN) is None
    assert next_delimiter(b"--inner\r\n", 0, True, OPEN) == Delimiter(0, 9, 1, False)
