"""Driving Debian's headless Chromium from a test: the ``browser`` fixture and the marks a
module of such tests carries (``pytestmark = BROWSER_TESTS``)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

NEEDS_CHROMIUM = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="needs Debian's chromium and chromium-driver at /usr/bin (apt-get install chromium chromium-driver)",
)
# A live_server is served from another thread, which sees only committed rows.
BROWSER_TESTS = [pytest.mark.browser, pytest.mark.django_db(transaction=True), NEEDS_CHROMIUM]


@pytest.fixture
def browser() -> Iterator[Callable[[], object]]:
    """``browser()`` starts one isolated headless Chromium; all are quit at the end."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    drivers, profiles = [], []

    def start():
        profile = tempfile.mkdtemp(prefix="mcpnest-chromium-")
        profiles.append(profile)
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for arg in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1280,1600",
            f"--user-data-dir={profile}",
        ):
            options.add_argument(arg)
        driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
        driver.set_page_load_timeout(30)
        drivers.append(driver)
        return driver

    yield start
    for driver in drivers:
        driver.quit()
    for profile in profiles:
        shutil.rmtree(profile, ignore_errors=True)
