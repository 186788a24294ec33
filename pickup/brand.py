"""The organization's look: logo and accent colour from the config.

Both are served as files of their own (/brand/logo, /brand.css), because the portal's
Content-Security-Policy allows no inline style.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.config import ConfigError, PickupConfig

LOGO_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
              ".gif": "image/gif", ".webp": "image/webp", ".svg": "image/svg+xml"}
LOGO_MAX_BYTES = 1_000_000


class BrandError(ConfigError):
    """The configured logo cannot be used; raised at start-up, naming the key, like any
    other config error."""


@dataclass(frozen=True)
class Logo:
    data: bytes
    content_type: str


@dataclass(frozen=True)
class Brand:
    organization: str
    color: str
    logo: Logo | None

    @property
    def css(self) -> str:
        dark = shade(self.color, 0.7)
        # The text colour with the better contrast (WCAG): white up to luminance 0.179.
        text = "#ffffff" if luminance(self.color) <= 0.179 else "#111111"
        return (f":root {{ --accent: {self.color}; --accent-dark: {dark}; "
                f"--on-accent: {text}; }}\n")


def load_brand(config: PickupConfig) -> Brand:
    return Brand(config.organization, config.brand_color.lower(), _load_logo(config.logo_file))


def _load_logo(path: str) -> Logo | None:
    if not path:
        return None
    file = Path(path)
    content_type = LOGO_TYPES.get(file.suffix.lower())
    if content_type is None:
        raise BrandError(f"pickup.logo_file: {path} must be one of {', '.join(LOGO_TYPES)}")
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise BrandError(f"pickup.logo_file: cannot read {path}: {exc.strerror}") from None
    if len(data) > LOGO_MAX_BYTES:
        raise BrandError(f"pickup.logo_file: {path} is larger than {LOGO_MAX_BYTES} bytes")
    return Logo(data, content_type)


def _rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def shade(color: str, factor: float) -> str:
    """COLOR darkened towards black (hover and focus states)."""
    return "#" + "".join(f"{int(c * factor):02x}" for c in _rgb(color))


def luminance(color: str) -> float:
    """WCAG relative luminance, 0 (black) to 1 (white): picks readable button text."""
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in _rgb(color))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b
