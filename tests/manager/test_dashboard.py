"""The dashboard as a person sees it: Debian's headless Chromium (driven by Playwright) on a real manager with a
real one-node lab; the test pushes a policy through the page's buttons, sees the node's version change and new
events appear, rolls back, and saves screenshots (``CHOKEPOINT_SCREENSHOTS`` or the test's temporary folder)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from chokepoint import lab
from chokepoint.lab import system
from tests.manager.conftest import POLICY, start_manager

#: It runs a lab: on the xdist worker of the other namespace tests (tests/conftest.py), one after another.
pytestmark = pytest.mark.xdist_group("netns")

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        _skip_or_fail("Debian's chromium is not installed (scripts/install-system-deps.sh)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _skip_or_fail("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def screenshots(tmp_path: Path) -> Path:
    where = Path(os.environ.get("CHOKEPOINT_SCREENSHOTS") or tmp_path / "screenshots")
    where.mkdir(parents=True, exist_ok=True)
    return where


def test_the_dashboard_pushes_through_its_buttons_and_shows_versions_and_events(tmp_path, browser):
    if os.geteuid() != 0 or shutil.which("curl") is None:
        pytest.skip("the dashboard test runs a real lab node: root and curl")
    from tests.lab._e2e import all_left_behind, session
    from tests.lab._lab import foreign

    shots = screenshots(tmp_path)
    manager = start_manager(f"sqlite:///{tmp_path / 'm.db'}", tmp_path / "manager.log")
    profile = tmp_path / "dash.yaml"
    profile.write_text(POLICY)
    try:
        with session():
            try:
                state = lab.up(str(profile), "inline", manager=manager.url, manager_token=manager.admin)
                client_ns = state.namespace("client")

                def curl(name: str) -> int:
                    argv = ["curl", "-s", "-o", "/dev/null", "--max-time", "2", f"https://{name}/"]
                    return system.run(argv, netns=client_ns, check=False, timeout=10).returncode

                page = browser.new_page(viewport={"width": 1400, "height": 1700})
                page.goto(manager.url + "/")
                page.fill("#token", manager.admin)
                page.click("#save-token")
                page.wait_for_selector("#nodes tbody tr[data-node=node1][data-health=in-sync][data-policy='1']")
                assert curl("page.test") == 0
                for _ in range(3):
                    curl("blocked.test")  # events of v1's rule
                page.wait_for_selector("#events tbody tr[data-rule=block-sni]", timeout=15000)
                page.screenshot(path=str(shots / "dashboard-v1.png"), full_page=True)

                # edit the policy in the page and push it with the button
                text = page.input_value("#policy-text")
                assert "blocked.test" in text
                page.fill("#policy-text", text.replace("[blocked.test]", "[blocked.test, page.test]"))
                page.fill("#push-message", "block page.test from the dashboard")
                page.click("#push")
                page.wait_for_selector("#push-result.ok")
                page.wait_for_selector("#nodes tbody tr[data-node=node1][data-health=in-sync][data-policy='2']")
                assert curl("page.test") != 0
                page.wait_for_function(
                    "() => [...document.querySelectorAll('#events tbody tr')].some(r => r.textContent.includes('page.test'))",
                    timeout=15000,
                )
                page.click("#history tbody tr[data-version='2'] button:first-child")
                page.wait_for_selector("#diff span.add")
                assert "page.test" in page.inner_text("#diff")
                time.sleep(1.5)  # one more rate sample on the chart
                page.screenshot(path=str(shots / "dashboard-pushed.png"), full_page=True)

                # roll back to v1 with the button
                page.click("#history tbody tr[data-version='1'] button.rollback")
                page.wait_for_selector("#nodes tbody tr[data-node=node1][data-health=in-sync][data-policy='3']")
                assert curl("page.test") == 0
                page.screenshot(path=str(shots / "dashboard-rolled-back.png"), full_page=True)

                # a refused push shows the loader's position
                page.fill("#policy-text", page.input_value("#policy-text").replace("action: drop", "action: dropp"))
                page.click("#push")
                page.wait_for_selector("#push-result.error")
                assert "policy.yaml:" in page.inner_text("#push-result") and "dropp" in page.inner_text("#push-result")
                page.screenshot(path=str(shots / "dashboard-refused.png"), full_page=True)
            finally:
                report = lab.down(keep=foreign())
                assert not report.errors, report.errors
                left = all_left_behind()
                assert not any(left.values()), left
    finally:
        manager.stop()
