"""Tier 5: the UI shows each web role only what it may do (the broker refuses the rest)."""

import base64

import pytest
import requests
from selenium.webdriver.common.by import By

from tests.browser.conftest import chrome, save_shot, wait_ticks
from tests.helpers import Cluster, free_port_block, wait_for

pytestmark = pytest.mark.slow
ADMIN = ("admin", "admin-pass-1")
VIEWER = ("vic", "viewer-pass-1")


@pytest.fixture(scope="module")
def auth_cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ui-roles")
    c = Cluster(tmp, interval=0.5, timeout=3.0)
    c.env.update({"ARCHITECT_USER": ADMIN[0], "ARCHITECT_PASSWORD": ADMIN[1]})
    port = free_port_block(1)
    c.web = f"http://127.0.0.1:{port}"
    c.spawn("server", "server", "--port", str(port))
    wait_for(lambda: requests.get(f"{c.web}/healthz", timeout=1).status_code == 200, 30,
             what="server up")
    answer = requests.post(f"{c.web}/api/users", auth=ADMIN, timeout=10,
                           json={"name": VIEWER[0], "role": "viewer", "password": VIEWER[1]})
    assert answer.status_code == 201, answer.text
    yield c
    c.stop_all()


def as_user(driver, login):
    """Every request the browser makes carries this user's Basic login (CDP)."""
    token = base64.b64encode(f"{login[0]}:{login[1]}".encode()).decode()
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders",
                           {"headers": {"Authorization": f"Basic {token}"}})


def shown(driver, css: str) -> bool:
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return bool(found) and found[0].is_displayed()


def severe(driver) -> list:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def open_page(driver, url: str) -> None:
    driver.get(url)
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#page > *"), 15, what=f"{url}")
    wait_ticks(driver, 1)


def test_a_viewer_sees_no_controls_and_an_admin_does(auth_cluster):
    driver = chrome()
    try:
        as_user(driver, VIEWER)
        open_page(driver, auth_cluster.web + "/tasks")
        wait_for(lambda: "vic · viewer" in driver.find_element(By.ID, "whoami").text, 10,
                 what="whoami shows the viewer")
        assert not shown(driver, "#task-submit") and not shown(driver, "#task-cancel")
        nav = driver.find_element(By.ID, "nav").text
        assert "Tasks" in nav and "SSH" not in nav and "Audit" not in nav
        save_shot(driver, "viewer-tasks")
        open_page(driver, auth_cluster.web + "/nodes")
        assert not shown(driver, "#nodes-drain") and not shown(driver, "#nodes-remove")
        open_page(driver, auth_cluster.web + "/ssh")
        assert shown(driver, "#ssh-forbidden") and not driver.find_elements(By.ID, "ssh-run")
        assert severe(driver) == []

        as_user(driver, ADMIN)
        open_page(driver, auth_cluster.web + "/tasks")
        wait_for(lambda: shown(driver, "#task-submit"), 10, what="the admin's submit form")
        open_page(driver, auth_cluster.web + "/nodes")
        assert shown(driver, "#nodes-drain") and shown(driver, "#nodes-remove")
        open_page(driver, auth_cluster.web + "/audit")
        wait_for(lambda: "users.add" in driver.find_element(By.ID, "audit-table").text, 15,
                 what="the users.add audit row in the UI table")
        assert "SSH" in driver.find_element(By.ID, "nav").text
        save_shot(driver, "audit")
        assert severe(driver) == []
    finally:
        driver.quit()
