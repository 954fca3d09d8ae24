"""The carrier: W3C Trace Context and Baggage, store values, strictness and limits."""

from __future__ import annotations

import json
import logging
import string
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

import threadline as tl
from threadline import diagnostics
from threadline._core import context as core_context
from threadline._wire import baggage as baggage_codec
from threadline._wire import carrier as carrier_codec
from threadline._wire import tracecontext

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
SPAN_ID = "b7ad6b7169203331"
VALID = f"00-{TRACE_ID}-{SPAN_ID}-01"


def span_context_of(snap: tl.Snapshot) -> SpanContext:
    return trace.get_current_span(snap.context).get_span_context()


def remote_parent(flags: int = 1, state: TraceState | None = None) -> trace.Span:
    return NonRecordingSpan(
        SpanContext(
            int(TRACE_ID, 16),
            int(SPAN_ID, 16),
            is_remote=True,
            trace_flags=TraceFlags(flags),
            trace_state=state or TraceState(),
        )
    )


class TestTraceparent:
    def test_valid_is_extracted(self) -> None:
        """A valid traceparent becomes the remote parent span context."""
        sc = span_context_of(tl.extract({"traceparent": VALID}))
        assert (int(TRACE_ID, 16), int(SPAN_ID, 16), True, 1) == (
            sc.trace_id,
            sc.span_id,
            sc.is_remote,
            sc.trace_flags,
        )

    def test_round_trip(self) -> None:
        """inject writes back exactly what extract read."""
        carrier: dict[str, str] = {}
        tl.inject(carrier, tl.extract({"traceparent": VALID}).context)
        assert {"traceparent": VALID} == carrier

    @pytest.mark.parametrize(
        ("header", "expected_flags"),
        [
            (f"00-{TRACE_ID}-{SPAN_ID}-00", 0),
            (f"00-{TRACE_ID}-{SPAN_ID}-03", 3),
            (f"00-{TRACE_ID}-{SPAN_ID}-ff", 3),  # unknown flags are not kept
            (f" \t{VALID} \t", 1),  # optional whitespace around the value
            (f"01-{TRACE_ID}-{SPAN_ID}-01", 1),  # a later version, same layout
            (f"cc-{TRACE_ID}-{SPAN_ID}-01-what-the-future-will-be-like", 1),
        ],
    )
    def test_accepted(self, header: str, expected_flags: int) -> None:
        """Flags, whitespace and future versions are read as Trace Context Level 2 says."""
        sc = span_context_of(tl.extract({"traceparent": header}))
        assert sc.is_valid
        assert expected_flags == sc.trace_flags

    @pytest.mark.parametrize(
        "header",
        [
            "",
            "garbage",
            f"ff-{TRACE_ID}-{SPAN_ID}-01",  # forbidden version
            f"00-{TRACE_ID}-{SPAN_ID}-01-extra",  # version 00 has four fields
            f"cc-{TRACE_ID}-{SPAN_ID}-01.extra",  # future version: a '-' must follow
            f"00-{'0' * 32}-{SPAN_ID}-01",  # all-zero trace id
            f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero parent id
            f"00-{TRACE_ID.upper()}-{SPAN_ID}-01",  # upper case
            f"00-{TRACE_ID}-{SPAN_ID.upper()}-01",
            f"0-{TRACE_ID}-{SPAN_ID}-01",
            f"00-{TRACE_ID[:-1]}-{SPAN_ID}-01",
            f"00-{TRACE_ID}-{SPAN_ID}-1",
            f"00-{TRACE_ID}-{SPAN_ID}-0g",
            f"00_{TRACE_ID}_{SPAN_ID}_01",
            f"00-{TRACE_ID}-{SPAN_ID}-01\x00",
        ],
    )
    def test_invalid_is_dropped_and_counted(
        self, header: str, threadline_warnings: pytest.LogCaptureFixture
    ) -> None:
        """An invalid traceparent yields no parent, a counter and a warning, never an exception."""
        snap = tl.extract({"traceparent": header, "tracestate": "a=b"})
        assert not span_context_of(snap).is_valid
        assert {"traceparent.invalid": 1} == diagnostics.drop_counts()
        assert "traceparent.invalid" in threadline_warnings.text

    @pytest.mark.parametrize(
        ("field", "value", "limit"),
        [
            ("traceparent", VALID + " " * 120 * 1024, 512),
            ("tracestate", "a=b," + " " * 8189, 8192),
            ("baggage", "k=v," + " " * 8189, 8192),
        ],
    )
    def test_a_field_over_its_limit_is_not_read(self, field: str, value: str, limit: int) -> None:
        """extract() applies the field limits every carrier has: over them, dropped unread."""
        carrier = {"traceparent": VALID, field: value}
        assert len(value) > limit
        snap = tl.extract(carrier)
        assert (field == "traceparent") is not span_context_of(snap).is_valid
        assert {} == dict(baggage.get_all(snap.context))
        assert {f"{field}.too_large": 1} == diagnostics.drop_counts()
        assert span_context_of(tl.extract({"traceparent": VALID + " " * 400})).is_valid

    def test_duplicate_is_dropped(self) -> None:
        """Two traceparent values (repeated header, or two spellings of the name) are invalid."""
        for carrier in (
            {"traceparent": [VALID, VALID]},
            {"traceparent": VALID, "Traceparent": VALID},
        ):
            assert not span_context_of(tl.extract(carrier)).is_valid
        assert {"traceparent.duplicate": 2} == diagnostics.drop_counts()

    def test_names_match_case_insensitively(self) -> None:
        """HTTP header names are case-insensitive."""
        assert span_context_of(tl.extract({"TraceParent": VALID})).is_valid

    def test_inject_without_span_writes_nothing(self) -> None:
        """No valid span, no traceparent."""
        carrier: dict[str, str] = {}
        tl.inject(carrier)
        assert {} == carrier


