"""The browser tests' own rule: without Chromium they fail, loudly; they never skip."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import browser


def test_missing_chromium_fails_instead_of_skipping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(browser, "CHROMIUM", Path("/nonexistent/chromium"))
    with pytest.raises(pytest.fail.Exception, match="must run, not skip"):
        browser.require_chromium()


def test_chromium_is_installed() -> None:
    assert browser.require_chromium() == "/usr/bin/chromium"
