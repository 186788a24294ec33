"""Built-in detectors: named kinds of sensitive data that validate what they find, so an
admin needs no regular expression and a random number rarely counts.

Each text detector returns how many validated findings a text holds; it never returns the
text found (it is the sensitive data). `encrypted-attachment` is not a text detector: the
body scan counts the attachments whose content says they are encrypted (sniff.py).
"""

from __future__ import annotations

import datetime
import functools
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator

from gateway.classify.needle import Needle

ENCRYPTED_ATTACHMENT = "encrypted-attachment"
# The patterns start with what they look for, never with a look-behind: the regular
# expression engine then skips ahead to a possible first character at C speed. What may not
# stand before a finding is checked in Python, for the few candidates (_starts_clear).
_DIGITS_OR_DASH = frozenset("0123456789-")
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_WORD = _ALNUM | {"_"}


def _ascii_digits(digits: str) -> str:
    """Other scripts' digits (fullwidth, Arabic-Indic...) as ASCII digits: the patterns'
    \\d takes them, so the checks must read them too."""
    return digits if digits.isascii() else "".join(
        str(unicodedata.digit(c)) if c.isdigit() else c for c in digits)


def _starts_clear(text: str, start: int, forbidden: frozenset[str]) -> bool:
    return start == 0 or text[start - 1] not in forbidden


# Every number the digit detectors look for (an SSN, a card, an NPI) has ten or more
# characters of digits, spaces and dashes. One pass finds those runs; each detector then
# looks inside them only, not over the whole text.
_NUMBER_RUN = re.compile(r"\d[\d -]{9,}")


# For ASCII text the same runs are found faster: the text's bytes mapped to x (digit, space,
# dash) and . (anything else), then searched for ten x in a row, at memchr speed (a character
# class is checked at every position by the regular expression engine, ~20 times slower).
_RUN_TABLE = bytes(ord("x") if chr(b) in "0123456789 -" else ord(".") for b in range(256))
# The same idea gives each detector its candidates in ASCII text: a mask of the text in which
# what a finding must look like is a fixed string (found by bytes.find) or a pattern that
# starts with a literal. Only candidates go to the detector's own pattern; text full of
# numbers that are none of these (order numbers, phone numbers) costs a pass or two in C.
_SHAPE_TABLE = bytes(ord("0") if chr(b) in "0123456789" else b if chr(b) in " -" else ord(".")
                     for b in range(256))  # digits as 0, space and dash kept
_NPI_TABLE = bytes(ord("1") if chr(b) in "12" else ord("0") if chr(b) in "0123456789"
                   else b if chr(b) == "-" else ord(".") for b in range(256))
_CAPITALS_DIGITS_TABLE = bytes(ord("A") if chr(b).isascii() and chr(b).isupper() else
                               ord("0") if chr(b) in "0123456789" else ord(".")
                               for b in range(256))


@functools.lru_cache(maxsize=4)
def _mask(text: str, table: bytes) -> bytes | None:
    """TEXT's bytes mapped through TABLE, or None for text that is not ASCII."""
    return text.encode("ascii").translate(table) if text.isascii() else None


def _find_all(haystack: bytes, needle: bytes) -> Iterator[int]:
    position = haystack.find(needle)
    while position >= 0:
        yield position
        position = haystack.find(needle, position + 1)


def _matches_at(pattern: re.Pattern[str], text: str, starts: Iterable[int]
                ) -> Iterator[re.Match[str]]:
    """PATTERN's matches in TEXT starting at STARTS (ascending), none inside another, as
    finditer finds them when STARTS hold every position where a match may begin."""
    end = 0
    for start in starts:
        if start < end:
            continue
        match = pattern.match(text, start)
        if match is not None:
            end = match.end()
            yield match


