"""What `threadline view` and `threadline doctor` make of files no SDK would write.

One rule: a file that is not OTLP JSON lines is a usage error (exit code 2)
naming the file and the line; inside a well-formed line what can be read is
read (a span with bad ids or times skipped, a bad field left out, both
counted in a note on stderr). Never a traceback, whatever the bytes.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import string
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.span_files import START_NS, TRACE_ID, otlp_line, otlp_span, span_id
from threadline._telemetry.span_file import FIELD_CAP, BadFileError, read_span_file
from threadline.cli import main
from threadline.cli._logs import read_logs

ONE = span_id(1)
TWO = span_id(2)


def run(*args: str) -> tuple[int, str, str]:
    """Run the tool in this process: exit code (2 for a usage error), stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
    return code, out.getvalue(), err.getvalue()


def every_tool(path: Path, html: Path) -> list[tuple[int, str, str]]:
    """`view`, `view --html` and `doctor --json` over the span file *path*."""
    return [
        run("view", str(path)),
        run("view", str(path), "--html", str(html)),
        run("doctor", str(path), "--json"),
    ]


NOT_SPANS = [
    ("[1,2]\n", "line 1: not OTLP spans: a list, not an object with resourceSpans"),
    ("5\n", "line 1: not OTLP spans: a number, not an object with resourceSpans"),
    ('{"resourceSpans": null}\n', "line 1: resourceSpans is null, not a list"),
    ('{"resourceSpans": 5}\n', "line 1: resourceSpans is a number, not a list"),
    ('{"resourceSpans": {}}\n', "line 1: resourceSpans is an object, not a list"),
    ("[" * 100_000 + "]" * 100_000 + "\n", "line 1: not JSON: nested too deeply"),
    ('{"resourceSpans": [Infinity]}\n', "line 1: not JSON: Infinity is not JSON"),
    ('{"resourceSpans": []}\n\nnot json\n', "line 3: not JSON: Expecting value"),
    (
        '{"time": "2024-01-01T00:00:00Z", "message": "started", "request_id": "-"}\n',
        "line 1: not OTLP spans: an object without resourceSpans (a log file? use --logs)",
    ),
    ('{"resourceLogs": []}\n', "no spans: only OTLP logs, metrics or profiles"),
    ("", "empty: no OTLP JSON line in it"),
    ("\n  \n", "empty: no OTLP JSON line in it"),
]


class TestNotASpanFile:
    @pytest.mark.parametrize(("text", "message"), NOT_SPANS)
    def test_is_a_usage_error_naming_file_and_line(
        self, tmp_path: Path, text: str, message: str
    ) -> None:
        """Both tools exit with 2 and say which file, which line, and what is wrong."""
        path = tmp_path / "spans.jsonl"
        path.write_text(text)
        for code, out, err in every_tool(path, tmp_path / "page.html"):
            assert (2, "") == (code, out)
            assert f"{path}, {message}" in err or f"{path}: {message}" in err, err
        assert not (tmp_path / "page.html").exists()

    def test_bytes_that_are_not_utf8(self, tmp_path: Path) -> None:
        """A line that is not UTF-8 names its line."""
        path = tmp_path / "spans.jsonl"
        path.write_bytes(otlp_line([otlp_span(ONE)]).encode() + b'{"resourceSpans": ["\xff"]}\n')
        for code, _, err in every_tool(path, tmp_path / "page.html"):
            assert 2 == code
            assert f"{path}, line 2: not UTF-8 text" in err

    def test_a_folder_or_a_missing_file(self, tmp_path: Path) -> None:
        """A file that cannot be read is a usage error with the operating system's reason."""
        for path, reason in ((tmp_path, "Is a directory"), (tmp_path / "no", "No such file")):
            for code, _, err in every_tool(path, tmp_path / "page.html"):
                assert 2 == code
                assert f"{path}: cannot read it: {reason}" in err

    def test_a_log_file_that_cannot_be_read(self, tmp_path: Path) -> None:
        """--logs naming a missing file is a usage error too."""
        spans = tmp_path / "spans.jsonl"
        spans.write_text(otlp_line([otlp_span(ONE)]))
        for command in ("view", "doctor"):
            code, _, err = run(command, str(spans), "--logs", str(tmp_path / "none.log"))
            assert 2 == code
            assert "none.log: cannot read it: No such file or directory" in err

    def test_doctor_needs_a_file(self) -> None:
        """doctor with neither spans nor logs is a usage error."""
        code, _, err = run("doctor")
        assert 2 == code
        assert "give span files, log files (--logs), or both" in err


