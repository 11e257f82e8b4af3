"""The dashboard under its Content-Security-Policy (architect/api/guard.py): no page trips it.

A console check alone is not enough: an `eval` that a library tries inside try/catch is
blocked without a console error. So every violation is collected from the page itself
(`securitypolicyviolation` events, listened to before any script of the page runs)."""


import pytest
import requests
from selenium.webdriver.common.by import By

from tests.browser.conftest import wait_ticks
from tests.helpers import wait_for

pytestmark = pytest.mark.slow
PAGES = ("/", "/topology", "/flow", "/health", "/nodes", "/alerts", "/tasks", "/schedules", "/workflow", "/queues", "/notifications", "/ssh")
LISTEN = ("window.__csp = []; document.addEventListener('securitypolicyviolation', e => "
          "window.__csp.push([e.violatedDirective, e.blockedURI, e.sourceFile, e.lineNumber]));")


def test_no_page_violates_the_csp(ui_cluster, browser):
    csp = requests.get(ui_cluster.web + "/", timeout=10).headers["Content-Security-Policy"]
    assert "'unsafe-eval'" not in csp and "frame-ancestors 'none'" in csp, csp
    ui_cluster.submit(payload={"command": "echo csp"})
    script = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": LISTEN})
    try:
        for path in PAGES:
            browser.get(ui_cluster.web + path)
            wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#page > *"), 15,
                     what=f"{path} rendered")
            wait_ticks(browser)  # graphs drawn, intervals run
            assert browser.execute_script("return window.__csp") == [], path
            severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
            assert severe == [], (path, severe)
    finally:
        browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument",
                                {"identifier": script["identifier"]})