class TestTracestate:
    def extract_state(self, *headers: str) -> TraceState:
        return span_context_of(
            tl.extract({"traceparent": VALID, "tracestate": list(headers)})
        ).trace_state

    def test_members_kept_in_order(self) -> None:
        """Valid members, multi-tenant keys and repeated headers are combined in order."""
        state = self.extract_state("foo=1,tenant@sys=x y", " , bar=2 ")
        assert [("foo", "1"), ("tenant@sys", "x y"), ("bar", "2")] == list(state.items())

    def test_round_trip(self) -> None:
        """tracestate goes back out as it came in."""
        carrier: dict[str, str] = {}
        tl.inject(carrier, tl.extract({"traceparent": VALID, "tracestate": "a=1,b=2"}).context)
        assert "a=1,b=2" == carrier["tracestate"]

    def test_32_members_allowed(self) -> None:
        """Thirty-two members is the limit, and allowed."""
        header = ",".join(f"k{i}=v" for i in range(32))
        assert 32 == len(self.extract_state(header))

    @pytest.mark.parametrize(
        ("header", "members"),
        [
            ("foo@=1,bar=2", [("foo@", "1"), ("bar", "2")]),
            ("foo@@bar=1,foo@bar@baz=2", [("foo@@bar", "1"), ("foo@bar@baz", "2")]),
            ("1a=1", [("1a", "1")]),  # a key may start with a digit
            ("t@" + "v" * 15 + "=1", [("t@" + "v" * 15, "1")]),  # no 14-character tenant rule
            ("t" * 241 + "@" + "v" * 14 + "=1", [("t" * 241 + "@" + "v" * 14, "1")]),
            ("z" * 256 + "=1", [("z" * 256, "1")]),  # 256 characters is the limit, and allowed
        ],
    )
    def test_current_key_grammar(self, header: str, members: list[tuple[str, str]]) -> None:
        """Keys follow the Editor's Draft: ( lcalpha / DIGIT ) 0*255 ( keychar ), '@' anywhere."""
        assert members == list(self.extract_state(header).items())
        carrier: dict[str, str] = {}
        tl.inject(carrier, tl.extract({"traceparent": VALID, "tracestate": header}).context)
        assert header == carrier["tracestate"]

    @pytest.mark.parametrize(
        ("headers", "members"),
        [
            (["foo=1,foo=2"], [("foo", "1")]),
            (["foo=1", "foo=1"], [("foo", "1")]),
            (["a=1,foo=x,b=2,foo=y"], [("a", "1"), ("foo", "x"), ("b", "2")]),
        ],
    )
    def test_duplicated_keys_are_inherited(
        self, headers: list[str], members: list[tuple[str, str]]
    ) -> None:
        """A duplicated key keeps its first member; the tracestate is inherited, not dropped."""
        assert members == list(self.extract_state(*headers).items())
        assert {} == diagnostics.drop_counts()

    @pytest.mark.parametrize(
        "header",
        [
            ",".join(f"k{i}=v" for i in range(33)),  # over 32 members
            ",".join(f"k{i % 16}=v" for i in range(33)),  # over 32 members, duplicates counted
            "A=1",  # upper-case key
            "@foo=1,bar=2",  # a key starts with a letter or a digit
            "foo.bar=1",  # '.' is no keychar
            "a=",  # empty value
            "a=x=y",  # '=' in the value
            "a=x\ty",  # a tab inside the value
            "a",  # no '='
            "k" * 257 + "=1",  # key too long
            "a=" + "v" * 257,  # value too long
        ],
    )
    def test_invalid_drops_tracestate_only(self, header: str) -> None:
        """An invalid tracestate is dropped whole; the traceparent still applies."""
        snap = tl.extract({"traceparent": VALID, "tracestate": header})
        sc = span_context_of(snap)
        assert sc.is_valid
        assert 0 == len(sc.trace_state)
        assert {"tracestate.invalid": 1} == diagnostics.drop_counts()

    def test_ignored_without_traceparent(self) -> None:
        """tracestate alone brings nothing."""
        assert not span_context_of(tl.extract({"tracestate": "a=1"})).is_valid