# A span with one malformed field: (field, value, what the tools read)
SKIPPED = [
    ("traceId", 5),
    ("traceId", [1, 2]),
    ("traceId", "zz" * 16),
    ("traceId", "00" * 16),
    ("spanId", None),
    ("spanId", "abc"),
    ("parentSpanId", 7),
    ("parentSpanId", "x\n2. no lost context"),
    ("startTimeUnixNano", "RAW:1e400"),  # written as the number 1e400: inf to json.loads
    ("startTimeUnixNano", "1e22"),
    ("startTimeUnixNano", 10**22),  # year 318857: out of range for a date
    ("endTimeUnixNano", -1),
    ("endTimeUnixNano", "Infinity"),
    ("endTimeUnixNano", True),
]
DROPPED = [
    ("name", 5, "name", ""),
    ("name", None, "name", ""),
    ("kind", None, "kind", 0),
    ("kind", 9, "kind", 0),
    ("kind", "SPAN_KIND_SERVER", "kind", 2),  # protobuf's JSON enum name: read
    ("status", "ERROR", "status_code", 0),
    ("status", {"code": "bad", "message": 3}, "status_code", 0),
    ("attributes", {"a": 1}, "attributes", {}),
    ("attributes", [{"key": "a", "value": {"arrayValue": {"values": 5}}}], "attributes", {}),
    ("attributes", [{"key": 5, "value": {"stringValue": "x"}}], "attributes", {}),
    ("attributes", [{"key": "n", "value": {"intValue": "1e5"}}], "attributes", {}),
    ("endTimeUnixNano", str(START_NS - 5), "end_ns", START_NS),  # before its start
]


class TestWhatCanBeReadIsRead:
    @pytest.mark.parametrize(("field", "value"), SKIPPED)
    def test_a_span_with_bad_ids_or_times_is_skipped_and_counted(
        self, tmp_path: Path, field: str, value: object
    ) -> None:
        """The other spans are drawn; a note on stderr counts the skipped one."""
        path = tmp_path / "spans.jsonl"
        bad = otlp_span(TWO, ONE, "bad")
        bad[field] = value
        line = otlp_line([otlp_span(ONE, name="good"), bad])
        path.write_text(re.sub(r'"RAW:([^"]*)"', r"\1", line))
        (view, html, doctor) = every_tool(path, tmp_path / "page.html")
        assert 0 == view[0]
        assert re.search(r"^trace \w{32} \(1 span\)$", view[1], re.MULTILINE)
        assert "bad" not in view[1]
        assert "no lost context" not in view[1]
        assert (0, 0) == (html[0], doctor[0])
        assert 1 == json.loads(doctor[1])["spans"]
        for _, _, err in (view, html, doctor):
            assert f"{path}: 1 span skipped (bad ids or times)" in err

    @pytest.mark.parametrize(("field", "value", "attribute", "read"), DROPPED)
    def test_a_bad_field_is_left_out_and_counted(
        self, tmp_path: Path, field: str, value: object, attribute: str, read: object
    ) -> None:
        """The span is read without the field; the tools draw it and note it."""
        path = tmp_path / "spans.jsonl"
        path.write_text(otlp_line([otlp_span(ONE, **{field: value})]))
        (span,) = read_span_file(path).spans
        assert read == getattr(span, attribute)
        (view, html, doctor) = every_tool(path, tmp_path / "page.html")
        assert (0, 0, 0) == (view[0], html[0], doctor[0])
        assert re.search(r"^trace \w{32} \(1 span\)$", view[1], re.MULTILINE)
        if field != "kind" or not isinstance(value, str):
            assert f"{path}: 1 span read with a malformed field left out" in view[2]

    def test_lines_of_other_signals_are_skipped(self, tmp_path: Path) -> None:
        """A Collector file shared with a logs or metrics pipeline: their lines are counted."""
        path = tmp_path / "spans.jsonl"
        path.write_text('{"resourceMetrics": []}\n' + otlp_line([otlp_span(ONE)]))
        code, out, err = run("view", str(path))
        assert 0 == code
        assert "(1 span)" in out
        assert f"threadline view: {path}: 1 line of logs, metrics or profiles skipped\n" == err

    def test_attribute_values_of_every_otlp_type(self, tmp_path: Path) -> None:
        """Each OTLP value type is read; nesting past VALUE_DEPTH is left out."""
        deep: dict[str, Any] = {"stringValue": "x"}
        for _ in range(20):
            deep = {"arrayValue": {"values": [deep]}}
        values = {
            "s": {"stringValue": "x" * (FIELD_CAP + 10)},
            "b": {"boolValue": True},
            "i": {"intValue": "-42"},
            "d": {"doubleValue": "NaN"},
            "raw": {"bytesValue": "AAE="},
            "list": {"arrayValue": {"values": [{"intValue": 1}, {"stringValue": "a"}]}},
            "map": {"kvlistValue": {"values": [{"key": "k", "value": {"boolValue": False}}]}},
            "none": {},
            "empty": {"arrayValue": {}},  # protobuf's JSON leaves an empty list out
            "deep": deep,
        }
        attributes = [{"key": key, "value": value} for key, value in values.items()]
        path = tmp_path / "spans.jsonl"
        path.write_text(otlp_line([otlp_span(ONE, attributes=attributes)]))
        found = read_span_file(path)
        read = found.spans[0].attributes
        assert "x" * (FIELD_CAP - 1) + "\u2026" == read.pop("s")
        assert str(read.pop("d")) == "nan"
        expected = {"b": True, "i": -42, "raw": "0001", "list": [1, "a"]}
        assert {**expected, "map": {"k": False}, "none": None, "empty": []} == read
        assert 1 == found.dropped

    def test_the_html_page_of_a_far_future_span(self, tmp_path: Path) -> None:
        """The largest time OTLP allows (2**64 - 1 ns, in 2554) is drawn and dated."""
        path = tmp_path / "spans.jsonl"
        last = str(2**64 - 1)
        path.write_text(otlp_line([otlp_span(ONE, startTimeUnixNano=last, endTimeUnixNano=last)]))
        code, out, _ = run("view", str(path), "--html", str(tmp_path / "page.html"))
        assert (0, f"1 trace written to {tmp_path / 'page.html'}\n") == (code, out)
        assert "2554-07-21T23:34:33." in (tmp_path / "page.html").read_text()


