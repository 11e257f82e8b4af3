"""A real cluster (server, agents, worker) and headless Chromium driven by selenium."""

import json
import os
import shutil
from pathlib import Path

import pytest
import requests
from selenium.webdriver.common.by import By

from tests.helpers import Cluster, free_port_block, wait_for

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-output" / "screenshots"


def chrome():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    for tool in ("chromium", "chromedriver"):
        if not shutil.which(tool):
            pytest.fail(f"browser tests need Debian's chromium and chromium-driver "
                        f"(apt-get install chromium chromium-driver): no {tool} on PATH")
    options = Options()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1440,900", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--disable-quic", "--disable-extensions"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    # exactly 1440×900 of page, whatever the window decorations take
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 1440, "height": 900, "deviceScaleFactor": 1, "mobile": False})
    driver.implicitly_wait(0)
    return driver


@pytest.fixture(scope="module")
def ui_cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ui")
    c = Cluster(tmp, interval=0.5, timeout=3.0)
    port = free_port_block(1)
    c.web = f"http://127.0.0.1:{port}"
    c.spawn("server", "server", "--port", str(port))
    wait_for(lambda: requests.get(f"{c.web}/healthz", timeout=1).status_code == 200, 30,
             what="server up")
    hot, cool = tmp / "hot.json", tmp / "cool.json"
    base = {"cpu_percent": 12.0, "memory_percent": 30.0, "disk_percent": 40.0, "load_1": 0.3}
    hot.write_text(json.dumps({**base, "cpu_percent": 88.0}))
    cool.write_text(json.dumps(base))  # fixed figures: this machine's own load must not flap
    c.start_agent("web-1", "--metrics-file", str(cool))
    c.start_agent("db-1", "--metrics-file", str(hot))
    c.start_agent("cache-1", "--metrics-file", str(cool))
    c.start_worker("web-1", "-c", "2")
    c.wait_workers(1)
    wait_for(lambda: len(c.rpc("node.list")) == 3, 15, what="three nodes")
    wait_for(lambda: any(n["name"] == "db-1" and n["status"] == "warning"  # 3 samples in a row
                         for n in c.rpc("node.list")), 15, what="db-1 warning")
    yield c
    c.stop_all()


@pytest.fixture(scope="module")
def browser():
    driver = chrome()
    yield driver
    driver.quit()


@pytest.fixture(scope="session", autouse=True)
def shots_dir():
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS


def save_shot(driver, name: str) -> Path:
    path = SHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    if os.environ.get("ARCHITECT_UPDATE_SCREENSHOTS"):
        docs = ROOT / "docs" / "screenshots"
        docs.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, docs / path.name)
    return path


def wait_ticks(driver, ticks: int = 2, timeout: float = 15.0) -> None:
    """Wait until the top bar's live clock has moved `ticks` times: the page's interval
    callbacks ran (instead of sleeping and hoping they did)."""
    from selenium.webdriver.common.by import By

    from tests.helpers import wait_for

    def text():
        found = driver.find_elements(By.ID, "live")
        return found[0].text if found else ""
    seen = [text()]

    def moved():
        now = text()
        if now and now != seen[-1]:
            seen.append(now)
        return len(seen) > ticks
    wait_for(moved, timeout, what=f"{ticks} live ticks")


def severe(driver) -> list:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def text_of(driver, css: str) -> str:
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0].text if found else ""


def wait_text(driver, css: str, needle: str, timeout: float = 15):
    return wait_for(lambda: needle in text_of(driver, css), timeout,
                    what=f"{needle!r} in {css}")
