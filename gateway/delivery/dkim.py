"""DKIM signing (dkimpy) of the mail Sealgate writes itself, and of relayed mail on request."""

from __future__ import annotations

from pathlib import Path

import dkim  # type: ignore[import-untyped]  # dkimpy ships no type information

from gateway.config import Config, ConfigError

SIGNED_HEADERS = [b"from", b"to", b"cc", b"subject", b"date", b"message-id", b"in-reply-to",
                  b"references", b"mime-version", b"content-type", b"auto-submitted"]


class DKIMSigner:
    def __init__(self, domain: str, selector: str, private_key: bytes) -> None:
        self.domain = domain.encode()
        self.selector = selector.encode()
        self.private_key = private_key

    def sign(self, message: bytes) -> bytes:
        """MESSAGE with a DKIM-Signature header in front (relaxed/relaxed, rsa-sha256)."""
        present = {line.split(b":", 1)[0].strip().lower()
                   for line in message.split(b"\r\n\r\n", 1)[0].split(b"\r\n") if b":" in line}
        signature = dkim.sign(message, self.selector, self.domain, self.private_key,
                              canonicalize=(b"relaxed", b"relaxed"),
                              include_headers=[h for h in SIGNED_HEADERS if h in present])
        return bytes(signature) + message


def load_signer(config: Config) -> DKIMSigner | None:
    """The configured signer, None when signing is off; bad settings fail at start-up."""
    settings = config.dkim
    if not settings.domain:
        return None
    if not settings.selector or not settings.key_file:
        raise ConfigError("dkim.domain is set, so dkim.selector and dkim.key_file are needed too")
    try:
        key = Path(settings.key_file).read_bytes()
    except OSError as exc:
        raise ConfigError(f"dkim.key_file: cannot read {settings.key_file}:"
                          f" {exc.strerror}") from None
    signer = DKIMSigner(settings.domain, settings.selector, key)
    try:
        signer.sign(b"From: a@" + settings.domain.encode() + b"\r\nSubject: t\r\n\r\nt\r\n")
    except (dkim.DKIMException, ValueError) as exc:
        raise ConfigError(f"dkim.key_file: {settings.key_file} is not a usable private key:"
                          f" {exc}") from None
    return signer