class TestLogLines:
    def test_lines_that_are_not_objects_are_skipped_and_counted(self, tmp_path: Path) -> None:
        """A 100,000-deep line, text, a list and NaN are skipped; objects are read."""
        logs = tmp_path / "logs.jsonl"
        lines = ["[" * 100_000, "{" * 100_000, "Traceback (most recent call last):", "[1]"]
        record = {"message": "kept", "trace_id": TRACE_ID, "request_id": "r1", "x": [[[1]]]}
        logs.write_text("\n".join([*lines, '{"a": NaN}', json.dumps(record)]) + "\n")
        found = read_logs([logs])
        assert (5, [{**record, "x": "[[[1]]]"}]) == (found.skipped, found.records)
        spans = tmp_path / "spans.jsonl"
        spans.write_text(otlp_line([otlp_span(ONE)]))
        for command in ("view", "doctor"):
            code, _, err = run(command, str(spans), "--logs", str(logs))
            assert 0 == code, err
            assert f"threadline {command}: 5 log lines skipped (not a JSON object)\n" in err
        assert "request=r1  kept" in run("view", str(spans), "--logs", str(logs))[1]

    def test_every_field_is_cut(self, tmp_path: Path) -> None:
        """A field of a megabyte keeps FIELD_CAP characters."""
        logs = tmp_path / "logs.jsonl"
        logs.write_text(json.dumps({"message": "m" * 1_000_000, "n": 10**30}) + "\n")
        (record,) = read_logs([logs]).records
        assert FIELD_CAP == len(str(record["message"]))
        assert str(record["message"]).endswith("\u2026")


# Fuzzing: any JSON, OTLP-shaped or not, and any bytes.

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
TRACE_IDS = st.sampled_from([TRACE_ID, TRACE_ID, "CD" * 16, "0" * 32, ONE])
IDS = st.sampled_from([ONE, TWO, span_id(3), "AB" * 8, "", "0" * 16, TRACE_ID])


