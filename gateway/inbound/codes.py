"""SMTP replies with RFC 3463 enhanced status codes, shared by the server and its tests."""

from typing import Final

OK_SENDER: Final = "250 2.1.0 Sender OK"
OK_RECIPIENT: Final = "250 2.1.5 Recipient OK"
QUEUED: Final = "250 2.0.0 Ok: queued as {queue_id}"

RELAY_DENIED: Final = "550 5.7.1 Relaying denied: your address is not allowed to relay"
TOO_MANY_RECIPIENTS: Final = "452 4.5.3 Too many recipients"
BAD_RECIPIENT_SYNTAX: Final = "553 5.1.3 Recipient address syntax invalid"
BAD_SENDER_SYNTAX: Final = "553 5.1.7 Sender address syntax invalid"
# A non-UTF-8 byte in an address (RFC 6531 allows UTF-8 only): refused at MAIL/RCPT.
SENDER_NOT_UTF8: Final = "501 5.1.7 Sender address contains bytes that are not UTF-8"
RECIPIENT_NOT_UTF8: Final = "501 5.1.3 Recipient address contains bytes that are not UTF-8"
# RFC 6531 3.5: a non-ASCII address needs the SMTPUTF8 parameter on MAIL.
NEEDS_SMTPUTF8: Final = "553 5.6.7 Non-ASCII address without the SMTPUTF8 parameter on MAIL"
# We do not deliver to address literals (no MX, no policy for a bare IP).
ADDRESS_LITERAL: Final = "550 5.1.2 Address literals (user@[ip]) are not accepted: use a domain"
# Percent-hack (a%b@c) and bang paths (a!b@c) would let the next hop relay further.
ROUTING_LOCAL_PART: Final = "550 5.7.1 Routing through the local part (% or !) is not accepted"
MESSAGE_TOO_BIG: Final = "552 5.3.4 Message size exceeds fixed maximum message size"
BARE_LINE_ENDING: Final = "550 5.6.0 Message refused: bare CR or LF or NUL in content (use CRLF)"
# RFC 5321 4.5.3.1.6: 998 octets plus CRLF. RFC 5321 4.5.3.1.10 names "500 Line too long" as
# the reply (Postfix too); the enhanced code says what is wrong: the content (X.6.0), not a
# command. The reply comes at the end of DATA, after the whole message was read.
LINE_TOO_LONG: Final = "500 5.6.0 Line too long: text lines are limited to 998 octets plus CRLF"
NO_HEADERS: Final = "550 5.6.0 Message refused: no header section"
STORE_FAILED: Final = "451 4.3.0 Temporary failure storing the message, try again later"
INSUFFICIENT_STORAGE: Final = "452 4.3.1 Insufficient system storage, try again later"
# RFC 3461 parameters (RET, ENVID, NOTIFY, ORCPT) with a bad value, or given twice.
DSN_PARAM_SYNTAX: Final = "501 5.5.4 Invalid {param} parameter: {why}"
DSN_PARAM_TWICE: Final = "501 5.5.4 The {param} parameter may be given only once"
AUTH_NOT_OFFERED: Final = "502 5.5.1 AUTH is not offered here"
# Sent before closing: a silent client, and one over the connection caps.
IDLE_TIMEOUT: Final = "421 4.4.2 Idle for too long, closing the connection"
TOO_MANY_CONNECTIONS: Final = "421 4.7.0 Too many connections, try again later"
TOO_MANY_FROM_CLIENT: Final = "421 4.7.0 Too many connections from your address, try again later"
INTERNAL_ERROR: Final = "451 4.3.0 Internal error, try again later"
# RFC 8689 4.1: REQUIRETLS is accepted only on a TLS session.
REQUIRETLS_NEEDS_TLS: Final = "530 5.7.10 REQUIRETLS needed a TLS session: use STARTTLS first"
REQUIRETLS_TAKES_NO_VALUE: Final = "501 5.5.4 REQUIRETLS takes no value"

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
    "555": "5.5.4",
}