class TestBaggage:
    def test_plain_members_become_otel_baggage(self) -> None:
        """Members from any W3C peer land in OpenTelemetry's baggage, percent-decoded."""
        snap = tl.extract({"baggage": "k1=v1, k2 = a%20b;prop=1;flag,k3=%E2%82%AC"})
        assert {"k1": "v1", "k2": "a b", "k3": "€"} == dict(baggage.get_all(snap.context))

    def test_the_same_baggage_again_reads_the_same_and_each_request_its_own_values(
        self,
    ) -> None:
        """Baggage seen before (kept parsed) reads alike, and plain baggage set on top stays.

        Each extract gets store values of its own (the bleed watch tells requests
        apart by them), and a baggage already in the base context is added to.
        """
        header = "request.tenant=acme;tl,request.user_id=42;tl=json,session=s-1"
        first, again = tl.extract({"baggage": header}), tl.extract({"baggage": header})
        for snap in (first, again):
            assert {"tenant": "acme", "user_id": 42} == tl.request.get(snap.context)
            assert {"session": "s-1"} == dict(baggage.get_all(snap.context))
        assert tl.request.get(first.context) is not tl.request.get(again.context)
        base = baggage.set_baggage("kept", "1")
        on_base = tl.extract({"baggage": header}, base)
        assert {"kept": "1", "session": "s-1"} == dict(baggage.get_all(on_base.context))
        assert {"kept": "1"} == dict(baggage.get_all(base))  # the base is left as it was

    def test_invalid_baggage_is_refused_and_counted_every_time(self) -> None:
        """Bad baggage is never kept parsed: the second time is dropped and counted too."""
        for _ in range(2):
            assert tl.request.get(tl.extract({"baggage": "ok=1,broken"}).context) is None
        assert {"baggage.invalid": 2} == diagnostics.drop_counts()

    def test_kept_parsed_baggage_stays_bounded(self) -> None:
        """Many distinct baggage texts (a client making each unique) keep a bounded cache."""
        for number in range(baggage_codec.PARSED_MAX * 3):
            snap = tl.extract({"baggage": f"request.n={number};tl=json"})
            assert {"n": number} == tl.request.get(snap.context)
            assert len(baggage_codec._parsed) <= baggage_codec.PARSED_MAX
        long = "k=" + "v" * baggage_codec.PARSED_TEXT_MAX
        assert {"k": long[2:]} == dict(baggage.get_all(tl.extract({"baggage": long}).context))
        assert long not in baggage_codec._parsed

    def test_plus_and_space_round_trip(self) -> None:
        """A literal '+' stays a '+', a space travels as %20 (OpenTelemetry's '+' is a space)."""
        ctx = baggage.set_baggage("q", "a+b c")
        carrier: dict[str, str] = {}
        tl.inject(carrier, ctx)
        assert "q=a+b%20c" == carrier["baggage"]
        assert "a+b c" == baggage.get_baggage("q", tl.extract(carrier).context)

    def test_octets_that_are_not_utf8_become_replacement_characters(self) -> None:
        """W3C Baggage 2025: a percent-escape that is not UTF-8 is U+FFFD; nothing is dropped."""
        snap = tl.extract({"baggage": "k=a%ffb%C3,other=1,request.name=caf%C3%A9%E9;tl"})
        assert "a\ufffdb\ufffd" == baggage.get_baggage("k", snap.context)
        assert "1" == baggage.get_baggage("other", snap.context)
        assert {"name": "café\ufffd"} == dict(tl.request.get(snap.context) or {})
        assert {} == diagnostics.drop_counts()

    @pytest.mark.parametrize(
        "header",
        [
            "novalue",  # no '='
            "k=v v",  # space inside a value
            "k=%zz",  # bad escape
        ],
    )
    def test_invalid_is_dropped_whole_before_decoding(self, header: str) -> None:
        """The grammar is checked before the octets: what is outside it still drops it all."""
        snap = tl.extract({"baggage": header + ",k2=%ff"})
        assert {} == dict(baggage.get_all(snap.context))
        assert {"baggage.invalid": 1} == diagnostics.drop_counts()

    @pytest.mark.parametrize(
        "header",
        [
            "novalue",  # no '='
            "k=v v",  # space inside a value
            'k="quoted"',
            "k=back\\slash",
            "k=%zz",  # bad escape
            "k=%",  # dangling escape
            "bad key=v",
            "k=v;bad prop=1",
            "ok=1,broken",  # one bad member drops them all
            "request.id=%22x;tl=json",  # a store member that is not JSON
            "request.n=NaN;tl=json",
            "request.x=1;tl=pickle",  # unknown type
            "nostore=1;tl",  # a store member needs 'store.key'
        ],
    )
    def test_invalid_is_dropped_whole(self, header: str) -> None:
        """Any invalid member drops the whole baggage, so nothing is half-applied."""
        snap = tl.extract({"traceparent": VALID, "baggage": header})
        assert {} == dict(baggage.get_all(snap.context))
        assert tl.request.get(snap.context) is None
        assert span_context_of(snap).is_valid
        assert {"baggage.invalid": 1} == diagnostics.drop_counts()

    def test_size_limit(self) -> None:
        """8192 bytes are accepted; one more drops the baggage."""
        member = "k=" + "v" * 8190
        assert "v" * 8190 == baggage.get_baggage("k", tl.extract({"baggage": member}).context)
        assert baggage.get_baggage("k", tl.extract({"baggage": member + "v"}).context) is None
        assert {"baggage.too_large": 1} == diagnostics.drop_counts()  # as in HTTP headers

    def test_member_limit(self) -> None:
        """180 members are accepted; 181 drop the baggage."""
        ok = ",".join(f"k{i}=v" for i in range(180))
        assert 180 == len(baggage.get_all(tl.extract({"baggage": ok}).context))
        too_many = ok + ",k180=v"
        assert 0 == len(baggage.get_all(tl.extract({"baggage": too_many}).context))

    def test_repeated_headers_combine(self) -> None:
        """Several baggage headers are one list."""
        snap = tl.extract({"baggage": ["a=1", "b=2"]})
        assert {"a": "1", "b": "2"} == dict(baggage.get_all(snap.context))

    def test_outbound_limits_are_a_clear_error(self, store: tl.ContextStore) -> None:
        """Too large for W3C baggage: a ValueError with the sizes, the programmer's to fix."""
        with store.scope(big="x" * 9000), pytest.raises(ValueError, match="8192 bytes"):
            tl.inject({})


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(min_size=1), children, max_size=4)
    ),
    max_leaves=10,
)


def freeze_expected(value: object) -> object:
    if isinstance(value, list):
        return tuple(freeze_expected(v) for v in value)
    if isinstance(value, dict):
        return {k: freeze_expected(v) for k, v in value.items()}
    return value


class TestStoreValues:
    def test_member_form(self) -> None:
        """Store values are members any W3C peer reads: store.key=value with a tl property."""
        carrier: dict[str, str] = {}
        with tl.request.scope(request_id="r 1", user_id=42):
            tl.inject(carrier)
        assert "request.request_id=r%201;tl,request.user_id=42;tl=json" == carrier["baggage"]

    def test_store_unknown_here_arrives_later(self) -> None:
        """Values of a store this process has not made yet are kept, and seen once it is made."""
        snap = tl.extract({"baggage": "laterstore.k=v;tl"})
        later = tl.ContextStore("laterstore")
        assert {"k": "v"} == later.get(snap.context)

    def test_stores_and_plain_baggage_stay_apart(self) -> None:
        """Store members do not show up as plain baggage, and plain baggage not in a store."""
        snap = tl.extract({"baggage": "request.request_id=r1;tl,plain=1"})
        assert {"plain": "1"} == dict(baggage.get_all(snap.context))
        assert {"request_id": "r1"} == tl.request.get(snap.context)

    def test_not_json_is_a_clear_error(self, store: tl.ContextStore) -> None:
        """A value that cannot cross names the store and the key."""
        with store.scope(when=object()), pytest.raises(TypeError, match=rf"{store.name}.*'when'"):
            tl.inject({})

    def test_bad_key_is_a_clear_error(self, store: tl.ContextStore) -> None:
        """A key that is not a baggage token names the store and the key."""
        with store.scope({"with space": 1}), pytest.raises(TypeError, match="'with space'"):
            tl.inject({})

    def test_each_value_is_sent_as_it_is_now(self) -> None:
        """A request's members are encoded once, yet a merged or nested value goes as it is."""
        sent = []
        with tl.request.scope(request_id="r1", user_id=1):
            for _ in range(2):
                carrier: dict[str, str] = {}
                tl.inject(carrier, tl.snapshot().context)
                sent.append(carrier["baggage"])
            with tl.request.merge(user_id=2):
                carrier = {}
                tl.inject(carrier)
                sent.append(carrier["baggage"])
        assert [
            "request.request_id=r1;tl,request.user_id=1;tl=json",
            "request.request_id=r1;tl,request.user_id=1;tl=json",
            "request.request_id=r1;tl,request.user_id=2;tl=json",
        ] == sent

    def test_the_encoded_values_kept_are_bounded(self) -> None:
        """Many requests, one after another: what is kept of their encoding stays bounded."""
        for number in range(3 * carrier_codec.BAGGAGE_TEXTS_MAX):
            with tl.request.scope(request_id=f"r{number}"):
                tl.inject({})
            assert len(carrier_codec._baggage_texts) <= carrier_codec.BAGGAGE_TEXTS_MAX

    def test_exited_store_is_not_sent(self) -> None:
        """A store emptied by exit() sends nothing."""
        carrier: dict[str, str] = {}
        with tl.request.scope(request_id="r1"):
            tl.request.exit(tl.inject, carrier)
        assert {} == carrier


