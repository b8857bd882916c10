"""The demo's reports in a real browser: headless Chromium opens each HTML file from
disk with the network offline (tests/browser.py drives it over a DevTools pipe), and
the page must load nothing from anywhere, log no error, draw a chart of real size with
every quota failure marker visible, follow the dark colour scheme, and print on A4.

The screenshot of the batch report is what README shows: run this module with
``UPDATE_SCREENSHOTS=1`` to write it to docs/report-demo.png.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from preflight.sandbox import SandboxServer
from tests.browser import Browser, find_chromium
from tests.e2e.conftest import Cli

pytestmark = pytest.mark.slow

DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "report-demo.png"

VISIBLE_MARKERS = """
(() => {
  const chart = document.querySelector('svg.chart').getBoundingClientRect();
  return [...document.querySelectorAll('svg.chart .failure-marker')].map((marker) => {
    marker.scrollIntoView({block: 'center'});
    const box = marker.getBoundingClientRect();
    const style = getComputedStyle(marker);
    const hit = document.elementFromPoint(box.x + box.width / 2, box.y + box.height / 2);
    const chartNow = document.querySelector('svg.chart').getBoundingClientRect();
    return {
      tag: marker.dataset.tag,
      fill: marker.getAttribute('fill'),
      width: box.width, height: box.height,
      inside: box.left >= chartNow.left && box.right <= chartNow.right
        && box.top >= chartNow.top && box.bottom <= chartNow.bottom,
      shown: style.display !== 'none' && style.visibility === 'visible'
        && Number(style.opacity) > 0,
      onTop: hit === marker || marker.contains(hit),
      chartWidth: chart.width, chartHeight: chart.height,
    };
  });
})()
"""


@pytest.fixture(scope="module")
def chromium() -> str:
    found = find_chromium()
    if found is None:
        message = "chromium is not installed (apt-get install -y chromium; .ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(f"the browser test must run in CI: {message}")
        pytest.skip(message)
    return found


@pytest.fixture
def browser(chromium: str) -> Iterator[Browser]:
    with Browser(chromium, width=1100, height=1300) as opened:
        yield opened


@pytest.fixture
def demo_reports(cli: Cli, tmp_path: Path) -> dict[str, Path]:
    demo = cli("demo", "--format", "json")
    assert demo.code == 0, demo.err
    url = f"sqlite:///{tmp_path / 'data' / 'preflight' / 'demo.db'}"
    reports = {
        "batch": (tmp_path / "report-demo-subtitles.html", ["demo-subtitles"]),
        "account": (tmp_path / "report-account.html", ["--account", "default", "--since", "1h"]),
    }
    for path, arguments in reports.values():
        run = cli("report", *arguments, "-o", str(path), env={"PREFLIGHT_DATABASE_URL": url})
        assert run.code == 0, run.err
    return {name: path for name, (path, _) in reports.items()}


def assert_sound_page(browser: Browser, path: Path) -> list[dict[str, object]]:
    browser.open(path)
    assert browser.console_errors() == []
    assert {url.split(":", 1)[0] for url in browser.requested_urls()} <= {"file", "data"}
    box = browser.evaluate(
        "(() => { const b = document.querySelector('svg.chart').getBoundingClientRect();"
        " return [b.width, b.height]; })()"
    )
    assert box[0] > 600
    assert box[1] > 250
    markers: list[dict[str, object]] = browser.evaluate(VISIBLE_MARKERS)
    for marker in markers:
        assert marker["width"], marker
        assert marker["height"], marker
        assert marker["inside"], marker
        assert marker["shown"], marker
        assert marker["onTop"], marker
    return markers


def test_the_demo_batch_report_in_chromium(
    browser: Browser, demo_reports: dict[str, Path], tmp_path: Path
) -> None:
    markers = assert_sound_page(browser, demo_reports["batch"])
    assert [(m["tag"], m["fill"]) for m in markers] == [("concurrent_consumption", "#8e44ad")]
    shot = tmp_path / "report-demo.png"
    browser.screenshot(shot, height=1250)
    assert shot.read_bytes().startswith(b"\x89PNG")
    if os.environ.get("UPDATE_SCREENSHOTS"):
        shutil.copyfile(shot, DOCS_SCREENSHOT)

    # Dark mode: the page follows the system's colour scheme.
    light = browser.evaluate("getComputedStyle(document.documentElement).backgroundColor")
    browser.prefer_color_scheme("dark")
    dark = browser.evaluate("getComputedStyle(document.documentElement).backgroundColor")
    assert (light, dark) == ("rgb(255, 255, 255)", "rgb(13, 17, 23)")
    browser.screenshot(tmp_path / "report-demo-dark.png", height=900)
    browser.prefer_color_scheme("light")

    # Print: every page is the @page rule's A4 (210 x 297 mm: 595.3 x 841.9 points).
    pdf = browser.pdf()
    assert pdf.startswith(b"%PDF")
    boxes = re.findall(rb"/MediaBox \[0 0 ([0-9.]+) ([0-9.]+)\]", pdf)
    assert boxes
    assert {(round(float(w)), round(float(h))) for w, h in boxes} == {(595, 842)}
    assert browser.console_errors() == []


def test_the_demo_account_report_in_chromium(
    browser: Browser, demo_reports: dict[str, Path], tmp_path: Path
) -> None:
    markers = assert_sound_page(browser, demo_reports["account"])
    assert sorted((m["tag"], m["fill"]) for m in markers) == [
        ("concurrent_consumption", "#8e44ad"),
        ("pre_existing_low_balance", "#d1495b"),
    ]
    bands = browser.evaluate(
        "[...document.querySelectorAll('svg.chart .band-item')].map(b => b.dataset.batch)"
    )
    assert sorted(bands) == ["demo-subtitles", "demo-voiceover"]
    browser.screenshot(tmp_path / "report-account.png")


PROJECTION = """
(() => {
  const chart = document.querySelector('svg.chart').getBoundingClientRect();
  const line = document.querySelector('svg.chart .projection-line');
  const finish = document.querySelector('svg.chart .projected-finish');
  if (!line || !finish) return null;
  finish.scrollIntoView({block: 'center'});
  const chartNow = document.querySelector('svg.chart').getBoundingClientRect();
  const inside = (b) => b.left >= chartNow.left - 1 && b.right <= chartNow.right + 1
    && b.top >= chartNow.top - 1 && b.bottom <= chartNow.bottom + 1;
  const lineBox = line.getBoundingClientRect();
  const finishBox = finish.getBoundingClientRect();
  const style = getComputedStyle(line);
  return {
    dashed: style.strokeDasharray,
    stroke: style.stroke,
    lineWidth: lineBox.width, lineInside: inside(lineBox),
    finishWidth: finishBox.width, finishInside: inside(finishBox),
    finishShown: getComputedStyle(finish).visibility === 'visible',
    finishTitle: finish.querySelector('title').textContent,
    chartWidth: chart.width,
  };
})()
"""


def test_an_open_batchs_projection_is_drawn(
    browser: Browser, cli: Cli, sandbox: SandboxServer, tmp_path: Path
) -> None:
    # The story on the machine's clock: 200 at the check, need 100; own jobs
    # spend 40 and something unrecorded 120; the guard's recheck reads 40.
    sandbox.set_balance(credits=Decimal(200))
    assert cli("check", "open-batch", "--need", "100").code == 0
    sandbox.consume(Decimal(160))
    for n in range(4):
        run = cli("record", "open-batch", f"j{n}", "--status", "succeeded", "--cost", "10")
        assert run.code == 0, run.err
    guard = cli("guard", "open-batch", "--max-age", "0s", "--format", "json")
    assert guard.code == 15, guard.err
    assert json.loads(guard.out)["runs_out_first"] is True
    page = tmp_path / "open-batch.html"
    assert cli("report", "open-batch", "-o", str(page)).code == 0
    browser.open(page)
    assert browser.console_errors() == []
    drawn = browser.evaluate(PROJECTION)
    assert drawn is not None, "no projection in the chart"
    assert drawn["dashed"] not in ("", "none"), drawn
    assert drawn["lineWidth"] > 0, drawn
    assert drawn["lineInside"], drawn
    assert drawn["finishWidth"] > 0, drawn
    assert drawn["finishInside"], drawn
    assert drawn["finishShown"], drawn
    assert "projected finish" in drawn["finishTitle"]
