"""What makes a password acceptable, after NIST SP 800-63B: long enough, not absurdly long,
not one of the passwords attackers try first, not the address itself. No composition
rules ("one digit, one symbol"): they make passwords harder to remember, not to guess."""

from __future__ import annotations

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


def password_problem(password: str, confirmation: str, address: str = "") -> tuple[str, str] | None:
    """Which field is wrong and why, in words for the form; None when PASSWORD can be used."""
    if len(password) < PASSWORD_MIN:
        return "password", f"Use at least {PASSWORD_MIN} characters."
    if len(password) > PASSWORD_MAX:
        return "password", f"Use at most {PASSWORD_MAX} characters."
    lowered = password.lower()
    if is_common(password) or (address and lowered in (address.lower(),
                                                        address.lower().partition("@")[0])):
        return "password", ("This password is too easy to guess: it is one of the most common "
                            "passwords, or your email address. Please choose another.")
    if password != confirmation:
        return "password_confirm", "The two passwords are not the same. Please type them again."
    return None