@functools.lru_cache(maxsize=2)
def _number_runs(text: str) -> tuple[tuple[int, int], ...]:
    if not text.isascii():
        return tuple(match.span() for match in _NUMBER_RUN.finditer(text))
    mask = text.encode("ascii").translate(_RUN_TABLE)
    runs = []
    position = mask.find(b"x" * 10)
    while position >= 0:
        end = mask.find(b".", position)
        end = len(mask) if end < 0 else end
        start = position
        while start < end and not text[start].isdigit():
            start += 1
        if end - start >= 10:
            runs.append((start, end))
        position = mask.find(b"x" * 10, end)
    return tuple(runs)


def _in_runs(pattern: re.Pattern[str], text: str) -> Iterator[re.Match[str]]:
    for start, end in _number_runs(text):
        yield from pattern.finditer(text, start, end)


# -- US social security numbers --------------------------------------------------------------
# Written with dashes or spaces (a bare run of nine digits is any number). Never issued:
# area 000, 666 and 900-999, group 00, serial 0000, and numbers published as examples.
_SSN = re.compile(r"(\d{3})([- ])(\d{2})\2(\d{4})(?![\d-])")
_SSN_EXAMPLES = {"078-05-1120", "219-09-9999", "123-45-6789"}
_SSN_SHAPES = (b"000-00-0000", b"000 00 0000")


def _ssn_candidates(text: str) -> Iterator[re.Match[str]]:
    shape = _mask(text, _SHAPE_TABLE)
    if shape is None:
        return _in_runs(_SSN, text)
    starts = sorted(p for needle in _SSN_SHAPES for p in _find_all(shape, needle))
    return _matches_at(_SSN, text, starts)


def count_us_ssn(text: str) -> int:
    found = 0
    for match in _ssn_candidates(text):
        if not _starts_clear(text, match.start(), _DIGITS_OR_DASH):
            continue
        area, group, serial = (_ascii_digits(match.group(n)) for n in (1, 3, 4))
        if area in ("000", "666") or area >= "900" or group == "00" or serial == "0000":
            continue
        if f"{area}-{group}-{serial}" in _SSN_EXAMPLES:
            continue
        found += 1
    return found


# -- payment card numbers --------------------------------------------------------------------
_CARD = re.compile(r"\d(?:[ -]?\d){12,18}(?![\d-])")
# Issuer prefixes (IIN ranges) of the networks in use; a Luhn-valid number outside them is not
# taken for a card.
_CARD_PREFIX = re.compile(r"4|5[1-5]|2(?:2[2-9][1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)|3[47]"
                          r"|6(?:011|5|4[4-9])|35(?:2[89]|[3-8]\d)|3(?:0[0-5]|[689])|62")


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _card_candidates(text: str) -> Iterator[re.Match[str]]:
    shape = _mask(text, _SHAPE_TABLE)
    # Separators deleted, a card is thirteen digits or more in a row: without such a row
    # (the common case) there is no card to look for.
    if shape is not None and shape.translate(None, b" -").find(b"0" * 13) < 0:
        return iter(())
    return _in_runs(_CARD, text)


def count_payment_card(text: str) -> int:
    found = 0
    for match in _card_candidates(text):
        if not _starts_clear(text, match.start(), _DIGITS_OR_DASH):
            continue
        digits = _ascii_digits(re.sub(r"[ -]", "", match.group()))
        if not 13 <= len(digits) <= 19 or len(set(digits)) == 1:
            continue
        if _CARD_PREFIX.match(digits) and luhn_valid(digits):
            found += 1
    return found


# -- IBAN --------------------------------------------------------------------------------------
# No group around the start: a leading group keeps the engine from skipping ahead.
_IBAN = re.compile(r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])")
# Lengths of the countries' IBANs (ISO 13616 registry); other country codes are not IBANs.
_IBAN_LENGTH = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}


def iban_valid(iban: str) -> bool:
    iban = iban.replace(" ", "").upper()
    if _IBAN_LENGTH.get(iban[:2]) != len(iban):
        return False
    rearranged = iban[4:] + iban[:4]
    number = "".join(str(int(char, 36)) for char in rearranged)
    return int(number) % 97 == 1


# A capital then a digit, in the _CAPITALS_DIGITS_TABLE mask: where an IBAN or an ICD-10 code
# begins. The regular expression engine finds it faster than bytes.find, whose skip table is
# of little use in a three-letter alphabet.
_CAPITAL_DIGIT = re.compile(rb"A0")


