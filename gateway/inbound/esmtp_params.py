"""ESMTP parameters of MAIL and RCPT that aiosmtpd does not know: the DSN extension's
(RFC 3461 4.1-4.4: RET and ENVID on MAIL, NOTIFY and ORCPT on RCPT).

aiosmtpd refuses every parameter it does not know (555) and upper-cases the ones it passes
on, which would mangle ENVID and ORCPT (xtext, case kept). So the server takes ours out of
the command before aiosmtpd sees it (`take_params`), checks their syntax here, and keeps
what they say on the envelope (`GatewayEnvelope`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from aiosmtpd.smtp import Envelope

from gateway.inbound import codes
from gateway.storage.protocols import EnvelopeDSN

__all__ = ["GatewayEnvelope", "ParamError", "RecipientDSN", "decode_xtext", "mail_dsn",
           "rcpt_dsn", "take_params"]

MAIL_PARAMS = frozenset({"RET", "ENVID"})
RCPT_PARAMS = frozenset({"NOTIFY", "ORCPT"})
NOTIFY_EVENTS = ("SUCCESS", "FAILURE", "DELAY")
MAX_ENVID = 100  # RFC 3461 4.4: the ENVID value, as sent (xtext)
MAX_ORCPT = 500  # RFC 3461 4.2: the ORCPT value, as sent
# RFC 3461 4: xtext is "!".."~" but "+" and "=", or "+" and two upper-case hex digits.
_XTEXT = re.compile(r"(?:[!-*,-<>-~]|\+[0-9A-F]{2})*")
_ADDR_TYPE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")  # an atom (RFC 5322)


class ParamError(ValueError):
    """A DSN parameter that breaks RFC 3461: the message is the SMTP reply."""


@dataclass(frozen=True)
class RecipientDSN:
    """NOTIFY and ORCPT of one RCPT, as stored: NOTIFY "" (not given), "NEVER", or a
    comma list of SUCCESS, FAILURE, DELAY; ORCPT "addr-type;address", xtext decoded."""

    notify: str = ""
    orcpt: str = ""


class GatewayEnvelope(Envelope):
    """aiosmtpd's envelope with the DSN parameters: the message's, and per recipient in
    the order of rcpt_tos."""

    def __init__(self) -> None:
        super().__init__()
        self.dsn = EnvelopeDSN()
        self.rcpt_dsn: list[RecipientDSN] = []


@dataclass
class TakenParams:
    """A MAIL or RCPT argument split into what aiosmtpd handles and our parameters."""

    rest: str
    ours: dict[str, str] = field(default_factory=dict)


def take_params(arg: str, path_end: int, known: frozenset[str]) -> TakenParams:
    """Take the parameters named in KNOWN out of ARG (PATH_END: where its path ends).
    ParamError for one given twice or without a value."""
    head, params = arg[:path_end], arg[path_end:].split()
    ours: dict[str, str] = {}
    kept = []
    for param in params:
        keyword, eq, value = param.partition("=")
        name = keyword.upper()
        if name not in known:
            kept.append(param)
            continue
        if name in ours:
            raise ParamError(codes.DSN_PARAM_TWICE.format(param=name))
        if not eq or not value:
            raise ParamError(codes.DSN_PARAM_SYNTAX.format(param=name, why="a value is needed"))
        ours[name] = value
    return TakenParams(" ".join([head.rstrip(), *kept]), ours)


def decode_xtext(text: str, param: str) -> str:
    if not text.isascii() or not _XTEXT.fullmatch(text):
        raise ParamError(codes.DSN_PARAM_SYNTAX.format(
            param=param, why="not xtext (RFC 3461 4: printable ASCII, + and = as +XX)"))
    return re.sub(r"\+([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), text)


def mail_dsn(ours: dict[str, str]) -> EnvelopeDSN:
    """RET and ENVID of a MAIL command (ParamError when malformed)."""
    ret = ours.get("RET", "").upper()
    if ret not in ("", "FULL", "HDRS"):
        raise ParamError(codes.DSN_PARAM_SYNTAX.format(param="RET", why="FULL or HDRS"))
    envid = ours.get("ENVID", "")
    if len(envid) > MAX_ENVID:
        raise ParamError(codes.DSN_PARAM_SYNTAX.format(
            param="ENVID", why=f"at most {MAX_ENVID} characters"))
    return EnvelopeDSN(ret, decode_xtext(envid, "ENVID"))


def rcpt_dsn(ours: dict[str, str]) -> RecipientDSN:
    """NOTIFY and ORCPT of a RCPT command (ParamError when malformed)."""
    return RecipientDSN(_notify(ours.get("NOTIFY", "")), _orcpt(ours.get("ORCPT", "")))


def _notify(value: str) -> str:
    if not value:
        return ""
    events = value.upper().split(",")
    if events == ["NEVER"]:
        return "NEVER"
    if not all(e in NOTIFY_EVENTS for e in events) or len(set(events)) != len(events):
        raise ParamError(codes.DSN_PARAM_SYNTAX.format(
            param="NOTIFY", why="NEVER, or SUCCESS, FAILURE and DELAY separated by commas"))
    return ",".join(e for e in NOTIFY_EVENTS if e in events)


def _orcpt(value: str) -> str:
    if not value:
        return ""
    if len(value) > MAX_ORCPT:
        raise ParamError(codes.DSN_PARAM_SYNTAX.format(
            param="ORCPT", why=f"at most {MAX_ORCPT} characters"))
    addr_type, semicolon, address = value.partition(";")
    if not semicolon or not _ADDR_TYPE.fullmatch(addr_type) or not address:
        raise ParamError(codes.DSN_PARAM_SYNTAX.format(
            param="ORCPT", why="addr-type;address, e.g. rfc822;user@example.org"))
    return f"{addr_type.lower()};{decode_xtext(address, 'ORCPT')}"