# The property tests (here and at the end) are functions, not methods:
# Hypothesis refuses a test method that a second run of the suite in the same
# process calls on a new instance (HealthCheck.differing_executors).


@settings(max_examples=200, deadline=None)
@given(value=JSON, key=st.text(alphabet=string.ascii_letters + "_-.", min_size=1))
def test_store_values_json_types_round_trip(value: object, key: str) -> None:
    """Every JSON-typed value comes back with its type (lists as tuples, as in-process)."""
    carrier: dict[str, str] = {}
    with tl.request.scope({key: value}):
        tl.inject(carrier)
    assert {key: freeze_expected(value)} == tl.request.get(tl.extract(carrier).context)


class TestSnapshotFromCarrier:
    def test_with_applies_everything_and_restores(self, tracer: trace.Tracer) -> None:
        """Inside `with tl.extract(...)` spans parent on the remote span and stores are set."""
        snap = tl.extract({"traceparent": VALID, "baggage": "request.request_id=r9;tl"})
        with snap:
            assert {"request_id": "r9"} == tl.request.get()
            with tracer.start_as_current_span("child") as span:
                assert int(TRACE_ID, 16) == span.get_span_context().trace_id
        assert tl.request.get() is None
        assert not trace.get_current_span().get_span_context().is_valid

    def test_base_context_is_empty_by_default(self) -> None:
        """The snapshot is the context that arrived, not mixed with the caller's."""
        with tl.request.scope(request_id="local"):
            snap = tl.extract({})
        assert tl.request.get(snap.context) is None

    def test_rate_limited_warning(self, threadline_warnings: pytest.LogCaptureFixture) -> None:
        """Many drops of one kind give one warning but are all counted."""
        for _ in range(50):
            tl.extract({"traceparent": "bad"})
        assert 50 == diagnostics.drop_counts()["traceparent.invalid"]
        warnings = [r for r in threadline_warnings.records if r.levelno == logging.WARNING]
        assert 1 == len(warnings)


class TestCarrierType:
    @pytest.mark.parametrize(
        ("call", "given"),
        [
            (tl.inject, 5),
            (tl.inject, ("traceparent",)),
            (tl.extract, None),
            (tl.extract, "traceparent: 00-..."),
            (tl.inject_env, b"TRACEPARENT"),
            (tl.extract_env, [("TRACEPARENT", VALID)]),
        ],
    )
    def test_a_carrier_that_is_no_mapping_is_named(self, call: Any, given: object) -> None:
        """A carrier of the wrong type is a TypeError naming the call and the type given."""
        name = call.__name__
        with pytest.raises(
            TypeError, match=rf"{name}\(\) takes a mapping .* got {type(given).__name__}"
        ):
            call(given)

    def test_mappings_that_are_not_dicts_work(self) -> None:
        """Any mapping with the methods used serves: read-only for extract, writable for inject."""
        carrier = CIMultiDict[str]()
        with tl.request.scope(request_id="r1"):
            tl.inject(carrier)
        read_only = MappingProxyType(dict(carrier))
        assert {"request_id": "r1"} == tl.request.get(tl.extract(read_only).context)


