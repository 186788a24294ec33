"""Web security plumbing shared by every portal response: the server secret, security
headers (a pure ASGI middleware) and CSRF protection for every POST form."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SECRET_FILE = "portal.secret"
SECRET_SIZE = 32

CSRF_COOKIE = "sealgate_csrf"
CSRF_FIELD = "csrf_token"

# No inline script or style anywhere: the only stylesheets and script are the portal's own
# files, and the sanitized HTML of a message can therefore not style or script the page
# around it. Frames: only the portal's own sandboxed message-body frame.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# The message body document, shown in a frame of the message page: no script at all, no
# request but its own inline images, the sender's inline style allowed (it was filtered),
# and sandboxed even when opened on its own. allow-same-origin lets the portal's script
# size the frame to its content; without allow-scripts it gives the frame nothing to run.
BODY_CONTENT_SECURITY_POLICY = (
    "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
    "frame-ancestors 'self'; form-action 'none'; base-uri 'none'; "
    "sandbox allow-same-origin allow-popups allow-popups-to-escape-sandbox"
)
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # for browsers that predate frame-ancestors
    "Cross-Origin-Opener-Policy": "same-origin",
}
HSTS = "max-age=31536000"


class CsrfError(Exception):
    """A POST arrived without a valid CSRF token; answered with a 403 'please reload' page."""


def load_secret(directory: Path) -> bytes:
    """The portal's HMAC key from DIRECTORY/portal.secret, created 0600 on first start.

    Written to a temporary file and hard-linked into place, so concurrent first starts
    agree on one secret and no reader ever sees a half-written file.
    """
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / SECRET_FILE
    if not path.exists():
        tmp = directory / f"{SECRET_FILE}.{secrets.token_hex(8)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(secrets.token_bytes(SECRET_SIZE))
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process won the race; use its secret
        finally:
            tmp.unlink(missing_ok=True)
    secret = path.read_bytes()
    if len(secret) < SECRET_SIZE:
        raise RuntimeError(f"{path} is shorter than {SECRET_SIZE} bytes; delete it to regenerate")
    return secret


def derive_key(secret: bytes, purpose: str) -> bytes:
    """One key per purpose, so a value made for one use can never pass as another."""
    return hmac.new(secret, f"sealgate-portal:{purpose}".encode(), hashlib.sha256).digest()


def add_security_headers(headers: MutableHeaders, hsts: bool) -> None:
    # A response that set its own framing policy (the message body frame) keeps it.
    own_policy = "content-security-policy" in headers
    for name, value in SECURITY_HEADERS.items():
        if own_policy and name in ("Content-Security-Policy", "X-Frame-Options"):
            continue
        headers[name] = value
    if hsts:
        headers["Strict-Transport-Security"] = HSTS
    # Pages show confidential mail and per-visitor tokens: never store them in a cache,
    # unless the response chose otherwise (the static stylesheet).
    if "cache-control" not in headers:
        headers["Cache-Control"] = "no-store"


class SecurityHeadersMiddleware:
    """Adds the security headers to every HTTP response, downloads and errors included.

    Pure ASGI rather than BaseHTTPMiddleware: it only rewrites the start message, so
    streaming responses pass through untouched.
    """

    def __init__(self, app: ASGIApp, hsts: bool = False) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                add_security_headers(MutableHeaders(scope=message), self.hsts)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class Csrf:
    """Signed double-submit tokens: a random HttpOnly, SameSite=Strict cookie, and in each
    form the HMAC of that cookie under the server secret.

    A cross-site page can neither read the cookie nor compute the HMAC, and works without
    any server-side state, so anonymous forms (sign in, ask for a code) are covered too.
    """

    def __init__(self, secret: bytes, secure: bool) -> None:
        self.key = derive_key(secret, "csrf")
        self.secure = secure

    def form_token(self, cookie: str) -> str:
        return hmac.new(self.key, cookie.encode(), hashlib.sha256).hexdigest()

    def cookie_for(self, request: Request) -> str:
        """The visitor's CSRF cookie value, minting one (remembered on request.state) if absent."""
        minted: str | None = getattr(request.state, "csrf_new_cookie", None)
        if minted:
            return minted
        current = request.cookies.get(CSRF_COOKIE, "")
        if _plausible(current):
            return current
        request.state.csrf_new_cookie = secrets.token_urlsafe(32)
        return str(request.state.csrf_new_cookie)

    def finish(self, request: Request, response: Response) -> None:
        """Set the cookie on RESPONSE when this request minted one."""
        minted = getattr(request.state, "csrf_new_cookie", None)
        if minted:
            response.set_cookie(CSRF_COOKIE, minted, path="/", secure=self.secure,
                                httponly=True, samesite="strict")

    def check(self, request: Request, submitted: object) -> None:
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if not _plausible(cookie) or not isinstance(submitted, str):
            raise CsrfError("missing CSRF cookie or field")
        if not hmac.compare_digest(self.form_token(cookie), submitted):
            raise CsrfError("CSRF token does not match")


def _plausible(cookie: str) -> bool:
    return 20 <= len(cookie) <= 100 and cookie.isascii()
