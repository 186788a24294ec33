"""The DSN parameters (RFC 3461) a message carries on to a next hop that offers DSN: RET
and ENVID on MAIL, NOTIFY and ORCPT on each RCPT, as xtext again.

A next hop that does not offer DSN gets none of them (RFC 3461 6.2.1 c): then Sealgate
reports such a recipient `relayed` itself when the sender asked for success notices.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DSNRequest", "encode_xtext"]


def encode_xtext(text: str) -> str:
    """TEXT as xtext (RFC 3461 4): "+" and "=", and what is not printable ASCII, as +XX."""
    return "".join(c if "!" <= c <= "~" and c not in "+=" else f"+{ord(c):02X}"
                   for c in text)


@dataclass(frozen=True)
class DSNRequest:
    """What the sender asked: RET and ENVID for the message; NOTIFY and ORCPT by recipient
    (values as stored: NOTIFY "" or "NEVER" or "SUCCESS,FAILURE,..."; ORCPT "type;addr")."""

    ret: str = ""
    envid: str = ""
    notify: dict[str, str] = field(default_factory=dict)
    orcpt: dict[str, str] = field(default_factory=dict)

    def mail_options(self) -> list[str]:
        options = [f"RET={self.ret}"] if self.ret else []
        return options + ([f"ENVID={encode_xtext(self.envid)}"] if self.envid else [])

    def rcpt_options(self, rcpt: str) -> list[str]:
        options = [f"NOTIFY={self.notify[rcpt]}"] if self.notify.get(rcpt) else []
        addr_type, _, address = self.orcpt.get(rcpt, "").partition(";")
        return options + ([f"ORCPT={addr_type};{encode_xtext(address)}"] if address else [])

    @property
    def empty(self) -> bool:
        return not (self.ret or self.envid or any(self.notify.values())
                    or any(self.orcpt.values()))
