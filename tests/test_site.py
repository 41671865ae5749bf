"""Tests of the static site (cmh_bench.site, `cmh-bench report --html`) on the report tests' tiny records.

The browser test opens the rendered site in headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by selenium), clicks a column header and checks the order, switches the
selection rule, checks that no request failed, and saves a screenshot. With
``CMH_BENCH_UPDATE_SCREENSHOT=1`` it also saves a screenshot of the committed leaderboard/site/ to
docs/leaderboard-site.png (for the README).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from cmh_bench.cli import main
from cmh_bench.site import render_with_site

REPO = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
TABLE_PAGE = "tables/quick-mirflickr-pair-swap.html"


def report_fixture():
    """The records writer and published numbers of tests/test_report.py (one fixture for both renderers)."""
    spec = importlib.util.spec_from_file_location("report_fixture", Path(__file__).with_name("test_report.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The fixture's records rendered with the site; returns the site folder."""
    fixture = report_fixture()
    root = tmp_path_factory.mktemp("site")
    fixture.write_fixture(root / "results")
    render_with_site(root / "results", root / "out", reported=fixture.REPORTED)
    return root / "out" / "site"


class Links(HTMLParser):
    """Collects href / src attributes and the text of a page."""

    def __init__(self):
        super().__init__()
        self.links, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.links += [value for name, value in attrs if name in ("href", "src") and value]

    def handle_data(self, data):
        self.text.append(data)


def parsed(path: Path) -> Links:
    links = Links()
    links.feed(path.read_text(encoding="utf-8"))
    return links


def test_site_has_overview_table_and_method_pages(site):
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html"))
    assert pages == ["index.html", "methods/dcmh.html", "methods/floor-constant.html", "methods/label-oracle.html",
                     "methods/nrch.html", "methods/rshnl.html", "methods/scbch-clean.html", "methods/scbch.html",
                     "tables/paper-mirflickr-pair-swap.html", TABLE_PAGE]


def test_every_local_link_and_asset_resolves_and_nothing_is_remote(site):
    for page in site.rglob("*.html"):
        for link in parsed(page).links:
            assert not re.match(r"[a-z]+://|//", link), f"{page.name} links to a remote {link}"
            target = (page.parent / link.split("#")[0]).resolve()
            assert target.exists(), f"{page.relative_to(site)} links to missing {link}"


def test_overview_ranks_by_the_robustness_summary(site):
    html = (site / "index.html").read_text(encoding="utf-8")
    quick = html[html.index("<h2>Profile <code>quick</code>"):]
    # rshnl .677 > scbch .660 > dcmh .410 at 16 bits (see tests/test_robustness.py for the formula)
    assert quick.index("rshnl") < quick.index("scbch") < quick.index("dcmh")
    assert ".677 ± .010" in quick and "no clean-label reference" in quick
    assert "floor-constant" not in quick.split("<h2>Methods</h2>")[0]  # reference rows are not ranked


def test_table_page_has_one_table_per_rule_with_the_flagged_rules_marked(site):
    html = (site / TABLE_PAGE).read_text(encoding="utf-8")
    for rule in ("val", "final", "val-clean", "best-on-test"):
        assert f'id="map-{rule}"' in html
    assert '<option value="val" selected>val</option>' in html
    assert "val-clean † (optimistic)" in html and "best-on-test † (optimistic)" in html
    assert re.search(r'<div class="rule" data-rule="final" hidden>', html)
    # val table: scbch at 20 % · 16 bit is the mean of seeds (.70 + .01 + jitter) -> .710 ± .010, bold in its column
    val_table = html[html.index('id="map-val"'):html.index('id="map-final"')]
    assert '<td data-value="0.71" class="best">.710 ± .010</td>' in val_table
    flagged = html[html.index('id="map-best-on-test"'):]
    assert 'class="best"' not in flagged.split("</table>")[0]


def test_table_page_shows_the_plots_and_each_cells_provenance(site):
    html = (site / TABLE_PAGE).read_text(encoding="utf-8")
    assert '<img src="../../plots/quick-mirflickr-pair-swap-map.png"' in html
    provenance = html[html.index("<h2>Provenance</h2>"):]
    assert "<details>\n<summary>scbch</summary>" in provenance
    assert ("cmh-bench run --profile quick --methods scbch --datasets mirflickr --noise pair-swap --rates 0.2 --bits 16 "
            "--seeds 0,1,2") in provenance
    assert "0123456789abcdef" in provenance and "torch 2.14.1" in provenance
    assert "quick/mirflickr/pair-swap-0.2/16bit/scbch/seed2.json" in provenance
    assert "seed 0: failed (RuntimeError: CUDA out of memory" in provenance


