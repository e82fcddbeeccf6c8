"""A real headless browser for the report tests: Debian's ``chromium`` driven by Playwright.

Playwright's own browser download cannot run here (no network at test time), so it drives the
system's Chromium (``.ci/run`` installs Debian's package). The flags are the ones a closed network
needs: no background networking, component updates or sync, which would try to reach Google and
log errors at every start; ``--no-sandbox`` because CI runs as root.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_or_skip() -> str:
    """The system Chromium's path, or a skip saying why there is none."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]' installs it)")
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no Chromium on this machine: install Debian's `chromium` package (apt-get install chromium; "
                ".ci/run does) to open the report in a real browser")


@dataclass
class PageLog:
    """What the page said and asked for while it was open."""

    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


@contextmanager
def open_page(html: Path, width: int = 1200) -> Iterator[tuple[Any, PageLog]]:
    """``html`` opened from disk in headless Chromium: ``(page, log)``; console errors, uncaught
    exceptions and every request the page makes are logged."""
    from playwright.sync_api import sync_playwright

    executable = chromium_or_skip()
    log = PageLog()
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.on("console",
                    lambda m: log.errors.append(f"console: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: log.errors.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: log.errors.append(f"request failed: {r.url}"))
            page.on("request", lambda r: log.requests.append(r.url))
            page.goto(html.resolve().as_uri(), wait_until="load")
            yield page, log
        finally:
            browser.close()