class TestEnvCarrier:
    def test_round_trip_with_env_names(self) -> None:
        """inject_env writes OpenTelemetry's env-carrier names; extract_env reads them."""
        env: dict[str, str] = {"PATH": "/bin"}
        with tl.extract({"traceparent": VALID}), tl.request.scope(request_id="r1"):
            tl.inject_env(env)
        assert VALID == env["TRACEPARENT"]
        assert "request.request_id=r1;tl" == env["BAGGAGE"]
        snap = tl.extract_env(env)
        assert {"request_id": "r1"} == tl.request.get(snap.context)
        assert span_context_of(snap).is_valid

    def test_stale_fields_removed(self) -> None:
        """A child never inherits a trace this process only had in its own environment."""
        env = {"TRACEPARENT": VALID, "TRACESTATE": "a=1", "BAGGAGE": "a=1"}
        tl.inject_env(env)
        assert {} == env

    def test_reads_os_environ_by_default(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """extract_env() reads the process environment."""
        monkeypatch.setenv("TRACEPARENT", VALID)
        assert span_context_of(tl.extract_env()).is_valid

    def test_lower_case_names_are_not_env_names(self) -> None:
        """Environment names are exact: OpenTelemetry's carrier uses upper case."""
        assert not span_context_of(tl.extract_env({"traceparent": VALID})).is_valid


def test_tracestate_injected_from_span() -> None:
    """A span's tracestate goes out beside its traceparent."""
    ctx = trace.set_span_in_context(remote_parent(state=TraceState([("v", "1")])))
    carrier: dict[str, str] = {}
    tl.inject(carrier, ctx)
    assert "v=1" == carrier["tracestate"]


@settings(max_examples=300, deadline=None)
@given(
    traceparent=st.text(max_size=80) | st.from_regex(r"[0-9a-fA-F-]{50,60}", fullmatch=True),
    tracestate=st.text(max_size=80),
    baggage_header=st.text(max_size=200)
    | st.from_regex(r"([a-z.]{1,5}=[%0-9a-zA-Z+]{0,6}(;tl(=json)?)?,?){1,5}", fullmatch=True),
)
def test_fuzz_extract_never_raises(traceparent: str, tracestate: str, baggage_header: str) -> None:
    """Whatever arrives, extract returns; a traceparent it does not take is counted, not raised."""
    diagnostics.reset_drop_counts()
    snap = tl.extract(
        {"traceparent": traceparent, "tracestate": tracestate, "baggage": baggage_header}
    )
    parent = span_context_of(snap)
    if parent.is_valid:
        assert f"-{parent.trace_id:032x}-{parent.span_id:016x}-" in traceparent.lower()
    else:
        assert "traceparent.invalid" in diagnostics.drop_counts()


def _read_baggage(reader: Any, text: str) -> object:
    try:
        return reader(text)
    except baggage_codec.BaggageError:
        return "refused"


@settings(max_examples=500, deadline=None)
@given(
    text=st.from_regex(
        r"([a-z._%-]{1,6}=([!#-+\--:<-\[\]-~]|%[0-9a-fA-F]{2}|%.?){0,8}(;tl(=json)?)?,){1,6}",
        fullmatch=True,
    ).map(lambda text: text[:-1])
)
def test_fuzz_the_fast_baggage_reader_agrees_with_the_member_reader(text: str) -> None:
    """Baggage shaped as encoders write it is read by one check, then split: same result."""
    if baggage_codec._PLAIN_SHAPE.fullmatch(text):
        fast = _read_baggage(baggage_codec._parse_plain_shape, text)
        assert _read_baggage(baggage_codec._parse_members, text) == fast
    else:  # what the shape refuses is read member by member, as before
        assert _read_baggage(baggage_codec._parse, text) == _read_baggage(
            baggage_codec._parse_members, text
        )


def test_every_store_key_of_a_large_store_crosses() -> None:
    """150 keys (4 kB of baggage), strings and JSON, percent-encoded or not, all arrive."""
    store = tl.ContextStore("wide")
    values: dict[str, Any] = {f"k{n}": f"v {n}%,;é" if n % 3 else [n, {"n": n}] for n in range(150)}
    with store.scope(**values):
        carrier: dict[str, str] = {}
        tl.inject(carrier)
    with tl.extract(carrier):
        got = store.get()
    assert got is not None
    assert values == {key: _thawed(value) for key, value in got.items()}


def _thawed(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_thawed(one) for one in value]
    if isinstance(value, baggage_codec.FrozenMapping):
        return {key: _thawed(one) for key, one in value.items()}
    return value


@settings(max_examples=200, deadline=None)
@given(value=st.text(), key=st.from_regex(r"[A-Za-z0-9_\-*]{1,20}", fullmatch=True))
def test_fuzz_plain_baggage_round_trips(value: str, key: str) -> None:
    """Any Unicode text survives as an OpenTelemetry baggage value."""
    carrier: dict[str, str] = {}
    tl.inject(carrier, baggage.set_baggage(key, value))
    assert value == baggage.get_baggage(key, tl.extract(carrier).context)


@settings(max_examples=300, deadline=None)
@given(octets=st.binary(max_size=60), key=st.from_regex(r"[A-Za-z0-9_\-*]{1,20}", fullmatch=True))
def test_fuzz_any_octets_decode_as_utf8_with_replacement(octets: bytes, key: str) -> None:
    """Any percent-encoded octets are read as UTF-8, each invalid sequence as U+FFFD."""
    diagnostics.reset_drop_counts()
    encoded = "".join(f"%{octet:02X}" for octet in octets)
    snap = tl.extract({"baggage": f"{key}={encoded},after=1"})
    assert octets.decode("utf-8", "replace") == baggage.get_baggage(key, snap.context)
    assert "1" == baggage.get_baggage("after", snap.context)
    assert {} == diagnostics.drop_counts()


# --------------------------------------------------------------------------- hostile input

HOSTILE_STORE_VALUES = [
    "[" * 4000 + "]" * 4000,  # RecursionError in a recursive JSON decoder
    "[" * 2000 + '{"a":1}' + "]" * 2000,
    '{"":1}',  # an empty key: no store key may be empty
    '{"a":{"":1}}',
    "1e400",  # out of range: an infinity, which is not JSON
    "-1e999",
    "[1e400]",
    "NaN",
    "-Infinity",
    '"\\ud800"',  # a lone surrogate: not UTF-8 text
    '{"\\udc80":1}',
]


def store_member(value: str) -> str:
    return "request.x=" + baggage_value(value) + ";tl=json"


def baggage_value(text: str) -> str:
    from threadline._wire.baggage import encode_value

    return encode_value(text)


class TestHostileStoreValues:
    @pytest.mark.parametrize("value", HOSTILE_STORE_VALUES)
    def test_dropped_whole_never_raised(self, value: str) -> None:
        """Deep nesting, bad keys, infinities and lone surrogates drop the baggage, counted."""
        header = "plain=1," + store_member(value)
        snap = tl.extract({"traceparent": VALID, "baggage": header})
        assert ({}, None) == (dict(baggage.get_all(snap.context)), tl.request.get(snap.context))
        assert span_context_of(snap).is_valid
        assert {"baggage.invalid": 1} == diagnostics.drop_counts()

    @pytest.mark.parametrize("value", HOSTILE_STORE_VALUES)
    def test_env_carrier_keeps_the_trace(self, value: str) -> None:
        """extract_env drops the bad baggage and keeps the valid traceparent."""
        snap = tl.extract_env({"TRACEPARENT": VALID, "BAGGAGE": store_member(value)})
        assert tl.request.get(snap.context) is None
        assert span_context_of(snap).is_valid

    def test_depth_limit(self) -> None:
        """32 levels of nesting are accepted; 33 are dropped."""
        ok = "[" * 32 + "]" * 32
        assert 1 == len(tl.request.get(tl.extract({"baggage": store_member(ok)}).context) or {})
        too_deep = "[" * 33 + "]" * 33
        assert tl.request.get(tl.extract({"baggage": store_member(too_deep)}).context) is None

    def test_brackets_inside_strings_are_not_nesting(self) -> None:
        """Brackets in JSON strings do not count towards the depth."""
        value = json.dumps(["[" * 100, {"k": "{" * 100}])
        got = tl.request.get(tl.extract({"baggage": store_member(value)}).context)
        assert {"x": ("[" * 100, {"k": "{" * 100})} == got

    def test_large_finite_numbers_are_kept(self) -> None:
        """Finite floats and big integers are valid JSON and cross."""
        value = "[1e308,-2.5e-300,123456789012345678901234567890]"
        got = tl.request.get(tl.extract({"baggage": store_member(value)}).context)
        assert {"x": (1e308, -2.5e-300, 123456789012345678901234567890)} == got


ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=20,
)
DEEP_JSON = st.integers(min_value=1, max_value=3000).map(lambda n: "[" * n + "]" * n)
ANY_TEXT = st.text(max_size=300) | st.binary(max_size=100).map(lambda b: b.decode("latin-1"))


