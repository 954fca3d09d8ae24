"""Logs: request, user, trace and span ids on every record."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace

import threadline as tl
from tests.helpers import clean_env
from threadline.logging import ContextFilter, JSONFormatter, install, uninstall


@pytest.fixture
def logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    log = logging.getLogger("tests.threadline")  # set back after each test by conftest.py
    log.propagate = False
    log.setLevel(logging.DEBUG)
    log.addHandler(handler)
    yield log, stream
    log.removeHandler(handler)


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


class TestContextFilter:
    def test_fields_in_scope_and_span(
        self, logger: tuple[logging.Logger, io.StringIO], tracer: trace.Tracer
    ) -> None:
        """A record made in a scope and a span shows the request, user, trace and span ids."""
        log, stream = logger
        handler = log.handlers[0]
        handler.addFilter(ContextFilter())
        handler.setFormatter(
            logging.Formatter("%(request_id)s %(user_id)s %(trace_id)s %(span_id)s %(message)s")
        )
        with tl.request.scope(request_id="r1", user_id=42), tracer.start_as_current_span("s") as s:
            log.info("hello")
        sc = s.get_span_context()
        assert [f"r1 42 {sc.trace_id:032x} {sc.span_id:016x} hello"] == lines(stream)

    @pytest.mark.parametrize("installed", [False, True])
    def test_each_record_reads_its_own_context(
        self, logger: tuple[logging.Logger, io.StringIO], tracer: trace.Tracer, installed: bool
    ) -> None:
        """Records one after another in changing scopes and spans each get their context's ids."""
        log, stream = logger
        handler = log.handlers[0]
        if installed:
            install()
        else:
            handler.addFilter(ContextFilter())
        handler.setFormatter(logging.Formatter("%(request_id)s %(span_id)s"))
        try:
            with tl.request.scope(request_id="r1"):
                log.info("a")
                log.info("b")
                with tracer.start_as_current_span("s") as span:
                    log.info("c")
                with tl.request.merge(request_id="r2"):
                    log.info("d")
                log.info("e")
            log.info("f")
            with tl.request.scope(request_id="r1"):
                log.info("g")
        finally:
            uninstall()
        span_id = f"{span.get_span_context().span_id:016x}"
        expected = ["r1 -", "r1 -", f"r1 {span_id}", "r2 -", "r1 -", "- -", "r1 -"]
        assert expected == lines(stream)

    def test_placeholder_outside_any_scope(
        self, logger: tuple[logging.Logger, io.StringIO]
    ) -> None:
        """Outside any scope or span every field is the placeholder, never an error."""
        log, stream = logger
        log.handlers[0].addFilter(ContextFilter(placeholder="none"))
        log.handlers[0].setFormatter(logging.Formatter("%(request_id)s %(trace_id)s %(message)s"))
        log.warning("bare")
        assert ["none none bare"] == lines(stream)

    def test_extra_keys_from_another_store(
        self, logger: tuple[logging.Logger, io.StringIO], store: tl.ContextStore
    ) -> None:
        """Records can show keys of the store the filter reads, by name."""
        log, stream = logger
        log.handlers[0].addFilter(ContextFilter(store=store.name, keys=("tenant",)))
        log.handlers[0].setFormatter(logging.Formatter("%(tenant)s %(request_id)s"))
        with store.scope(tenant="acme"):
            log.info("x")
        assert ["acme -"] == lines(stream)

    def test_keys_with_install(
        self, logger: tuple[logging.Logger, io.StringIO], store: tl.ContextStore
    ) -> None:
        """install() set the ids already: a filter's own keys are still added."""
        log, stream = logger
        log.handlers[0].addFilter(ContextFilter(store=store, keys=["tenant", "plan"]))
        log.handlers[0].setFormatter(logging.Formatter("%(tenant)s %(plan)s %(request_id)s %(m)s"))
        install()
        try:
            with tl.request.scope(request_id="i1"), store.scope(tenant="acme"):
                log.info("x", extra={"plan": "own", "m": "x"})
        finally:
            uninstall()
        assert ["acme own i1 x"] == lines(stream)

    @pytest.mark.parametrize("keys", ["tenant", b"tenant", ["tenant", 5], {"tenant": 1}, 5])
    def test_keys_must_be_a_list_of_names(self, keys: object) -> None:
        """keys="tenant" is a TypeError naming the option, not seven one-letter keys."""
        with pytest.raises(TypeError, match=r"^keys takes"):
            ContextFilter(keys=keys)  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("options", "named"),
        [({"placeholder": None}, "placeholder"), ({"store": 5}, "store")],
    )
    def test_wrong_types_are_named(self, options: dict[str, object], named: str) -> None:
        """A placeholder or store of the wrong type is a TypeError naming it, at set-up."""
        with pytest.raises(TypeError, match=rf"^{named} takes"):
            ContextFilter(**options)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=rf"^{named} takes"):
            JSONFormatter(**options)  # type: ignore[arg-type]

    def test_unknown_store_name_is_a_clear_error(self) -> None:
        """Naming a store that does not exist fails at configuration, naming it."""
        with pytest.raises(ValueError, match="'nope'"):
            ContextFilter(store="nope")

    def test_dict_config(self) -> None:
        """The filter and the formatter are usable from logging.config.dictConfig."""
        stream = io.StringIO()
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "filters": {"ids": {"()": "threadline.logging.ContextFilter"}},
                "formatters": {"json": {"()": "threadline.logging.JSONFormatter"}},
                "handlers": {
                    "mem": {
                        "class": "logging.StreamHandler",
                        "stream": stream,
                        "filters": ["ids"],
                        "formatter": "json",
                    }
                },
                "loggers": {"dictconfig.test": {"handlers": ["mem"], "propagate": False}},
            }
        )
        log = logging.getLogger("dictconfig.test")
        log.setLevel(logging.INFO)
        with tl.request.scope(request_id="dc"):
            log.info("configured")
        record = json.loads(stream.getvalue())
        assert ("dc", "configured") == (record["request_id"], record["message"])

    def test_values_from_outside_cannot_forge_lines(
        self, logger: tuple[logging.Logger, io.StringIO]
    ) -> None:
        """A store value with CR/LF or other controls is escaped on the record."""
        log, stream = logger
        log.handlers[0].addFilter(ContextFilter())
        log.handlers[0].setFormatter(logging.Formatter("%(message)s %(user_id)s"))
        with tl.extract({"baggage": "request.user_id=evil%0D%0Aforged%1B;tl"}):
            log.info("hello")
        assert ["hello evil\\r\\nforged\\x1b"] == lines(stream)