def test_method_page_has_paper_deviations_profiles_and_every_cell(site):
    html = (site / "methods/scbch.html").read_text(encoding="utf-8")
    assert "a paper" in html and "Deviations from the paper" in html
    assert html.count('<tr><td><a href="../tables/') == 4 * 3 + 1  # 4 quick cells × 3 seeds + 1 paper cell
    assert '<td data-value="0.71">.710</td>' in html  # rule val of seed 1 at 20 % · 16 bit


def test_rendering_the_site_is_deterministic(site, tmp_path):
    fixture = report_fixture()
    fixture.write_fixture(tmp_path / "results")
    render_with_site(tmp_path / "results", tmp_path / "out", reported=fixture.REPORTED)
    files = sorted(p.relative_to(site) for p in site.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "out" / "site") for p in (tmp_path / "out" / "site").rglob("*") if p.is_file())
    for relative in files:
        assert (site / relative).read_bytes() == (tmp_path / "out" / "site" / relative).read_bytes(), relative


def test_cli_report_html_writes_the_site(tmp_path, capsys):
    report_fixture().write_fixture(tmp_path / "results")
    assert main(["report", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "board"), "--html"]) == 0
    assert (tmp_path / "board" / "site" / "index.html").is_file() and (tmp_path / "board" / "README.md").is_file()
    assert main(["report", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "plain")]) == 0
    assert not (tmp_path / "plain" / "site").exists()


# ---------------------------------------------------------------- headless Chromium


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium driven by selenium through Debian's chromedriver (skipped without them)."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("headless Chromium not installed: apt-get install chromium chromium-driver (.ci/run does)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium missing: pip install -e '.[test]'")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def failed_requests(driver) -> list[str]:
    """The requests of the pages loaded since the last call that failed (network error or HTTP status ≥ 400),
    and the browser's error messages."""
    failures = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.loadingFailed":
            failures.append(f"{message['params'].get('errorText')} ({message['params'].get('requestId')})")
        elif message["method"] == "Network.responseReceived" and message["params"]["response"].get("status", 200) >= 400:
            failures.append(f"{message['params']['response']['status']} {message['params']['response']['url']}")
    failures += [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    return failures


def column_values(driver, table_id: str, index: int) -> list[str]:
    """The data-value attributes of one column of a table, in display order."""
    return driver.execute_script(
        "return Array.from(document.getElementById(arguments[0]).tBodies[0].rows)"
        ".map(row => row.cells[arguments[1]].getAttribute('data-value'));", table_id, index)


def test_browser_sorts_by_a_clicked_header_and_loads_every_asset(site, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get((site / TABLE_PAGE).as_uri())
    assert failed_requests(browser) == []
    assert browser.execute_script("return Array.from(document.images).every(img => img.complete && img.naturalWidth > 0)")
    assert browser.execute_script("return document.images.length") >= 3
    header = browser.find_elements(By.CSS_SELECTOR, "#map-val thead th")[2]  # 20% · 16 bit
    before = column_values(browser, "map-val", 2)
    header.click()
    values = column_values(browser, "map-val", 2)
    numbers = [float(v) for v in values if v]
    assert numbers == sorted(numbers, reverse=True) and values != before
    assert all(not v for v in values[len(numbers):])  # cells without a value last
    header.click()
    numbers = [float(v) for v in column_values(browser, "map-val", 2) if v]
    assert numbers == sorted(numbers)
    assert header.get_attribute("aria-sort") == "ascending"
    Select(browser.find_element(By.ID, "rule")).select_by_value("best-on-test")
    assert browser.find_element(By.ID, "map-best-on-test").is_displayed()
    assert not browser.find_element(By.ID, "map-val").is_displayed()
    browser.get((site / "index.html").as_uri())
    assert failed_requests(browser) == []
    assert browser.save_screenshot(str(tmp_path / "site.png")) and (tmp_path / "site.png").stat().st_size > 10_000
    if os.environ.get("CMH_BENCH_UPDATE_SCREENSHOT") == "1":
        browser.get((REPO / "leaderboard" / "site" / "index.html").as_uri())
        browser.save_screenshot(str(REPO / "docs" / "leaderboard-site.png"))


def test_browser_check_notices_a_missing_asset(browser, tmp_path):
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><body><img src="missing.png"></body></html>', encoding="utf-8")
    browser.get(page.as_uri())
    assert failed_requests(browser) != []
