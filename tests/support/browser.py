"""A real browser for the console's end-to-end tests: Debian's Chromium, headless, driven by Selenium through
Debian's chromedriver (scripts/chromium.sh installs both; nothing is downloaded), and screenshots kept as
test artifacts under test-artifacts/ (or $MLC_TEST_ARTIFACTS)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import ROOT


def browser_paths() -> tuple[str, str]:
    """(chromium, chromedriver); skips the test when they are missing, unless $MLC_REQUIRE_BROWSER is set
    (`make test` sets it after scripts/chromium.sh installed them: there a missing browser fails)."""
    chromium = os.environ.get("MLC_CHROMIUM") or shutil.which("chromium") or ""
    driver = os.environ.get("MLC_CHROMEDRIVER") or shutil.which("chromedriver") or ""
    if not (chromium and driver):
        if os.environ.get("MLC_REQUIRE_BROWSER"):
            raise AssertionError("Chromium or chromedriver is missing: run scripts/chromium.sh")
        pytest.skip("Chromium is not installed (scripts/chromium.sh installs it; `make test` does)")
    return chromium, driver


@contextmanager
def chromium_driver(download_dir: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = browser_paths()
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1366,900", "--no-first-run", "--disable-extensions"):
        opts.add_argument(arg)
    opts.add_experimental_option("prefs", {"download.default_directory": str(download_dir)})
    drv = webdriver.Chrome(options=opts, service=Service(executable_path=driver))
    drv.set_page_load_timeout(60)
    try:
        yield drv
    finally:
        drv.quit()


class Screenshots:
    """Numbered screenshots of one test, in test-artifacts/<test name>/ (kept after the run)."""

    def __init__(self, name: str) -> None:
        base = Path(os.environ.get("MLC_TEST_ARTIFACTS") or ROOT / "test-artifacts")
        self.dir = base / name
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.n = 0

    def take(self, driver: Any, what: str) -> Path:
        self.n += 1
        path = self.dir / f"{self.n:02d}-{what}.png"
        assert driver.save_screenshot(str(path)), path
        return path



def sync_via_api(base: str, flow: str, timeout: float = 120.0) -> None:
    """Start a sync of every stream of `flow` through the control plane's JSON API (loopback: no token) and
    wait until its runs have ended."""
    import httpx

    from tests.support.waiting import wait_until

    run_ids = httpx.post(f"{base}/api/flows/{flow}/sync", json={}, timeout=30).json()["run_ids"]

    def ended() -> bool:
        for run_id in run_ids:
            resp = httpx.get(f"{base}/api/runs/{run_id}", timeout=10)
            if resp.status_code != 200 or resp.json()["status"] == "running":
                return False  # not recorded yet (queued), or still going
        return True

    wait_until(ended, timeout=timeout, interval=0.3, what=f"the runs of {flow}")
