"""`threadline view`: the terminal waterfall, and the HTML page checked in headless Chromium."""

from __future__ import annotations

import html
import json
import math
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import span_files
from tests.span_files import Telemetry
from threadline.cli import main
from threadline.cli._read import read_logs, read_span_file
from threadline.cli._traces import group
from threadline.cli._view import BAR_WIDTH, render_text

HOSTILE = "GET /pay <script>alert(1)</script>\x1b[31m"


@pytest.fixture
def telemetry(tmp_path: Path) -> Iterator[Telemetry]:
    """A clean request, one whose parent never arrived, and a failed one with a hostile name."""
    tm = Telemetry(tmp_path)
    span_files.clean_request(tm, "r-1")
    span_files.parent_never_exported(tm, "r-lost")
    span_files.failed_span(tm, "r-err", HOSTILE)
    yield tm
    tm.close()


def view(tm: Telemetry, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    assert 0 == main(["view", str(tm.spans), "--logs", str(tm.logs), *extra])
    return capsys.readouterr().out


class TestText:
    def test_each_trace_is_a_tree_with_bars_to_scale(
        self, telemetry: Telemetry, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Header, span rows (service, indented name, duration, bar), then the trace's log lines."""
        out = view(telemetry, capsys)
        assert 3 == len(re.findall(r"^trace \w{32} \((4 spans|1 span|2 spans)\)$", out, re.MULTILINE))
        clean = out.split("\ntrace ")[1]
        rows = [line for line in clean.splitlines() if re.match(r"  (gateway|backend) ", line)]
        names = [re.split(r" +\d+\.\d ms", row[len("  gateway  ") :])[0] for row in rows]
        assert ["GET /orders/{order}", "  GET", "    GET /stock", "      thread work"] == names
        assert "\u2588" * BAR_WIDTH == rows[0].split(" ms  ", 1)[1]  # the root: the whole trace
        logs = re.findall(r"^  log  (\S+) +request=(\S+)  (.*)$", clean, re.MULTILINE)
        assert [
            ("gateway", "r-1", "gateway got the order"),
            ("backend", "r-1", "backend checks the stock"),
            ("worker", "r-1", "worker counted"),
        ] == logs

    def test_errors_and_missing_parents_are_marked_and_text_escaped(
        self, telemetry: Telemetry, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A failed span says ERROR and why; an orphan names its parent; no raw control char."""
        out = view(telemetry, capsys)
        assert re.search(r"resize image .*\(parent \w{16} never arrived\)$", out, re.MULTILINE)
        assert re.search(
            r"GET /pay <script>alert\(1\)</script>\\x1b\[31m .* ERROR stock <service> down$",
            out,
            re.MULTILINE,
        )
        assert "\x1b" not in out
        assert (
            "  log  gateway                request=r-err  ERROR order failed: <b>no stock</b>"
            in out
        )

    def test_bars_are_drawn_to_the_trace_scale(self, telemetry: Telemetry) -> None:
        """A bar's start and length are the span's offset and duration over the trace's."""
        (trace,) = [t for t in group(read_span_file(telemetry.spans).spans) if len(t.spans) == 4]
        text = render_text([trace], ascii_only=True)
        total = trace.end_ns - trace.start_ns
        for _, span, _ in trace.rows:
            (row,) = [line for line in text.splitlines() if f" {span.name}  " in line]
            bar = row.split(" ms  ", 1)[1]
            start, end = span.start_ns - trace.start_ns, span.end_ns - trace.start_ns
            assert int(start / total * BAR_WIDTH) == len(bar) - len(bar.lstrip(" "))
            if (end - start) / total * BAR_WIDTH < 0.5:
                assert "|" == bar.strip()  # too short for a cell: a thin mark
            else:
                cells = math.ceil(end / total * BAR_WIDTH) - int(start / total * BAR_WIDTH)
                assert "#" * cells == bar.strip()

    def test_one_trace_by_id_prefix(
        self, telemetry: Telemetry, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--trace keeps the trace whose id starts with the digits given; another id is an error."""
        trace_id = group(read_span_file(telemetry.spans).spans)[0].trace_id
        out = view(telemetry, capsys, "--trace", trace_id[:8])
        assert [trace_id] == re.findall(r"^trace (\w{32})", out, re.MULTILINE)
        with pytest.raises(SystemExit) as exit_info:
            main(["view", str(telemetry.spans), "--trace", "0" * 32])
        assert 2 == exit_info.value.code


def test_logs_without_a_trace_are_counted(
    telemetry: Telemetry, capsys: pytest.CaptureFixture[str]
) -> None:
    """Lines under no trace of the file are not drawn, but counted and pointed to doctor."""
    span_files.raw_thread(telemetry, "r-raw")
    assert 0 == main(["view", str(telemetry.spans), "--logs", str(telemetry.logs)])
    out = capsys.readouterr().out
    assert out.endswith("\n1 log line belongs to no trace here (threadline doctor explains)\n")
    assert 1 == len([log for log in read_logs([telemetry.logs]).records if log["trace_id"] == "-"])


# The HTML page, in a real browser


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium: installed when missing (as root, with apt-get), else skipped.

    With THREADLINE_REQUIRE_CHROMIUM=1 (CI) a missing browser fails the test instead.
    """
    found = shutil.which("chromium")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
            subprocess.run(command, check=False, capture_output=True, timeout=900)
        found = shutil.which("chromium")
    if found is None:
        reason = "chromium is not installed and cannot be (needs root and apt-get)"
        if os.environ.get("THREADLINE_REQUIRE_CHROMIUM"):
            pytest.fail(reason + "; THREADLINE_REQUIRE_CHROMIUM is set")
        pytest.skip(reason)
    return found


def browse(chromium: str, page: Path, *args: str) -> str:
    """Load *page* in headless Chromium (scripts run, then the DOM is dumped): the DOM."""
    result = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",  # the suite may run as root
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1300,900",
            "--virtual-time-budget=5000",
            *args,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert 0 == result.returncode, result.stderr[-2000:]
    return result.stdout


# Runs in the page: opens each span's details by clicking its summary, and reports what
# the browser laid out before and after the click, as JSON in <pre id="probe">.
PROBE = """<script>
const spans = [...document.querySelectorAll("details.span")];
const report = spans.map((d) => {
  const detail = d.querySelector(".detail");
  const before = {visible: detail.checkVisibility(), height: d.getBoundingClientRect().height};
  d.querySelector("summary").click();
  const track = d.querySelector(".track").getBoundingClientRect();
  const bar = d.querySelector(".bar").getBoundingClientRect();
  return {id: d.id, open: d.open, before: before, visible: detail.checkVisibility(),
          height: d.getBoundingClientRect().height,
          text: detail.innerText, left: (bar.left - track.left) / track.width,
          width: bar.width / track.width};
});
const pre = document.createElement("pre");
pre.id = "probe";
pre.textContent = JSON.stringify(report);
document.body.append(pre);
</script>"""


class TestHtml:
    @pytest.fixture
    def page(
        self, telemetry: Telemetry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> Path:
        out = tmp_path / "view.html"
        view(telemetry, capsys, "--html", str(out))
        return out

    def test_the_page_is_self_contained(self, page: Path) -> None:
        """No fetch of any kind: no src, no external href, no url(); a CSP that forbids them."""
        text = page.read_text()
        assert not re.search(r"\bsrc=|<link|@import|url\(|href=\"(?!#)", text)
        assert "content=\"default-src 'none'; style-src 'unsafe-inline'\"" in text

    def test_the_browser_shows_each_waterfall_and_the_logs(self, page: Path, chromium: str) -> None:
        """The DOM Chromium built: a section per trace, every span row, logs; nothing injected."""
        dom = browse(chromium, page, "--dump-dom")
        assert 3 == dom.count('<section class="trace"')
        rows = re.findall(r'<details class="span[^"]*" id="span-(\w{16})">', dom)
        assert 6 == len(rows) == len(set(rows))
        assert 1 == dom.count('class="span error"')
        assert 1 == dom.count('class="span orphan"')
        assert "<script>" not in dom
        assert "<b>" not in dom
        assert "GET /pay &lt;script&gt;alert(1)&lt;/script&gt;\\x1b[31m" in dom
        assert "order failed: &lt;b&gt;no stock&lt;/b&gt;" in dom
        for message in ("gateway got the order", "backend checks the stock", "worker counted"):
            assert f"<td>{message}</td>" in dom

    def test_a_click_shows_the_span_details_and_bars_are_to_scale(
        self, page: Path, chromium: str, tmp_path: Path
    ) -> None:
        """Clicking a span opens its ids, status and attributes; each bar sits at its offset."""
        probed = tmp_path / "probed.html"
        # the page forbids scripts (its CSP); the probe's copy drops that one line
        text = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page.read_text())
        probed.write_text(text.replace("</body>", PROBE + "</body>"))
        dom = browse(chromium, probed, "--dump-dom")
        found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.DOTALL)
        assert found is not None
        report = json.loads(html.unescape(found[1]))
        assert 6 == len(report)
        spans = {span.span_id: span for span in read_span_file(page.parent / "traces.jsonl").spans}
        traces = {t.trace_id: t for t in group(spans.values())}
        for row in report:
            span = spans[row["id"].removeprefix("span-")]
            assert {"visible": False, "height": pytest.approx(24, abs=8)} == row["before"]
            assert row["open"]
            assert row["visible"]
            assert row["height"] > row["before"]["height"] + 100
            assert f"span id\t{span.span_id}" in row["text"]
            assert f"trace id\t{span.trace_id}" in row["text"]
            trace = traces[span.trace_id]
            total = trace.end_ns - trace.start_ns
            assert abs(row["left"] - (span.start_ns - trace.start_ns) / total) < 0.01
            assert abs(row["width"] - (span.end_ns - span.start_ns) / total) < 0.01 or (
                row["width"] * 1300 <= 3  # drawn at least 2 px wide
            )
        failed = next(row for row in report if "ERROR" in row["text"])
        assert "status\tERROR: stock <service> down" in failed["text"]
        assert "request.id\tr-err" in failed["text"]
        orphan = next(row for row in report if "never arrived" in row["text"])
        assert "resize image" in orphan["text"]

    def test_a_screenshot_is_taken(self, page: Path, chromium: str, tmp_path: Path) -> None:
        """Chromium renders the page to a PNG (looked at by a person when the page changes)."""
        shot = tmp_path / "view.png"
        browse(chromium, page, f"--screenshot={shot}")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert shot.stat().st_size > 10_000
