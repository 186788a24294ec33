"""What every policy module shares: where a setting came from, and the error naming it."""

from __future__ import annotations

from dataclasses import dataclass


class PolicyError(ValueError):
    """An invalid policy file; the message starts with file:line."""


@dataclass(frozen=True)
class Origin:
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"
