"""The web view in a real browser: headless Chromium driven by Selenium through
ChromeDriver (Debian's ``chromium`` and ``chromium-driver`` packages; ``.ci/run``
installs them). Without them these tests are skipped, unless
``PRANA_BROWSER_TESTS=required`` (as in CI), when their absence fails them.

The daemon runs in a thread of its own (an anyio blocking portal, asyncio), so that
the tests can drive the browser synchronously while it answers. Screenshots of each
page go to ``$PRANA_SCREENSHOTS`` (default: a temporary folder).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import pytest

import prana
from prana.server import serve
from tests.server.conftest import serve_config

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev,serve]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            return f"{path} is missing (Debian: apt-get install chromium chromium-driver)"
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    missing = _missing()
    if missing is not None:
        if os.environ.get("PRANA_BROWSER_TESTS") == "required":
            pytest.fail(f"the browser tests cannot run: {missing}")
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("PRANA_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextmanager
def daemon(
    db: Path,
    workflows: Sequence[prana.Workflow] = (),
    *,
    actions: prana.ActionRegistry | None = None,
    tokens: Sequence[str] = (),
) -> Iterator[str]:
    """A daemon on a loopback port in a thread of its own; its URL."""
    config = serve_config(db, workflows, actions=actions, tokens=tokens)
    with anyio.from_thread.start_blocking_portal("asyncio") as portal:
        stop = portal.call(anyio.Event)
        urls: list[str] = []
        started = portal.call(anyio.Event)

        def ready(url: str) -> None:
            urls.append(url)
            started.set()

        done = portal.start_task_soon(lambda: serve(config, ready=ready, stop=stop))
        portal.call(started.wait)
        try:
            yield urls[0]
        finally:
            portal.call(stop.set)
            done.result(timeout=30)
