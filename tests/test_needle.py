"""A Needle finds what str.find finds, whichever search it uses for its length."""

from __future__ import annotations

import hypothesis
from hypothesis import strategies as st

from gateway.classify.needle import Needle

_ALPHABET = "ab.d o\n"


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(needle=st.text(_ALPHABET, min_size=1, max_size=6),
                  haystack=st.text(_ALPHABET, max_size=60), start=st.integers(0, 70))
def test_a_needle_finds_the_position_str_find_finds(needle: str, haystack: str,
                                                    start: int) -> None:
    assert Needle(needle).find(haystack, start) == haystack.find(needle, start)


def test_a_needle_with_pattern_characters_is_found_literally() -> None:
    assert Needle("d.o").find("dxo d.o") == 4