def either(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly (9 in 10) what OTLP puts there, else any JSON value."""
    return st.integers(0, 9).flatmap(lambda n: JSON if n == 0 else valid)


ANY_VALUE = st.recursive(
    st.one_of(
        st.builds(lambda v: {"stringValue": v}, either(st.text())),
        st.builds(lambda v: {"intValue": v}, either(st.integers().map(str))),
        st.builds(lambda v: {"doubleValue": v}, either(st.floats(allow_nan=False))),
        st.builds(lambda v: {"boolValue": v}, either(st.booleans())),
        st.builds(lambda v: {"bytesValue": v}, either(st.text(string.ascii_letters + "="))),
    ),
    lambda inner: (
        st.builds(lambda v: {"arrayValue": {"values": v}}, either(st.lists(inner)))
        | st.builds(
            lambda v: {"kvlistValue": {"values": v}},
            either(st.lists(st.fixed_dictionaries({"key": either(st.text()), "value": inner}))),
        )
    ),
    max_leaves=6,
)
ATTRIBUTES = st.lists(
    either(st.fixed_dictionaries({"key": either(st.text()), "value": either(ANY_VALUE)})),
    max_size=3,
)
TIMES = st.integers(min_value=0, max_value=2**64 + 5).map(str)
SPAN = st.fixed_dictionaries(
    {
        "traceId": either(TRACE_IDS),
        "spanId": either(IDS),
        "startTimeUnixNano": either(TIMES),
        "endTimeUnixNano": either(TIMES),
    },
    optional={
        "parentSpanId": either(IDS),
        "name": either(st.text()),
        "kind": either(st.integers(0, 5)),
        "status": either(
            st.fixed_dictionaries(
                {}, optional={"code": either(st.integers(0, 2)), "message": either(st.text())}
            )
        ),
        "attributes": either(ATTRIBUTES),
    },
)
SCOPE = st.fixed_dictionaries({"spans": either(st.lists(either(SPAN), min_size=1, max_size=6))})
RESOURCE = st.fixed_dictionaries(
    {"scopeSpans": either(st.lists(either(SCOPE), min_size=1, max_size=3))},
    optional={"resource": either(st.fixed_dictionaries({}, optional={"attributes": ATTRIBUTES}))},
)
DOCUMENT = either(st.fixed_dictionaries({"resourceSpans": either(st.lists(either(RESOURCE)))}))


def check_tools(data: bytes, logs: bytes = b"") -> None:
    """Every tool on *data*: the documented exit codes, no traceback, no raw control character."""
    with tempfile.TemporaryDirectory() as folder:
        path, log_path, page = (
            Path(folder) / "s.jsonl",
            Path(folder) / "l.jsonl",
            Path(folder) / "p",
        )
        path.write_bytes(data)
        log_path.write_bytes(logs)
        with contextlib.suppress(BadFileError):  # the one error the reader raises
            for span in read_span_file(path).spans:
                assert span.start_ns <= span.end_ns <= 2**64 - 1
        assert all(
            isinstance(key, str) for record in read_logs([log_path]).records for key in record
        )
        results = [
            *every_tool(path, page),
            run("doctor", str(path), "--logs", str(log_path)),
            run("view", str(path), "--logs", str(log_path)),
        ]
        for code, out, err in results:
            assert code in (0, 1, 2)
            assert "Traceback" not in err
            if code == 2:
                assert str(path) in err
            assert all(char == "\n" or char.isprintable() for char in out)
        (view, html, doctor, text_doctor, _) = results
        assert view[0] in (0, 2)
        assert html[0] in (0, 2)
        if doctor[0] != 2:
            assert doctor[0] == (1 if json.loads(doctor[1])["findings"] else 0)
        assert text_doctor[0] == doctor[0]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(DOCUMENT, min_size=1, max_size=3))
def test_fuzz_otlp_shaped_json(lines: list[Any]) -> None:
    """OTLP documents with any field of any type: read, or a usage error; never a traceback."""
    check_tools("".join(json.dumps(line) + "\n" for line in lines).encode())


@settings(max_examples=100, deadline=None)
@given(value=JSON)
def test_fuzz_any_json(value: Any) -> None:
    """Any JSON value as a span file and as a log line."""
    line = (json.dumps(value) + "\n").encode()
    check_tools(line, logs=line)


@settings(max_examples=100, deadline=None)
@given(data=st.binary(), logs=st.binary())
def test_fuzz_any_bytes(data: bytes, logs: bytes) -> None:
    """Any bytes as a span file and as a log file."""
    check_tools(data, logs)
