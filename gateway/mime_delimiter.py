"""Multipart delimiters (RFC 2046 5.1.1) found in a stream of a message's lines, as the
email package finds them: a line "--boundary", "--boundary--" for the last, trailing blanks
allowed; the boundary of an enclosing multipart also ends the parts inside it. Shared by
the body scan (classification) and the portal's streaming read of a stored message, so the
two never disagree on where a part ends."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Delimiter:
    start: int  # where the delimiter line begins
    end: int  # after its line end
    level: int  # which open multipart it belongs to (an index into the delimiters given)
    closing: bool  # "--boundary--": the multipart's last part has ended


def delimiter_of(line: bytes, delimiters: Sequence[bytes]) -> tuple[int, bool] | None:
    """(level, closing) when LINE is a delimiter of one of DELIMITERS (b"--" + boundary,
    outermost first), the innermost that matches; else None."""
    if not delimiters or not line.startswith(b"--"):
        return None
    text = line.rstrip(b"\r\n").rstrip(b" \t")
    for level in range(len(delimiters) - 1, -1, -1):
        if text == delimiters[level]:
            return level, False
        if text == delimiters[level] + b"--":
            return level, True
    return None


def next_delimiter(data: bytes, position: int, line_start: bool,
                   delimiters: Sequence[bytes]) -> Delimiter | None:
    """The first delimiter line in DATA from POSITION on, where LINE_START says whether
    POSITION begins a line (a delimiter is only ever a whole line)."""
    search = position
    while True:
        if search == position and line_start and data.startswith(b"--", position):
            candidate = position
        else:
            found = data.find(b"\n--", search)
            if found < 0:
                return None
            candidate = found + 1
        newline = data.find(b"\n", candidate)
        end = len(data) if newline < 0 else newline + 1
        match = delimiter_of(data[candidate:end], delimiters)
        if match is not None:
            return Delimiter(candidate, end, *match)
        search = candidate + 1
