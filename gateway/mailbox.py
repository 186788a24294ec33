"""The everyday mailbox: a dot-atom local part at a plain domain name. Such an address is
its own canonical form, so the SMTP paths that carry it need no general (slow) address
parser on either side: the header parser aiosmtpd and aiosmtplib use costs about a tenth
of a listener's or a runner's time per message."""

from __future__ import annotations

import re

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
PLAIN_MAILBOX = rf"{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"
_PLAIN = re.compile(PLAIN_MAILBOX)


def is_plain_mailbox(address: str) -> bool:
    return _PLAIN.fullmatch(address) is not None