def dropped_or_applied(snap: tl.Snapshot) -> None:
    """The baggage was applied whole, or dropped whole and counted."""
    value = tl.request.get(snap.context)
    if "baggage.invalid" in diagnostics.drop_counts():
        assert value is None
        assert {} == dict(baggage.get_all(snap.context))


@settings(max_examples=200, deadline=None)
@given(value=ANY_JSON)
def test_fuzz_any_json_store_value(value: object) -> None:
    """Any JSON structure, even one with NaN or empty keys, is applied whole or dropped whole."""
    diagnostics.reset_drop_counts()
    text = json.dumps(value)
    snap = tl.extract({"traceparent": VALID, "baggage": store_member(text)[:8192]})
    dropped_or_applied(snap)
    assert span_context_of(snap).is_valid


@settings(max_examples=100, deadline=None)
@given(text=DEEP_JSON | ANY_TEXT)
def test_fuzz_any_text_as_store_value(text: str) -> None:
    """Any text after 'tl=json', deeply nested or not JSON at all, never raises."""
    diagnostics.reset_drop_counts()
    for carrier in (
        {"traceparent": VALID, "baggage": store_member(text)[:8192]},
        {"traceparent": VALID, "baggage": f"request.x={text};tl=json"},
    ):
        snap = tl.extract(carrier)
        dropped_or_applied(snap)
        assert span_context_of(snap).is_valid


@settings(max_examples=200, deadline=None)
@given(fields=st.dictionaries(st.sampled_from(["TRACEPARENT", "TRACESTATE", "BAGGAGE"]), ANY_TEXT))
def test_fuzz_env_carrier_never_raises(fields: dict[str, str]) -> None:
    """Whatever the environment holds, extract_env returns a snapshot."""
    diagnostics.reset_drop_counts()
    dropped_or_applied(tl.extract_env(fields))


@settings(max_examples=200, deadline=None)
@given(
    headers=st.dictionaries(
        st.sampled_from(["traceparent", "Traceparent", "tracestate", "baggage", "BAGGAGE"]),
        ANY_TEXT | st.lists(ANY_TEXT, max_size=3),
    )
)
def test_fuzz_header_dict_never_raises(headers: dict[str, str | list[str]]) -> None:
    """Any header values, repeated or not, give a snapshot: applied whole or dropped whole."""
    diagnostics.reset_drop_counts()
    dropped_or_applied(tl.extract(headers))


INBOUND_AT_THE_LIMITS = {
    "180 members": ",".join(f"k{i}=v" for i in range(180)),
    "one member of 8 KB": "k=" + "v" * 8190,
    "a foreign store member of 8 KB": "request.big=" + "v" * 8170 + ";tl",
}


class TestWhatCameInCanGoOn:
    @pytest.mark.parametrize("inbound", INBOUND_AT_THE_LIMITS.values(), ids=INBOUND_AT_THE_LIMITS)
    def test_own_values_go_on_foreign_ones_make_room(self, inbound: str) -> None:
        """Accepted inbound baggage plus the request's own values: foreign members are dropped."""
        with tl.extract({"traceparent": VALID, "baggage": inbound}), tl.request.merge(id="own"):
            carrier: dict[str, str] = {}
            tl.inject(carrier)
        members = carrier["baggage"].split(",")
        assert "request.id=own;tl" in members
        assert len(members) <= 180
        assert len(carrier["baggage"]) <= 8192
        assert 1 == diagnostics.drop_counts()["baggage.outbound_trimmed"]

    def test_largest_foreign_members_go_first(self) -> None:
        """Foreign members are dropped largest first; the rest still travel."""
        inbound = "small=1,big=" + "v" * 8000 + ",mid=" + "v" * 100
        with tl.extract({"baggage": inbound}), tl.request.merge(id="x" * 100):
            carrier: dict[str, str] = {}
            tl.inject(carrier)
        assert ["small", "mid", "request.id"] == [
            m.split("=", 1)[0] for m in carrier["baggage"].split(",")
        ]

    def test_a_foreign_value_overridden_here_is_own(self) -> None:
        """A key this process set again is its own, even if it first came from outside."""
        inbound = "request.id=" + "v" * 8170 + ";tl"
        with tl.extract({"baggage": inbound}), tl.request.merge(id="y" * 8180, more=1):
            with pytest.raises(ValueError, match="8192 bytes"):
                tl.inject({})

    def test_env_carrier_and_subprocess(self) -> None:
        """inject_env makes room the same way, so a child can always be started."""
        with (
            tl.extract({"baggage": INBOUND_AT_THE_LIMITS["180 members"]}),
            tl.request.merge(id="e"),
        ):
            env: dict[str, str] = {}
            tl.inject_env(env)
        assert "request.id=e;tl" in env["BAGGAGE"].split(",")


