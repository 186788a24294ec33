"""What makes a password acceptable, after NIST SP 800-63B: long enough, not absurdly long,
not one of the passwords attackers try first, not the address itself. No composition
rules ("one digit, one symbol"): they make passwords harder to remember, not to guess."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

PASSWORD_MIN = 8
PASSWORD_MAX = 128  # room for long passphrases and password managers; argon2 hashes any length
COMMON_PASSWORDS = Path(__file__).resolve().parent / "common_passwords.txt"


@cache
def common_passwords() -> frozenset[str]:
    lines = COMMON_PASSWORDS.read_text(encoding="utf-8").splitlines()
    return frozenset(line for line in lines if line and not line.startswith("#"))


def is_common(password: str) -> bool:
    return password.lower() in common_passwords()


def _same(text: str) -> str:
    return text


def password_problem(password: str, confirmation: str, address: str = "",
                     _: Callable[[str], str] = _same) -> tuple[str, str] | None:
    """Which field is wrong and which rule it breaks, in words for the form (translated by
    _); None when PASSWORD can be used."""
    if len(password) < PASSWORD_MIN:
        return "password", _("Too short: use at least %(num)d characters.") % {
            "num": PASSWORD_MIN}
    if len(password) > PASSWORD_MAX:
        return "password", _("Too long: use at most %(num)d characters.") % {"num": PASSWORD_MAX}
    lowered = password.lower()
    if address and lowered in (address.lower(), address.lower().partition("@")[0]):
        return "password", _("This password is your email address, or the part before the @."
                             " Please choose one that has nothing to do with your address.")
    if is_common(password):
        return "password", _("This password is on the list of the most common passwords, which"
                             " attackers try first. Please choose another: a few unrelated words"
                             " make a strong one.")
    if password != confirmation:
        return "password_confirm", _("The two passwords are not the same. Please type them"
                                     " again.")
    return None