class TestJSONFormatter:
    def test_one_object_per_line(
        self, logger: tuple[logging.Logger, io.StringIO], tracer: trace.Tracer
    ) -> None:
        """Each record is one JSON object with the fields, extras and the exception."""
        log, stream = logger
        log.handlers[0].setFormatter(JSONFormatter())
        with tl.request.scope(request_id="r2", user_id=7), tracer.start_as_current_span("s") as s:
            try:
                raise ValueError("boom")  # noqa: TRY301 - a real exc_info for the record
            except ValueError:
                log.exception("failed %s", "here", extra={"order": 5, "obj": object()})
        record = json.loads(lines(stream)[0])
        assert "failed here" == record["message"]
        assert "ERROR" == record["level"]
        assert ("r2", 7) == (record["request_id"], record["user_id"])
        assert f"{s.get_span_context().trace_id:032x}" == record["trace_id"]
        assert 5 == record["order"]
        assert record["obj"].startswith("<object")
        assert "ValueError: boom" in record["exception"]
        assert record["time"].endswith("Z")

    def test_one_line_whatever_the_values(self, logger: tuple[logging.Logger, io.StringIO]) -> None:
        """DEL, C1 controls, line separators and lone surrogates are JSON escapes."""
        log, stream = logger
        log.handlers[0].setFormatter(JSONFormatter())
        log.info("a\x7f\x85\u2028b", extra={"surrogate": "\udc80"})
        (line,) = stream.getvalue().splitlines()
        assert ("a\x7f\x85\u2028b", "\udc80") == (
            json.loads(line)["message"],
            json.loads(line)["surrogate"],
        )
        line.encode()

    def test_mappings_and_lists_are_json(
        self, logger: tuple[logging.Logger, io.StringIO], store: tl.ContextStore
    ) -> None:
        """A store value's dict is a JSON object and its list an array, escaped as any value."""
        log, stream = logger
        log.handlers[0].addFilter(ContextFilter(store=store, keys=["limits", "tags"]))
        log.handlers[0].setFormatter(JSONFormatter())
        with store.scope(limits={"rps": 10, "note": "a\u2028b\nc"}, tags=["x", {"y": 1}]):
            log.info("m", extra={"own": {1: "one", (2, 3): "pair"}})
        (line,) = stream.getvalue().splitlines()
        record = json.loads(line)
        # a store value's strings are escaped at any depth, as every value from outside is
        assert {"rps": 10, "note": "a\\u2028b\\nc"} == record["limits"]
        assert ["x", {"y": 1}] == record["tags"]
        assert {"1": "one", "(2, 3)": "pair"} == record["own"]
        assert "\u2028" not in line

    def test_a_user_id_from_baggage_is_escaped_at_any_depth(
        self, logger: tuple[logging.Logger, io.StringIO]
    ) -> None:
        """A JSON user id that came in as baggage: no control character reaches the line's value."""
        log, stream = logger
        log.handlers[0].setFormatter(JSONFormatter())
        snapshot = tl.extract(
            {
                "baggage": "request.request_id=r1;tl,"
                "request.user_id=%7B%22k%22%3A%5B%22a%5Cnb%5Cu001b%22%5D%7D;tl=json"
            }
        )
        with snapshot:
            log.info("m")
        record = json.loads(stream.getvalue())
        assert {"k": ["a\\nb\\x1b"]} == record["user_id"]

    def test_not_a_number_is_still_json(
        self, logger: tuple[logging.Logger, io.StringIO], store: tl.ContextStore
    ) -> None:
        """NaN and infinities, which JSON cannot hold, are written as text: the line stays JSON."""
        log, stream = logger
        log.handlers[0].setFormatter(JSONFormatter())
        log.info("m", extra={"ratio": float("nan"), "limits": {"max": float("inf")}})
        (line,) = stream.getvalue().splitlines()
        record = json.loads(line, parse_constant=lambda name: pytest.fail(f"{name} in {line}"))
        assert "nan" == record["ratio"]
        assert {"max": "inf"} == record["limits"]

    def test_outside_scope(self, logger: tuple[logging.Logger, io.StringIO]) -> None:
        """Without filter, scope or span, the fields are placeholders."""
        log, stream = logger
        log.handlers[0].setFormatter(JSONFormatter())
        log.info("plain")
        record = json.loads(lines(stream)[0])
        assert ["-"] * 4 == [record[f] for f in ("request_id", "user_id", "trace_id", "span_id")]