@functools.lru_cache(maxsize=2)
def _capital_digit(text: str) -> bool:
    """Whether TEXT may hold an IBAN or an ICD-10 code: False only when it cannot."""
    mask = _mask(text, _CAPITALS_DIGITS_TABLE)
    return mask is None or _CAPITAL_DIGIT.search(mask) is not None


def _iban_candidates(text: str) -> Iterator[re.Match[str]]:
    if not text.isascii():
        yield from _IBAN.finditer(text)
        return
    if not _capital_digit(text):
        return
    mask = _mask(text, _CAPITALS_DIGITS_TABLE)  # two capitals, two digits: "AA00"
    assert mask is not None
    position = mask.find(b"AA00")
    while position >= 0:
        match = _IBAN.match(text, position)
        if match is not None:
            yield match
        position = mask.find(b"AA00", match.end() if match is not None else position + 1)


def count_iban(text: str) -> int:
    return sum(1 for match in _iban_candidates(text)
               if _starts_clear(text, match.start(), _ALNUM) and iban_valid(match.group()))


# -- US National Provider Identifier ---------------------------------------------------------
# Ten digits starting with 1 or 2, whose check digit is the Luhn digit of 80840 + the first
# nine (the card issuer prefix for US health applications).
_NPI = re.compile(r"[12]\d{9}(?![\d-])")
_NPI_SHAPE = re.compile(rb"1[01]{9}(?![01-])")  # _NPI in the _NPI_TABLE mask


def _npi_candidates(text: str) -> Iterator[re.Match[str]]:
    mask = _mask(text, _NPI_TABLE)
    if mask is None:
        return _in_runs(_NPI, text)
    return _matches_at(_NPI, text, (shape.start() for shape in _NPI_SHAPE.finditer(mask)))


def count_us_npi(text: str) -> int:
    return sum(1 for match in _npi_candidates(text)
               if _starts_clear(text, match.start(), _DIGITS_OR_DASH)
               and luhn_valid("80840" + _ascii_digits(match.group())))


# -- ICD-10-CM codes near a diagnosis keyword ------------------------------------------------
_ICD10 = re.compile(r"(?<![A-Za-z0-9.])[A-TV-Z]\d[0-9AB](?:\.[0-9A-Z]{1,4})?(?![A-Za-z0-9])")
# Searched in the lower-cased text: a case-insensitive pattern cannot skip ahead.
_DIAGNOSIS = re.compile(r"(?:diagnos[a-z]*|dx|icd(?:-?10(?:-cm)?)?|assessment|impression"
                        r"|condition|problem list)\b")
_DIAGNOSIS_ANY_CASE = re.compile(_DIAGNOSIS.pattern, re.IGNORECASE)
_DIAGNOSIS_WORDS = tuple(map(Needle, ("diagnos", "dx", "icd", "assessment", "impression",
                                      "condition", "problem list")))


@functools.lru_cache(maxsize=2)
def _lowered(text: str) -> str | None:
    """TEXT lower-cased, or None when that moves offsets (a character whose lower case is
    longer)."""
    lowered = text.lower()
    return lowered if len(lowered) == len(text) else None


def _keywords(text: str, words: tuple[Needle, ...], pattern: re.Pattern[str],
              any_case: re.Pattern[str]) -> list[re.Match[str]]:
    """PATTERN's matches in TEXT whatever the case, each starting a word, in order. The
    lower-cased text is searched for WORDS (the keywords' beginnings) at memchr speed, and
    PATTERN is tried only where one begins."""
    lowered = _lowered(text)
    if lowered is None:
        return [m for m in any_case.finditer(text) if _starts_clear(text, m.start(), _WORD)]
    found: dict[int, re.Match[str]] = {}
    for word in words:
        position = word.find(lowered)
        while position >= 0:
            if position not in found and _starts_clear(lowered, position, _WORD):
                match = pattern.match(lowered, position)
                if match is not None:
                    found[position] = match
            position = word.find(lowered, position + 1)
    return [found[position] for position in sorted(found)]
