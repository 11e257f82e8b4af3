"""Tier 5: the Workflow page in headless Chromium: a chord's DAG coloured by state, a click
on a task shows its details, a failed chain shows its dependent cancelled, the tasks page
links there; and the messages for a lone task and an unknown one."""

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from architect.ui.data import COLORS
from tests.browser.conftest import save_shot, severe, text_of, wait_text, wait_ticks
from tests.helpers import wait_for

pytestmark = pytest.mark.slow
FN = "architect.agent.builtin_tasks:"
GRAPH = ("const el = document.getElementById('wf-graph');"
         "if (!el || !el._cyreg) return null; const cy = el._cyreg.cy;"
         "return {nodes: cy.nodes().map(n => [n.id(), n.data('status'), n.data('color'),"
         "                                    n.data('label'), n.position('x')]),"
         "        edges: cy.edges().map(e => [e.source().id(), e.target().id()])};")


def py(function: str, *args) -> dict:
    return {"task_type": "python", "payload": {"function": FN + function, "args": list(args)}}


def graph_with(driver, nodes: int, edges: int, final: bool = True, timeout: float = 20):
    """The drawn graph once it has `nodes` nodes and `edges` edges (all final, if asked)."""
    def ready():
        g = driver.execute_script(GRAPH)
        return (g and len(g["nodes"]) == nodes and len(g["edges"]) == edges and
                (not final or all(n[1] in ("succeeded", "failed", "cancelled")
                                  for n in g["nodes"])) and g)
    return wait_for(ready, timeout, what=f"a graph of {nodes} nodes and {edges} edges")


def tap(driver, task_id: int) -> None:
    driver.execute_script("document.getElementById('wf-graph')._cyreg.cy"
                          f".getElementById('{task_id}').emit('tap');")


def type_id(driver, task_id) -> None:
    box = driver.find_element(By.ID, "wf-id")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.BACKSPACE, str(task_id), Keys.ENTER)


def chord(cluster) -> tuple[list, int]:
    group = [t["id"] for t in cluster.rpc("task.submit_many",
                                          {"tasks": [py("add", i, 0) for i in range(3)]})]
    callback = cluster.rpc("task.submit", {**py("total"), "depends_on": group,
                                           "pass_results": True})["id"]
    return group, callback


@pytest.fixture(scope="module")
def workflow(ui_cluster):
    group, callback = chord(ui_cluster)
    done = ui_cluster.wait_task(callback, 30)
    assert done["status"] == "succeeded" and done["result"]["result"] == 0 + 1 + 2, done
    return group, callback


def test_a_chord_is_drawn_left_to_right_in_its_states_and_a_click_shows_a_task(
        ui_cluster, browser, workflow):
    group, callback = workflow
    browser.get(f"{ui_cluster.web}/workflow?id={callback}")
    g = graph_with(browser, 4, 3)
    nodes = {n[0]: n for n in g["nodes"]}
    assert set(nodes) == {str(i) for i in group + [callback]}
    assert all(n[1] == "succeeded" and n[2] == COLORS["succeeded"] for n in nodes.values())
    assert nodes[str(callback)][3] == f"#{callback} builtin_tasks:total\nsucceeded"
    assert sorted(g["edges"]) == sorted([str(i), str(callback)] for i in group)
    # laid out (a moment after the elements arrive) left to right: the callback is right
    # of every task it waits for
    def right_of_its_group():
        x = {n[0]: n[4] for n in browser.execute_script(GRAPH)["nodes"]}
        return all(x[str(callback)] > x[str(i)] + 50 for i in group)
    wait_for(right_of_its_group, 10, what="the callback right of its group")
    assert browser.find_element(By.ID, "wf-id").get_attribute("value") == str(callback)
    wait_text(browser, "#wf-msg", f"task {callback}'s workflow: 4 tasks, 3 dependencies")
    assert "succeeded 4" in text_of(browser, "#wf-msg")
    assert "Workflow" in text_of(browser, "#nav")

    tap(browser, callback)
    wait_text(browser, "#wf-details", f"#{callback}")
    details = text_of(browser, "#wf-details")
    assert "succeeded" in details and f"python: {FN}total" in details
    assert "node web-1, attempt 1" in details
    assert "depends on " + ", ".join(f"#{i}" for i in group) in details
    assert details.splitlines()[-1] == "3"              # the result: 0 + 1 + 2
    tap(browser, group[2])
    wait_text(browser, "#wf-details", f"#{group[2]}")
    assert text_of(browser, "#wf-details").splitlines()[-1] == "2"
    wait_ticks(browser, 2)   # refreshed on the tick: the details and the graph stay
    assert f"#{group[2]}" in text_of(browser, "#wf-details")
    assert len(browser.execute_script(GRAPH)["nodes"]) == 4
    save_shot(browser, "workflow")

    # a group member's id shows the same workflow
    type_id(browser, group[0])
    wait_text(browser, "#wf-msg", f"task {group[0]}'s workflow: 4 tasks")
    graph_with(browser, 4, 3)
    assert severe(browser) == []