@pytest.mark.parametrize(
    "value", [b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", None, 42]
)
def test_a_field_that_is_not_text_is_dropped(value: object) -> None:
    """A carrier value that is not text (bytes from a raw server, None) is dropped, counted."""
    snap = tl.extract({"traceparent": value, "baggage": "a=1"})  # type: ignore[dict-item]
    assert not span_context_of(snap).is_valid
    assert {"traceparent.not_text": 1} == diagnostics.drop_counts()


@given(
    traceparent=st.from_regex(r"[0f]0-[0-9a-fA-F]{32}-[0-9a-fA-F]{16}-[0-9a-f]{2}", fullmatch=True)
    | st.from_regex(r"00-0{32}-[0-9a-f]{16}-01|00-[0-9a-f]{32}-0{16}-01", fullmatch=True)
    | st.text(alphabet="0123456789abcdefABCDEF- \t\n", min_size=50, max_size=60)
)
def test_fuzz_the_common_traceparent_reads_as_the_general_grammar(traceparent: str) -> None:
    """The fast way for a plain version-00 traceparent decides exactly as the full grammar does."""
    assert tracecontext._parse_any(traceparent) == tracecontext.parse_traceparent(traceparent)


@settings(max_examples=300, deadline=None)
@given(
    trace_id=st.integers(1, 2**128 - 1),
    span_id=st.integers(1, 2**64 - 1),
    flags=st.integers(0, 255),
    direct=st.booleans(),
)
def test_an_extracted_span_context_is_the_public_constructors(
    trace_id: int, span_id: int, flags: int, direct: bool
) -> None:
    """Made directly or by the constructor, it is what `SpanContext(...)` makes."""
    header = f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(carrier_codec, "_DIRECT_SPAN_CONTEXT", direct)
        got = span_context_of(tl.extract({"traceparent": header}))
    expected = SpanContext(trace_id, span_id, True, TraceFlags(flags & 3), TraceState())
    assert type(got) is SpanContext
    assert got == expected
    read = (got.trace_id, got.span_id, got.is_remote, got.trace_flags, got.is_valid)
    assert read == (trace_id, span_id, True, flags & 3, True)
    assert got.trace_state == TraceState()
    assert trace.NonRecordingSpan(got).get_span_context() is got


class TestOpenTelemetryLayout:
    """What the extract path assumes of the installed opentelemetry-api, checked so an upgrade
    that changes it fails here, not in a user's trace."""

    def test_span_contexts_are_made_as_the_installed_api_lays_them_out(self) -> None:
        # False means the API's SpanContext is no longer the tuple of its fields: extract then
        # takes the public constructor (correct, slower); look at _span_context_is_its_fields.
        assert carrier_codec._DIRECT_SPAN_CONTEXT, "SpanContext's layout changed in the API"

    def test_stores_use_the_runtime_context_opentelemetry_uses(self) -> None:
        """threadline reads and sets OpenTelemetry's own ContextVar: each sees the other."""
        runtime = otel_context._RUNTIME_CONTEXT
        if type(runtime) is ContextVarsRuntimeContext:
            variable = runtime._current_context
            assert core_context.get_current == variable.get
            assert core_context.attach == variable.set
        with tl.request.scope(request_id="r1"):
            assert otel_context.get_current() is core_context.get_current()
        token = otel_context.attach(tl.extract({"baggage": "request.request_id=r2;tl"}).context)
        try:
            assert tl.request.get() == {"request_id": "r2"}
        finally:
            otel_context.detach(token)
        assert tl.request.get() is None


_FIELD_NAMES = st.sampled_from(["traceparent", "Traceparent", "tracestate", "baggage", "x-other"])
_FIELD_VALUES = st.sampled_from(
    [VALID, f"00-{TRACE_ID}-{'1' * 16}-00", "vendor=1", "a=1,request.id=r;tl", "bad value"]
)


@settings(max_examples=300, deadline=None)
@given(
    fields=st.dictionaries(
        _FIELD_NAMES,
        _FIELD_VALUES | st.lists(_FIELD_VALUES, max_size=2) | st.sampled_from([None, b"a=1", 42]),
        max_size=5,
    )
)
def test_fuzz_a_dict_carrier_reads_as_any_other_mapping(fields: dict[str, Any]) -> None:
    """The direct reading of a dict decides as the general one: same context, same drops."""
    diagnostics.reset_drop_counts()
    from_dict = tl.extract(fields)
    dict_drops = diagnostics.drop_counts()
    diagnostics.reset_drop_counts()
    from_mapping = tl.extract(MappingProxyType(fields))
    assert diagnostics.drop_counts() == dict_drops
    assert span_context_of(from_dict) == span_context_of(from_mapping)
    assert dict(from_dict.context.items()).keys() == dict(from_mapping.context.items()).keys()
    assert baggage.get_all(from_dict.context) == baggage.get_all(from_mapping.context)
    with from_dict:
        in_dict = tl.request.get()
    with from_mapping:
        assert tl.request.get() == in_dict


_NEAR_TRACEPARENTS = st.sampled_from(
    [
        VALID,
        f"00-{TRACE_ID}-{SPAN_ID}-ff",
        f"00-{'0' * 32}-{SPAN_ID}-01",
        f"00-{TRACE_ID}-{'0' * 16}-01",
    ]
) | st.from_regex(r"0[0-9fF]-[0-9a-fA-F]{31,33}-[0-9a-fA-F]{15,17}-[0-9a-f]{2}", fullmatch=True)
_NEAR_ONE_MEMBERS = st.from_regex(
    r"[A-Za-z0-9_.@-]{0,6}\.?[A-Za-z0-9_.%-]{0,6}=([!#-+\--:<-\[\]-~]|%[0-9a-fA-F]{2}|%.?){0,8}"
    r"(;tl(=json)?|;x)?",
    fullmatch=True,
)


@settings(max_examples=500, deadline=None)
@given(
    parent=st.none() | _NEAR_TRACEPARENTS,
    members=st.none() | _NEAR_ONE_MEMBERS,
    base=st.booleans(),
)
def test_fuzz_the_one_member_reading_agrees_with_the_general_one(
    parent: str | None, members: str | None, base: bool
) -> None:
    """A traceparent and a one-member baggage as `inject` writes them, read at once: same result.

    The dict's direct reading takes a valid version-00 traceparent and a store
    member of plain text by one match each; whatever it does not take goes to
    the general reader, so every carrier decides as through a read-only mapping.
    """
    fields = {
        name: value
        for name, value in (("traceparent", parent), ("baggage", members))
        if value is not None
    }
    on = baggage.set_baggage("kept", "1") if base else None
    diagnostics.reset_drop_counts()
    direct = tl.extract(fields, on)
    direct_drops = diagnostics.drop_counts()
    diagnostics.reset_drop_counts()
    general = tl.extract(MappingProxyType(fields), on)
    assert diagnostics.drop_counts() == direct_drops
    assert span_context_of(direct) == span_context_of(general)
    assert span_context_of(direct).trace_flags == span_context_of(general).trace_flags
    assert dict(direct.context).keys() == dict(general.context).keys()
    assert baggage.get_all(direct.context) == baggage.get_all(general.context)
    for key, value in direct.context.items():
        if isinstance(value, baggage_codec.FrozenMapping):
            other = general.context[key]
            assert (dict(value), value._owner, value._foreign) == (
                dict(other),
                other._owner,
                other._foreign,
            )


@settings(max_examples=500, deadline=None)
@given(text=st.from_regex(r"-?[0-9]{1,30}(\.[0-9]{0,3})?|[0-9٣]{1,3}|0[0-9]{1,3}", fullmatch=True))
def test_fuzz_a_json_integer_is_read_as_the_json_decoder_reads_it(text: str) -> None:
    """A store member's JSON number, digits only or not, decodes as `json.loads` decodes it."""
    try:
        expected: object = json.loads(text)
    except ValueError:
        expected = "refused"
    assert _read_baggage(lambda value: baggage_codec._typed("k", value, "json"), text) == expected
    assert type(expected) is type(
        _read_baggage(lambda value: baggage_codec._typed("k", value, "json"), text)
    )


def test_a_store_member_of_text_alone_arrives_as_the_store_value() -> None:
    """What inject writes for a scope of one id under a span comes back whole, on a base."""
    base = baggage.set_baggage("kept", "1")
    with trace.use_span(remote_parent(flags=1)), tl.request.scope(request_id="r-7"):
        carrier: dict[str, str] = {}
        tl.inject(carrier)
    assert {"traceparent", "baggage"} == carrier.keys()
    snap = tl.extract(carrier, base)
    assert {"request_id": "r-7"} == tl.request.get(snap.context)
    assert {"kept": "1"} == dict(baggage.get_all(snap.context))
    parent = span_context_of(snap)
    assert (int(TRACE_ID, 16), int(SPAN_ID, 16), True) == (
        parent.trace_id,
        parent.span_id,
        parent.is_remote,
    )
    assert parent.trace_flags.sampled
    assert {} == diagnostics.drop_counts()


class TestBaggageEncodedOncePerValues:
    """The baggage text is kept by the store values it is made of, whatever context they are in."""

    def test_spans_of_one_request_write_the_same_baggage_encoded_once(self) -> None:
        """A request's spans change its context, not its stores: the text is encoded once."""
        tracer = trace.get_tracer("test")
        with tl.request.scope(request_id="r1", user_id=7):
            first: dict[str, str] = {}
            tl.inject(first)
            baggage_text = first["baggage"]
            for name in ("a", "b"):
                with tracer.start_as_current_span(name):
                    carrier: dict[str, str] = {}
                    tl.inject(carrier)
                    assert carrier["baggage"] is baggage_text  # the same text, not encoded again
        assert "request.request_id=r1;tl,request.user_id=7;tl=json" == baggage_text

    def test_new_values_or_new_opentelemetry_baggage_are_encoded_anew(self) -> None:
        """Another value of a store, or other plain baggage, is another text."""
        sent = []
        with tl.request.scope(request_id="r1"):
            for ctx in (None, baggage.set_baggage("k", "1"), baggage.set_baggage("k", "2")):
                carrier: dict[str, str] = {}
                tl.inject(carrier, ctx if ctx is not None else tl.snapshot().context)
                sent.append(carrier.get("baggage"))
            with tl.request.merge(request_id="r2"):
                carrier = {}
                tl.inject(carrier)
                sent.append(carrier["baggage"])
        assert [
            "request.request_id=r1;tl",
            "k=1,request.request_id=r1;tl",
            "k=2,request.request_id=r1;tl",
            "request.request_id=r2;tl",
        ] == sent

    def test_a_dropped_plain_member_is_counted_at_every_hand_off(self) -> None:
        """What is dropped on the way is not kept: each hand-off counts it again."""
        with tl.request.scope(request_id="r1"):
            ctx = baggage.set_baggage("bad name", "1", baggage.set_baggage("ok", "2"))
            for flags in (0, 1):  # two spans: two contexts of the same values
                carrier: dict[str, str] = {}
                tl.inject(carrier, trace.set_span_in_context(remote_parent(flags), ctx))
                assert "ok=2,request.request_id=r1;tl" == carrier["baggage"]
        assert 2 == diagnostics.drop_counts()["baggage.outbound_key"]

    def test_the_baggage_alone_is_written_for_a_hand_off_with_its_own_span(self) -> None:
        """inject_baggage writes the baggage and no trace field; bad values go, counted."""
        written: dict[str, str] = {}
        with trace.use_span(remote_parent()), tl.request.scope(request_id="r1"):
            carrier_codec.inject_baggage(written.__setitem__)
        assert {"baggage": "request.request_id=r1;tl"} == written
        unsendable: dict[str, str] = {}
        with tl.request.scope(request_id="r1", thing=object()):
            carrier_codec.inject_baggage(unsendable.__setitem__)
        assert {} == unsendable
        assert 1 == diagnostics.drop_counts()["baggage.outbound_invalid"]


@settings(max_examples=300, deadline=None)
@given(value=st.text(max_size=12))
def test_fuzz_a_value_left_unencoded_is_one_the_grammar_allows(value: str) -> None:
    """The quick check of a value needing no percent-encoding decides as the grammar does."""
    assert bool(baggage_codec._UNCHANGED.fullmatch(value)) is baggage_codec._unchanged(value)


@settings(max_examples=300, deadline=None)
@given(
    trace_id=st.integers(min_value=1, max_value=2**128 - 1),
    span_id=st.integers(min_value=1, max_value=2**64 - 1),
    flags=st.integers(min_value=0, max_value=255),
)
def test_fuzz_traceparent_formats_as_the_w3c_text(trace_id: int, span_id: int, flags: int) -> None:
    """The traceparent written is the version-00 text of the ids, known flags only, read back."""
    text = tracecontext.format_traceparent(trace_id, span_id, flags)
    assert f"00-{trace_id:032x}-{span_id:016x}-{flags & 3:02x}" == text
    assert ((trace_id, span_id, flags & 3), "") == tracecontext.parse_traceparent(text)
