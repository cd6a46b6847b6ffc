"""Parallel cells in the browser: a ``parallel.map``'s progress bar advances live on the page
of whoever runs it and of a viewer watching, and its "Dask dashboard" link opens the session's
dashboard (through the web service) for the owner, and for nobody without access."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from .helpers import RUN_TIMEOUT, Person, cell, run

TASKS = 40
MAP = f"""import time
from cellbus import parallel
def slow(i):
    time.sleep(0.15)
    return i
print(sum(parallel.map(slow, range({TASKS}))))"""
"""40 tasks of 0.15 s: a few seconds on two Dask workers, updated every 0.2 s."""

WATCH_BARS = """() => {
  window.seenProgress = [];
  const look = () => {
    for (const bar of document.querySelectorAll('[data-testid="parallel-bar"]')) {
      const now = bar.getAttribute('aria-valuenow');
      if (window.seenProgress.at(-1) !== now) window.seenProgress.push(now);
    }
  };
  new MutationObserver(look).observe(document.body, {
    subtree: true, childList: true, attributes: true, attributeFilter: ['aria-valuenow'],
  });
}"""
"""Record every value a parallel bar on the page takes, as the DOM changes (no polling)."""


def seen(page: Page) -> list[int]:
    values: list[str] = page.evaluate("window.seenProgress")
    return [int(v) for v in values]


def test_a_parallel_map_shows_live_progress_to_everyone_and_links_its_dashboard(
    person: Callable[..., Person], screenshots: Path
) -> None:
    ada, bob, mallory = person("ada"), person("bob", web=1), person("mallory")
    sheet = ada.api.worksheet(MAP)
    try:
        ada.api.call("worksheet.share", id=sheet["id"], username=bob.username, role="viewer")
        mine, theirs = ada.open(sheet), bob.open(sheet)
        for page in (mine, theirs):
            page.evaluate(WATCH_BARS)

        run(cell(mine, 0))  # waits for the whole map
        summary = f"parallel.map: {TASKS}/{TASKS} tasks on "
        for page in (mine, theirs):
            output = cell(page, 0)
            bar = output.get_by_test_id("parallel-bar")
            expect(bar).to_have_attribute("aria-valuenow", str(TASKS), timeout=RUN_TIMEOUT)
            expect(bar).to_have_attribute("aria-valuemax", str(TASKS))
            expect(output.get_by_test_id("parallel-summary")).to_contain_text(summary)
            expect(output.get_by_test_id("parallel-state")).to_have_text("done")
            expect(output.get_by_test_id("output-stdout")).to_have_text(f"{sum(range(TASKS))}\n")
            expect(output.locator(".output-parallel")).to_have_count(1)  # one bar, updated in place
            values = seen(page)
            assert any(0 < v < TASKS for v in values), values  # it moved while the map ran
            assert values[-1] == TASKS and values == sorted(values), values
        mine.screenshot(path=screenshots / "parallel-progress.png")

        link = cell(mine, 0).get_by_test_id("parallel-dashboard")
        expect(link).to_have_text("Dask dashboard")
        expect(link).to_have_attribute("target", "_blank")
        expect(link).to_have_attribute("rel", "noopener noreferrer")
        href = link.get_attribute("href")
        assert href == f"/parallel/{sheet['session']}/dashboard/info/main/workers.html", href

        with ada.context.expect_page() as opened:
            link.click()
        dashboard = opened.value
        dashboard.wait_for_load_state()
        assert dashboard.url == ada.url + href
        expect(dashboard.get_by_role("heading", name="Workers")).to_be_visible()
        expect(dashboard.locator("table")).to_contain_text("tls://")  # the session's Dask workers
        dashboard.close()

        # Mallory, signed in but with no access to the worksheet, is refused.
        refused = mallory.page.goto(ada.url + href)
        assert refused is not None and refused.status == 404
        expect(mallory.page.locator("body")).to_contain_text("-32004")
        expect(mallory.page.locator("body")).not_to_contain_text("Workers")
    finally:  # its Dask workers hold the kernel worker's cores: give them back
        ada.api.call("session.shutdown", session=sheet["session"])
