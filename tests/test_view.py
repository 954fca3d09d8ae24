"""`threadline view`: the terminal waterfall, and the HTML page checked in headless Chromium."""

from __future__ import annotations

import html
import json
import math
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import span_files
from tests.span_files import Telemetry, otlp_line, otlp_span, span_id
from threadline._telemetry.span_file import read_span_file
from threadline.cli import main
from threadline.cli._logs import read_logs
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
        assert 3 == len(
            re.findall(r"^trace \w{32} \((4 spans|1 span|2 spans)\)$", out, re.MULTILINE)
        )
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


# Files no SDK would write: cycles, hostile and huge names, a hundred thousand spans

CYCLE = [
    otlp_span(span_id(1), span_id(2), "a"),
    otlp_span(span_id(2), span_id(1), "b"),
    otlp_span(span_id(3), span_id(3), "self"),
    otlp_span(span_id(4), span_id(1), "c"),
]


def rows_of(out: str) -> list[str]:
    """The span rows of the terminal drawing (after each trace's column header)."""
    rows, in_trace = [], False
    for line in out.splitlines():
        if line.startswith("  service "):
            in_trace = True
        elif not line.startswith("  ") or line.startswith("  log  "):
            in_trace = False
        elif in_trace:
            rows.append(line)
    return rows


