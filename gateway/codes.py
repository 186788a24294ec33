"""SMTP replies with RFC 3463 enhanced status codes, shared by the server and its tests."""

from typing import Final

OK_SENDER: Final = "250 2.1.0 Sender OK"
OK_RECIPIENT: Final = "250 2.1.5 Recipient OK"
QUEUED: Final = "250 2.0.0 Ok: queued as {queue_id}"

RELAY_DENIED: Final = "550 5.7.1 Relaying denied: your address is not allowed to relay"
TOO_MANY_RECIPIENTS: Final = "452 4.5.3 Too many recipients"
BAD_RECIPIENT_SYNTAX: Final = "553 5.1.3 Recipient address syntax invalid"
BAD_SENDER_SYNTAX: Final = "553 5.1.7 Sender address syntax invalid"
MESSAGE_TOO_BIG: Final = "552 5.3.4 Message size exceeds fixed maximum message size"
BARE_LINE_ENDING: Final = "550 5.6.0 Message refused: bare CR or LF or NUL in content (use CRLF)"
NO_HEADERS: Final = "550 5.6.0 Message refused: no header section"
STORE_FAILED: Final = "451 4.3.0 Temporary failure storing the message, try again later"

# aiosmtpd answers some commands itself without an enhanced code; RFC 3463 pairs for them.
ENHANCED_FOR_BASIC: Final = {
    "221": "2.0.0",
    "421": "4.3.0",
    "451": "4.3.0",
    "500": "5.5.2",
    "501": "5.5.4",
    "502": "5.5.1",
    "503": "5.5.1",
    "504": "5.5.4",
    "550": "5.7.1",
    "552": "5.3.4",
    "553": "5.1.3",
    "554": "5.6.0",
}
