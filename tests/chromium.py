"""Debian's Chromium for the browser tests, driven by Playwright (conftest's `browser`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Playwright's own bound for every wait and action, in ms.
BROWSER_TIMEOUT = 20_000

needs_browser = pytest.mark.skipif(
    not Path(CHROMIUM).exists() and not os.environ.get("CI"),
    reason="no /usr/bin/chromium (browser tests must run when CI is set)",
)
