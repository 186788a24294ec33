"""Files shipped with the package: templates, portal static files, the default policy and
the example config. They are installed as package data (see pyproject.toml) and found
through the installed packages, so a wheel works from any directory, not only a checkout."""

from __future__ import annotations

import importlib
from pathlib import Path


def package_directory(package: str) -> Path:
    """The directory an installed data package lives in (its top-level folder in a checkout)."""
    module = importlib.import_module(package)
    if module.__file__ is None:
        raise RuntimeError(f"package data {package!r} is not installed as a directory")
    return Path(module.__file__).resolve().parent


TEMPLATES_DIR = package_directory("sealgate_templates")
PORTAL_TEMPLATES_DIR = TEMPLATES_DIR / "portal"
STATIC_DIR = PORTAL_TEMPLATES_DIR / "static"
DEFAULT_POLICY_DIR = package_directory("sealgate_policies")
EXAMPLE_CONFIG = package_directory("sealgate_conf") / "sealgate.toml"