_NEAR = 80  # characters on either side of a keyword


def count_icd10(text: str) -> int:
    # Every code starts with a capital and a digit: with none such in the text, no keyword
    # need be looked for.
    if not _capital_digit(text):
        return 0
    found: set[int] = set()
    for keyword in _keywords(text, _DIAGNOSIS_WORDS, _DIAGNOSIS, _DIAGNOSIS_ANY_CASE):
        low, high = max(keyword.start() - _NEAR, 0), keyword.end() + _NEAR
        for code in _ICD10.finditer(text, low, high):
            found.add(code.start())
    return len(found)


# -- dates of birth --------------------------------------------------------------------------
_BIRTH = re.compile(r"(?:d\.?o\.?b\.?|date of birth|birth ?date|born(?: on)?)(?![a-z])")
_BIRTH_ANY_CASE = re.compile(_BIRTH.pattern, re.IGNORECASE)
_BIRTH_WORDS = tuple(map(Needle, ("dob", "d.o", "do.", "date of birth", "birth", "born")))
_MONTHS = {name: number for number, names in enumerate(
    (("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",),
     ("jun", "june"), ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"),
     ("oct", "october"), ("nov", "november"), ("dec", "december")), start=1)
    for name in names}
_MONTH = "|".join(sorted(_MONTHS, key=len, reverse=True))
_DATE = re.compile(
    r"(?P<y1>\d{4})-(?P<m1>\d{1,2})-(?P<d1>\d{1,2})"
    r"|(?P<a>\d{1,2})[/.-](?P<b>\d{1,2})[/.-](?P<y2>\d{4}|\d{2})"
    rf"|(?P<mn1>{_MONTH})\.? (?P<d3>\d{{1,2}})(?:st|nd|rd|th)?,? (?P<y3>\d{{4}})"
    rf"|(?P<d4>\d{{1,2}})(?:st|nd|rd|th)? (?P<mn2>{_MONTH})\.?,? (?P<y4>\d{{4}})",
    re.IGNORECASE)
_GAP = re.compile(r"[\s:=\-,()]*(?:on |the |is |was )*")
_AFTER_KEYWORD = 24  # characters between the keyword and the date ("DOB: ", "born on the ")


def _real_date(year: int, month: int, day: int) -> bool:
    if year < 100:
        year += 1900 if year > datetime.date.today().year % 100 else 2000
    try:
        date = datetime.date(year, month, day)
    except ValueError:
        return False
    return datetime.date(1900, 1, 1) <= date <= datetime.date.today()


def _date_of(match: re.Match[str]) -> bool:
    g = match.groupdict()
    if g["y1"]:
        return _real_date(int(g["y1"]), int(g["m1"]), int(g["d1"]))
    if g["y2"]:  # month/day/year (US) or day.month.year: either reading may be meant
        a, b, year = int(g["a"]), int(g["b"]), int(g["y2"])
        return _real_date(year, a, b) or _real_date(year, b, a)
    if g["y3"]:
        return _real_date(int(g["y3"]), _MONTHS[g["mn1"].lower()], int(g["d3"]))
    return _real_date(int(g["y4"]), _MONTHS[g["mn2"].lower()], int(g["d4"]))


def count_dob(text: str) -> int:
    found = 0
    for keyword in _keywords(text, _BIRTH_WORDS, _BIRTH, _BIRTH_ANY_CASE):
        gap = _GAP.match(text, keyword.end())
        start = gap.end() if gap else keyword.end()
        if start - keyword.end() > _AFTER_KEYWORD:
            continue
        date = _DATE.match(text, start)
        if date is not None and _date_of(date):
            found += 1
    return found


TEXT_DETECTORS: dict[str, Callable[[str], int]] = {
    "us-ssn": count_us_ssn,
    "payment-card": count_payment_card,
    "iban": count_iban,
    "us-npi": count_us_npi,
    "icd10": count_icd10,
    "dob": count_dob,
}
DETECTORS = (*TEXT_DETECTORS, ENCRYPTED_ATTACHMENT)
