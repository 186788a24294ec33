"""A fixed string looked for in text: the many keywords and literals of one classification."""

from __future__ import annotations

import re

# str.find skips ahead by about the needle's length, so a needle this short barely skips;
# the regular expression engine's tight loop over its first character is then about twice as
# fast (3.3 against 6.5 µs over bench/classify.py's 10 KB text). Longer needles: str.find.
_SHORT = 3


class Needle:
    """TEXT, found in a haystack by whichever search is faster for its length."""

    __slots__ = ("text", "_pattern")

    def __init__(self, text: str) -> None:
        self.text = text
        self._pattern = re.compile(re.escape(text)) if len(text) <= _SHORT else None

    def find(self, haystack: str, start: int = 0) -> int:
        """The first position of TEXT in HAYSTACK from START, or -1."""
        if self._pattern is None:
            return haystack.find(self.text, start)
        match = self._pattern.search(haystack, start)
        return -1 if match is None else match.start()

    def __repr__(self) -> str:
        return f"Needle({self.text!r})"
