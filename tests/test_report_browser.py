"""The HTML report opens in headless Chromium and shows its figures (needs Debian's chromium and playwright)."""

import shutil

import pytest

from tests.conftest import REPO  # noqa: F401  (keeps the repo importable as `tests`)

pytestmark = [pytest.mark.workflow, pytest.mark.browser]
CHROMIUM = shutil.which("chromium")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (Debian package 'chromium'; .ci/run installs it)")
def test_report_shows_a_figure_in_headless_chromium(smoke_run, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install playwright)")
    workdir, _ = smoke_run
    report = (workdir / "results/smoke/latest/report.html").resolve()
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(report.as_uri())
        page.get_by_text("Emergence", exact=True).first.click()
        row = page.locator("tr").filter(has_text="exact_match").filter(has_text="train_flops")
        row.first.locator("a, button, svg").first.click()
        figure = page.locator("img").last
        figure.wait_for(state="visible")
        width, height = figure.evaluate("e => [e.naturalWidth, e.naturalHeight]")
        page.screenshot(path=tmp_path / "report.png")
        browser.close()
    assert width > 600 and height > 200  # the decoded grid figure, not an icon