class TestInstall:
    def test_every_record_gets_fields_where_it_is_made(
        self, logger: tuple[logging.Logger, io.StringIO]
    ) -> None:
        """After install(), records carry the ids of the code that made them, on any handler."""
        log, stream = logger
        log.handlers[0].setFormatter(logging.Formatter("%(request_id)s"))
        install()
        try:
            with tl.request.scope(request_id="inst"):
                record = log.makeRecord(log.name, logging.INFO, "f", 1, "m", None, None)
            log.handle(record)  # handled later, outside the scope: the ids stay
        finally:
            uninstall()
        assert ["inst"] == lines(stream)
        assert not hasattr(
            log.makeRecord(log.name, logging.INFO, "f", 1, "m", None, None), "request_id"
        )

    def test_threads_log_their_request(self, logger: tuple[logging.Logger, io.StringIO]) -> None:
        """Log lines written in pool threads carry the submitting request's id."""
        log, stream = logger
        log.handlers[0].addFilter(ContextFilter())
        log.handlers[0].setFormatter(logging.Formatter("%(request_id)s %(message)s"))
        with tl.ThreadPoolExecutor(max_workers=2) as pool:
            for i in range(10):
                with tl.request.scope(request_id=f"r{i}"):
                    pool.submit(log.info, "job %s", i)
        assert sorted(f"r{i} job {i}" for i in range(10)) == sorted(lines(stream))


WORKERS_APP = textwrap.dedent(
    """
    import logging, sys
    import threadline as tl
    from threadline import processes
    from threadline.logging import install

    def work(kind):
        logging.getLogger("app.worker").info("%s logged", kind)
        logging.getLogger("app.worker").debug("%s debug, below the parent's level", kind)

    if __name__ == "__main__":
        logging.basicConfig(
            level=logging.INFO, format="%(levelname)s %(name)s request=%(request_id)s %(message)s"
        )
        install()
        ctx = processes.get_context(sys.argv[1])
        with tl.request.scope(request_id="r-7"):
            with ctx.ProcessPoolExecutor(1) as pool:
                pool.submit(work, "executor").result()
            with ctx.Pool(1) as pool:
                pool.apply(work, ("pool",))
            child = ctx.Process(target=work, args=("process",))
            child.start()
            child.join()
    """
)


@pytest.mark.parametrize("method", ["spawn", "forkserver", "fork"])
def test_workers_log_as_the_parent_set_up(method: str, tmp_path: Path) -> None:
    """Worker records at INFO reach the parent's handlers, with the request id, no initializer."""
    (tmp_path / "app.py").write_text(WORKERS_APP)
    result = subprocess.run(
        [sys.executable, "app.py", method],
        check=False,
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert 0 == result.returncode, result.stderr
    expected = [
        f"INFO app.worker request=r-7 {kind} logged" for kind in ("executor", "pool", "process")
    ]
    assert expected == result.stderr.splitlines()