class TestHostileFiles:
    def test_a_cycle_of_parents_draws_every_span(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Spans that are each other's parent, or their own: every one drawn, the cycle marked."""
        path = tmp_path / "spans.jsonl"
        path.write_text(otlp_line(CYCLE))
        assert 0 == main(["view", str(path)])
        out = capsys.readouterr().out
        assert re.search(r"^trace \w{32} \(4 spans\)$", out, re.MULTILINE)
        names = [re.split(r" +\d+\.\d ms", row[len("  svc      ") :])[0] for row in rows_of(out)]
        assert ["a", "  b", "  c", "self"] == names
        assert out.count("(cycle of parents: its parent 0000000000000002 is drawn under it)") == 1
        assert out.count("(cycle of parents: it is its own parent)") == 1

    def test_columns_line_up_when_every_name_is_short(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Names shorter than the column titles: each row's cells start under their title."""
        path = tmp_path / "spans.jsonl"
        path.write_text(otlp_line([otlp_span(span_id(1), name="x")], service="a"))
        assert 0 == main(["view", str(path)])
        out = capsys.readouterr().out
        header = next(line for line in out.splitlines() if line.startswith("  service"))
        (row,) = rows_of(out)
        assert header.index("span") == row.index("x")
        assert header.index("duration") + len("duration") == row.index(" ms") + len(" ms")
        assert header.index("0 ms") == row.index("\u2588")

    def test_counts_are_words(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """One span, one trace: singular, in the terminal and the page."""
        path = tmp_path / "spans.jsonl"
        path.write_text(otlp_line([otlp_span(span_id(1))]))
        assert 0 == main(["view", str(path)])
        assert "(1 span)\n" in capsys.readouterr().out
        assert 0 == main(["view", str(path), "--html", str(tmp_path / "page.html")])
        assert f"1 trace written to {tmp_path / 'page.html'}\n" == capsys.readouterr().out
        page = (tmp_path / "page.html").read_text()
        assert "<title>threadline: 1 trace</title>" in page
        assert "1 span · 1 service · " in page

    def test_a_megabyte_name_does_not_widen_every_row(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """One 1 MB service and span name among 200 spans: every cell cut, output bounded."""
        path = tmp_path / "spans.jsonl"
        spans = [otlp_span(span_id(n), span_id(1) if n > 1 else None) for n in range(1, 200)]
        huge = "x" * 1_000_000
        path.write_text(
            otlp_line(spans) + otlp_line([otlp_span(span_id(200), span_id(1), huge)], huge)
        )
        assert 0 == main(["view", str(path)])
        out = capsys.readouterr().out
        rows = rows_of(out)
        assert 200 == len(rows)
        assert max(len(row) for row in rows) <= 2 + 24 + 2 + 44 + 2 + 10 + 2 + BAR_WIDTH
        assert ("x" * 23 + "\u2026") in rows[-1]
        assert len(out) < 200 * 200
        assert 0 == main(["view", str(path), "--html", str(tmp_path / "page.html")])
        assert (tmp_path / "page.html").stat().st_size < 1_000_000

    @pytest.mark.timeout(120)  # a guard: 100,000 spans take seconds, not the quadratic minutes
    def test_a_hundred_thousand_spans_in_one_trace(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A trace 100,000 spans deep: every span drawn once; deep rows indented no further."""
        path = tmp_path / "spans.jsonl"
        span_files.write_chain(path, 100_000)
        assert 0 == main(["view", str(path)])
        rows = rows_of(capsys.readouterr().out)
        assert 100_000 == len(rows)
        assert max(len(row) for row in rows) <= 2 + 7 + 2 + 44 + 2 + 10 + 2 + BAR_WIDTH
        assert re.match(r"  svc      " + "  " * 10 + r"\[99999\] step 100000 ", rows[-1])


def test_ascii_terminal(tmp_path: Path) -> None:
    """With PYTHONIOENCODING=ascii a name like 'café ☕' is written escaped, never an error."""
    path = tmp_path / "spans.jsonl"
    path.write_text(otlp_line([otlp_span(span_id(1), name="caf\u00e9 \u2615")], "s\u00e9rvice"))
    result = subprocess.run(
        [sys.executable, "-m", "threadline", "view", str(path)],
        env={**os.environ, "PYTHONIOENCODING": "ascii"},
        capture_output=True,
        text=True,
        encoding="ascii",
        timeout=60,
        check=False,
    )
    assert 0 == result.returncode, result.stderr
    assert "caf\\xe9 \\u2615" in result.stdout
    assert "s\\xe9rvice" in result.stdout
    assert "#" * BAR_WIDTH in result.stdout  # ASCII bars


def test_the_browser_shows_a_cycle_and_hostile_names(
    tmp_path: Path, chromium: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cycle of parents and names made to break out of the page: a row for every span,
    nothing injected (no element, no script ran)."""
    breakout = "</span></summary></details><script>document.title='pwned'</script>"
    hostile = [
        otlp_span(span_id(5), name=breakout + "\x1b[2J\u2028", traceId="cd" * 16),
        otlp_span(
            span_id(6),
            span_id(5),
            '"><img src=x onerror="document.title=1">',
            traceId="cd" * 16,
            attributes=[{"key": "<b>k</b>", "value": {"stringValue": "</td><script>1</script>"}}],
        ),
    ]
    path = tmp_path / "spans.jsonl"
    path.write_text(otlp_line(CYCLE) + otlp_line(hostile, service="<style>*{display:none}</style>"))
    page = tmp_path / "page.html"
    assert 0 == main(["view", str(path), "--html", str(page)])
    capsys.readouterr()
    dom = browse(chromium, page, "--dump-dom")
    rows = re.findall(r'<details class="span[^"]*" id="span-(\w{16})">', dom)
    assert sorted(span_id(n) for n in (1, 2, 3, 4, 5, 6)) == sorted(rows)
    assert 2 == dom.count('<span class="flag cycle">cycle of parents</span>')
    assert "<title>threadline: 2 traces</title>" in dom
    for tag in ("<script", "<img", "<b>", "<style>*"):
        assert tag not in dom
    assert "&lt;/span&gt;&lt;/summary&gt;&lt;/details&gt;&lt;script&gt;" in dom
    assert "\\x1b[2J\\u2028" in dom
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f\u2028]", page.read_text())


def test_a_page_that_cannot_be_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--html into a folder that does not exist: a usage error naming the file and the reason."""
    path = tmp_path / "spans.jsonl"
    path.write_text(otlp_line([otlp_span(span_id(1))]))
    page = tmp_path / "none" / "page.html"
    with pytest.raises(SystemExit) as exit_info:
        main(["view", str(path), "--html", str(page)])
    assert 2 == exit_info.value.code
    assert f"view: cannot write {page}: No such file or directory\n" in capsys.readouterr().err