def test_a_failed_chain_shows_its_dependent_cancelled(ui_cluster, browser):
    first = ui_cluster.rpc("task.submit", py("fail", "broken on purpose"))["id"]
    then = ui_cluster.rpc("task.submit", {**py("add", 1, 2), "depends_on": [first],
                                          "pass_results": True})["id"]
    assert ui_cluster.wait_task(then, 30)["status"] == "cancelled"
    browser.get(f"{ui_cluster.web}/workflow?id={first}")
    g = graph_with(browser, 2, 1)
    nodes = {n[0]: n for n in g["nodes"]}
    assert nodes[str(first)][1:3] == ["failed", COLORS["failed"]]
    assert nodes[str(then)][1:3] == ["cancelled", COLORS["cancelled"]]
    assert g["edges"] == [[str(first), str(then)]]
    wait_text(browser, "#wf-msg", "cancelled 1")
    assert "failed 1" in text_of(browser, "#wf-msg")
    tap(browser, then)
    wait_text(browser, "#wf-details", f"#{then}")
    assert "cancelled" in text_of(browser, "#wf-details")
    assert f"dependency {first} failed" in text_of(browser, "#wf-details .error")
    tap(browser, first)
    wait_text(browser, "#wf-details", "broken on purpose")
    save_shot(browser, "workflow-failed")
    assert severe(browser) == []


def test_a_lone_task_and_an_unknown_one_say_so(ui_cluster, browser):
    lone = ui_cluster.submit(payload={"command": "echo alone"})
    browser.get(f"{ui_cluster.web}/workflow")
    wait_text(browser, "#wf-msg", "Enter a task id")
    type_id(browser, lone)
    wait_text(browser, "#wf-msg", f"task {lone} is not part of a workflow")
    assert browser.execute_script(GRAPH)["nodes"] == []
    assert "Click a task" in text_of(browser, "#wf-details")
    browser.get(f"{ui_cluster.web}/workflow?id=987654")
    wait_text(browser, "#wf-msg", "no task 987654")
    assert browser.find_elements(By.CSS_SELECTOR, "#wf-msg.error")
    assert severe(browser) == []


def select_task(driver, task_id: int) -> None:
    def row():
        for tr in driver.find_elements(By.CSS_SELECTOR, "#tasks-table tr"):
            if tr.text.split()[:1] == [str(task_id)]:
                return tr
    wait_for(row, 15, what=f"task {task_id} in the table").find_element(
        By.CSS_SELECTOR, "input[type=radio]").click()
    wait_text(driver, "#task-details", f"#{task_id}")


def test_the_tasks_page_links_a_workflow_task_to_its_graph(ui_cluster, browser, workflow):
    group, callback = workflow
    lone = ui_cluster.submit(payload={"command": "echo not-in-a-workflow"})
    ui_cluster.wait_task(lone)
    browser.get(f"{ui_cluster.web}/tasks")
    select_task(browser, lone)
    wait_ticks(browser, 1)
    assert not browser.find_elements(By.CSS_SELECTOR, "#task-details a.workflow-link")
    # a member of the group has no depends_on of its own, but a task depends on it
    select_task(browser, group[1])
    link = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR,
                                                  "#task-details a.workflow-link"), 10,
                    what="the workflow link")[0]
    assert link.text == "workflow view"
    assert link.get_attribute("href").endswith(f"/workflow?id={group[1]}")
    link.click()
    wait_for(lambda: browser.current_url.endswith(f"/workflow?id={group[1]}"), 10,
             what="the workflow page")
    graph_with(browser, 4, 3)
    wait_text(browser, "#wf-msg", f"task {group[1]}'s workflow: 4 tasks, 3 dependencies")
    assert severe(browser) == []
