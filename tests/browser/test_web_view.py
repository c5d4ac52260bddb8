"""What a user does in the web view, in headless Chromium: sign in and see the runs,
start a run from the form and watch its node turn from running to completed without
reloading, answer a waiting node from its drawer, cancel a run, page through 10 000
runs. Each page's screenshot is saved (see conftest)."""

from __future__ import annotations

import json
import threading
import urllib.request
from pathlib import Path
from typing import Any

import anyio
import pytest

import prana
from tests.browser.conftest import daemon

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TIMEOUT = 15.0  # seconds the browser may take to show what a step expects

pytestmark = pytest.mark.browser


def wait_for(driver: Any, condition: Any, what: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, TIMEOUT, poll_frequency=0.05).until(condition, what)


def css(driver: Any, selector: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector)


def css_all(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def node_state(driver: Any, key: str) -> str | None:
    """A node's state as the page shows it now (read in one step: the live part of
    the page is swapped as the run moves)."""
    return driver.execute_script(  # type: ignore[no-any-return]
        "const g = document.querySelector(`g.node[data-key='${arguments[0]}']`);"
        "return g && g.dataset.state",
        key,
    )


def text(driver: Any, selector: str) -> str:
    """The text of the element ``selector`` finds now ('' if none), in one step."""
    return str(
        driver.execute_script(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : ''",
            selector,
        )
    )


def click(driver: Any, selector: str) -> None:
    """Click what ``selector`` finds, again if the live part was swapped meanwhile."""
    from selenium.common.exceptions import StaleElementReferenceException

    for _ in range(10):
        try:
            css(driver, selector).click()
        except StaleElementReferenceException:
            continue
        return
    raise AssertionError(f"{selector} kept being replaced")


def _first_run(driver: Any) -> str | None:
    return driver.execute_script(  # type: ignore[no-any-return]
        "const a = document.querySelector('table.runs tbody td:first-child a');"
        "return a && a.textContent"
    )


def approval() -> prana.Workflow:
    return prana.load_workflow(EXAMPLES / "approval.yaml")


def start_approval(url: str, amount: int, token: str | None = None) -> dict[str, Any]:
    """An approval of ``amount``, started through the API; the execution once it
    stops (completed, or waiting above the limit)."""
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    sent = urllib.request.Request(
        f"{url}/api/workflows/approval/executions?wait=10",
        data=json.dumps({"amount": amount}).encode(),
        method="POST",
        headers=headers,
    )
    with urllib.request.urlopen(sent) as reply:
        return dict(json.load(reply))


def start_waiting(url: str) -> str:
    """An approval of 4 000, started through the API; its id once it waits."""
    execution = start_approval(url, 4000)
    assert execution["status"] == "suspended"
    return str(execution["id"])


def test_sign_in_with_a_token_and_see_the_runs(
    browser: Any, tmp_path: Path, screenshots: Path
) -> None:
    with daemon(tmp_path / "d.db", [approval()], tokens=["open-sesame"]) as url:
        for amount in (40, 4000):
            start_approval(url, amount, token="open-sesame")
        browser.delete_all_cookies()
        browser.get(f"{url}/ui")
        wait_for(browser, lambda d: "/ui/login" in d.current_url, "the sign-in page")
        css(browser, "#token").send_keys("wrong")
        css(browser, "form button").click()
        wait_for(browser, lambda d: "not one of this daemon" in d.page_source, "the refusal")
        css(browser, "#token").send_keys("open-sesame")
        css(browser, "form button").click()
        wait_for(browser, lambda d: d.current_url.endswith("/ui/runs"), "the runs page")
        rows = css_all(browser, "table.runs tbody tr")
        badges = sorted(row.find_elements("css selector", ".badge")[0].text for row in rows)
        browser.save_screenshot(str(screenshots / "runs.png"))
    assert badges == ["\u2016 suspended", "✓ completed"]


def test_start_a_run_from_the_form_and_watch_its_node_complete_live(
    browser: Any, tmp_path: Path, screenshots: Path
) -> None:
    released = threading.Event()
    actions = prana.ActionRegistry()

    @actions.action("test.gate")
    async def gate(ctx: Any) -> Any:
        await anyio.to_thread.run_sync(released.wait)  # the test opens it
        return {"opened": True}

    gated = prana.load_workflow(
        {
            "id": "gated",
            "nodes": [
                {"key": "start", "type": "manual.trigger"},
                {"key": "gate", "type": "test.gate"},
                {"key": "after", "type": "core.noop"},
            ],
            "connections": [{"from": "start", "to": "gate"}, {"from": "gate", "to": "after"}],
        },
        actions=actions,
    )
    with daemon(tmp_path / "d.db", [gated], actions=actions) as url:
        try:
            see_it_run(browser, url, released, screenshots)
        finally:
            released.set()  # the daemon can stop, whatever happened


def see_it_run(browser: Any, url: str, released: threading.Event, screenshots: Path) -> None:
    """Start the gated run from its form, see its gate run, open it, see it complete."""
    browser.get(f"{url}/ui/workflows/gated")
    field = css(browser, "#input")
    field.clear()
    field.send_keys("{not json")
    css(browser, "form.start button").click()
    trouble = css(browser, "form.start .json-trouble")
    wait_for(browser, lambda d: trouble.is_displayed(), "the JSON error")
    assert "This is not JSON" in trouble.text
    assert browser.current_url.endswith("/ui/workflows/gated")  # nothing was sent
    browser.save_screenshot(str(screenshots / "workflow.png"))
    field.clear()
    field.send_keys('{"order": 7}')
    css(browser, "form.start button").click()
    wait_for(browser, lambda d: "/ui/runs/" in d.current_url, "the run's page")
    wait_for(browser, lambda d: node_state(d, "gate") == "running", "the node running")
    browser.execute_script("window.notReloaded = true")
    browser.save_screenshot(str(screenshots / "run-running.png"))
    released.set()
    wait_for(browser, lambda d: node_state(d, "after") == "completed", "the run's end")
    assert node_state(browser, "gate") == "completed"
    assert browser.execute_script("return window.notReloaded") is True
    wait_for(browser, lambda d: "✓ completed" in text(d, ".summary"), "its status")
    browser.save_screenshot(str(screenshots / "run-completed.png"))


def test_answer_a_waiting_node_from_its_drawer(
    browser: Any, tmp_path: Path, screenshots: Path
) -> None:
    with daemon(tmp_path / "d.db", [approval()]) as url:
        execution_id = start_waiting(url)
        browser.get(f"{url}/ui/runs/{execution_id}")
        assert node_state(browser, "approval") == "waiting"
        click(browser, 'g.node[data-key="approval"] rect')
        wait_for(browser, lambda d: css_all(d, "#drawer form.answer"), "the drawer")
        assert "Pay 4000? (limit 1000)" in text(browser, "#drawer")
        answer = css(browser, "#drawer textarea")
        answer.clear()
        answer.send_keys('{"approved": true, "by": "ann"}')
        browser.save_screenshot(str(screenshots / "drawer.png"))
        css(browser, "#drawer form.answer button").click()
        wait_for(browser, lambda d: node_state(d, "pay") == "completed", "the payment")
        assert "answered" in text(browser, ".said")
        assert "✓ completed" in text(browser, ".summary")


def test_cancel_a_run(browser: Any, tmp_path: Path) -> None:
    with daemon(tmp_path / "d.db", [approval()]) as url:
        execution_id = start_waiting(url)
        browser.get(f"{url}/ui/runs/{execution_id}")
        click(browser, f'form[action="/ui/runs/{execution_id}/cancel"] button')
        wait_for(browser, lambda d: "cancelled" in text(d, ".summary"), "the cancel")
        assert node_state(browser, "approval") == "cancelled"


def test_page_through_ten_thousand_runs(browser: Any, tmp_path: Path, screenshots: Path) -> None:
    db = tmp_path / "d.db"
    one = prana.load_workflow(
        {"id": "one", "nodes": [{"key": "start", "type": "manual.trigger"}], "connections": []}
    )

    async def fill() -> None:
        async with prana.Engine(store=f"sqlite:///{db}", durability="off") as engine:
            for n in range(10_000):
                await engine.start(one, n)
            await engine.wait_idle()

    anyio.run(fill)
    with daemon(db, [one]) as url:
        browser.get(f"{url}/ui/runs?workflow=one&size=200")
        seen: set[str] = set()
        pages = 0
        while True:
            pages += 1
            ids = browser.execute_script(
                "return [...document.querySelectorAll('table.runs tbody td:first-child a')]"
                ".map(a => a.textContent)"
            )
            seen.update(ids)
            if pages == 2:
                browser.save_screenshot(str(screenshots / "runs-paged.png"))
            following = css_all(browser, 'a[rel="next"]')
            if not following:
                break
            following[0].click()
            first = ids[0]
            wait_for(browser, lambda d, first=first: _first_run(d) != first, "the next page")
    assert pages == 50
    assert len(seen) == 10_000
