"""``preflight report`` end to end: the real CLI against the sandbox vendor, on SQLite and
PostgreSQL. A batch with a quota failure of each tag, a top-up and another batch; an
account with the audit's findings; and the errors, one line each."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

from preflight.report.chart import TAG_COLOURS
from preflight.sandbox import SandboxServer
from tests.e2e.conftest import Cli, paid_job
from tests.e2e.test_postmortem_cli import as_json, check, ok, record_quota_failure, show, succeeded
from tests.unit.test_report_render import Page, by_class, chart_svg

pytestmark = pytest.mark.slow


def read_report(cli: Cli, path: Path, *arguments: str) -> str:
    run = ok(cli("report", *arguments, "-o", str(path)))
    assert run.out.startswith(f"wrote {path} (")
    return path.read_text(encoding="utf-8")


def assert_self_contained(html: str) -> Page:
    page = Page(html)
    for link in page.links():
        assert link.startswith("#"), link
        assert link[1:] in page.ids, link
    assert "script" not in {tag for tag, _ in page.tags}
    return page


def test_a_batch_with_both_tags_a_top_up_and_another_batch(
    cli_any_db: Cli, sandbox: SandboxServer, tmp_path: Path
) -> None:
    sandbox.set_balance(credits=Decimal("100"))
    assert check(cli_any_db, "nightly/eu:1", "50")["verdict"] == "go"
    check(cli_any_db, "Y", "100")
    # Own job of 60; the next one (expected 50) is refused: the check's 100 could not
    # cover 60 + 50, a low balance that already existed.
    assert paid_job(sandbox, "60") == 200
    ok(cli_any_db("record", "nightly/eu:1", "--from", "-", stdin=succeeded(("j1", "60"))))
    assert paid_job(sandbox, "50") == 402
    first = record_quota_failure(cli_any_db, "nightly/eu:1", "j2", "--expected-cost", "50")
    assert first["tag"] == "pre_existing_low_balance"
    # A top-up (seen by a manual snapshot), Y spends 100, someone spends 120 unrecorded.
    sandbox.topup(Decimal("200"))
    ok(cli_any_db("profile", "show"))
    assert paid_job(sandbox, "100") == 200
    ok(cli_any_db("record", "Y", "--from", "-", stdin=succeeded(("y1", "100"))))
    sandbox.consume(Decimal("120"), "credits")
    assert paid_job(sandbox, "30") == 402
    second = record_quota_failure(cli_any_db, "nightly/eu:1", "j3", "--expected-cost", "30")
    assert second["tag"] == "concurrent_consumption"
    ok(cli_any_db("finish", "nightly/eu:1"))
    ok(cli_any_db("finish", "Y"))

    html = read_report(cli_any_db, tmp_path / "b.html", "nightly/eu:1")
    page = assert_self_contained(html)
    text = " ".join(" ".join(page.text).split())
    assert "verdict at the check go" in text
    assert "balance drop (100 → 20) 80" in text
    assert "foreign consumption, at least 220" in text
    assert "own consumed cost 60" in text

    svg = chart_svg(html)
    snapshots = show(cli_any_db, "nightly/eu:1")["snapshots"]
    markers = [int(m.get("data-snapshot") or 0) for m in by_class(svg, "use", "snap")]
    # Every snapshot of the account from the check to after the finish: the batch's own
    # four, Y's check and finish, and the manual one.
    assert len(markers) == 7
    assert {s["id"] for s in snapshots} <= set(markers)
    rows = [int(r) for r in re.findall(r'<tr id="snapshot-(\d+)"', html)]
    assert rows == markers
    failures = by_class(svg, "path", "failure-marker")
    assert [(f.get("data-tag"), f.get("fill")) for f in failures] == [
        ("pre_existing_low_balance", TAG_COLOURS["pre_existing_low_balance"]),
        ("concurrent_consumption", TAG_COLOURS["concurrent_consumption"]),
    ]
    assert [b.get("data-batch") for b in by_class(svg, "g", "band-item")] == ["Y"]
    assert len(by_class(svg, "path", "topup")) == 1

    bar = re.search(r'<svg class="bar".*?</svg>', html, re.DOTALL)
    assert bar is not None
    assert re.findall(r"<title>(.*?)</title>", bar.group(0)) == [
        "own (nightly/eu:1): 60",
        "Y: 100",
        "unattributed: 120",
    ]
    # The concurrent failure's evidence, with links to the snapshots it used.
    assert "others spent at least 220" in text
    second_failure = html[html.index('id="failure-2"') :]
    cited = re.findall(r'href="#snapshot-(\d+)"', second_failure.split("</article>")[0])
    assert cited
    assert set(map(int, cited)) <= set(markers)


def test_an_account_with_findings(cli_any_db: Cli, sandbox: SandboxServer, tmp_path: Path) -> None:
    sandbox.set_balance(credits=Decimal("1000"))
    ok(cli_any_db("audit"))
    check(cli_any_db, "B", "100")
    assert paid_job(sandbox, "100") == 200
    ok(cli_any_db("record", "B", "j1", "--status", "succeeded", "--cost", "100"))
    sandbox.consume(Decimal("700"), "credits")
    forced = cli_any_db("audit", "--force", env={"PREFLIGHT_LOW_BALANCE_THRESHOLD": "500"})
    assert forced.code == 0, forced.err
    kinds = sorted(f["kind"] for f in as_json(cli_any_db("findings", "--format", "json")))
    assert kinds == ["low_balance", "unexplained_consumption"]

    html = read_report(cli_any_db, tmp_path / "a.html", "--account", "default", "--since", "1h")
    page = assert_self_contained(html)
    svg = chart_svg(html)
    assert len(by_class(svg, "use", "snap")) == 3  # the audit, the check, the forced audit
    assert len(by_class(svg, "rect", "unexplained")) == 1
    assert len(by_class(svg, "path", "low")) == 1
    assert [b.get("data-batch") for b in by_class(svg, "g", "band-item")] == ["B"]
    text = " ".join(" ".join(page.text).split())
    assert "unexplained_consumption 700" in text
    assert "low_balance 200" in text
    assert "latest balance 200" in text


def test_unknown_batch_and_bad_arguments_are_one_line_usage_errors(
    cli_any_db: Cli, tmp_path: Path
) -> None:
    for arguments, message in (
        (("nope",), "preflight: error: no batch 'nope'"),
        ((), "preflight: error: give either BATCH_ID or --account ACCOUNT"),
        (("B", "--since", "1h"), "preflight: error: --since goes with --account"),
        (("--account", "nobody"), "preflight: error: no account 'nobody'"),
    ):
        run = cli_any_db("report", *arguments, "-o", str(tmp_path / "x.html"))
        assert run.code == 2, (arguments, run.err)
        assert run.err.count("\n") == 1, run.err
        assert run.err.startswith(message), run.err
        assert not (tmp_path / "x.html").exists()
