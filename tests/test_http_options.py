"""The HTTP options and the host allow-list: checked once when made, errors naming the option."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import httpx
import pytest
import requests

import threadline.aiohttp as tl_aiohttp
import threadline.httpx as tl_httpx
import threadline.requests as tl_requests
from threadline._http.hosts import HostAllowList, host_of
from threadline._http.options import ClientOptions, ServerOptions
from threadline._http.semconv import client_error, server_error


class TestServerOptions:
    def test_defaults(self) -> None:
        """Every option is on by default, without a user-id extractor; 5xx is an error."""
        options = ServerOptions()
        assert (True, True, None, True, True) == (
            options.trust_incoming,
            options.accept_request_id,
            options.user_id,
            options.spans,
            options.access_log,
        )
        assert server_error is options.is_error

    def test_frozen(self) -> None:
        """Options are frozen data: nothing changes them after the check."""
        with pytest.raises(dataclasses.FrozenInstanceError):
            ServerOptions().spans = False  # type: ignore[misc]

    @pytest.mark.parametrize(
        ("option", "value"),
        [
            ("trust_incoming", "no"),
            ("accept_request_id", 1),
            ("spans", None),
            ("access_log", "False"),
            ("user_id", "X-User"),
            ("logger", "threadline.aiohttp"),
            ("is_error", 500),
        ],
    )
    def test_a_wrong_type_names_the_option(self, option: str, value: Any) -> None:
        """A value of the wrong type is a TypeError that names the option."""
        with pytest.raises(TypeError, match=option):
            ServerOptions(**{option: value})

    def test_a_user_id_extractor(self) -> None:
        """Any callable is an extractor, and a logger of the adapter's may be given."""
        logger = logging.getLogger("tests.http")
        options = ServerOptions(user_id=lambda request: None, logger=logger)
        assert logger is options.logger


class TestClientOptions:
    def test_defaults(self) -> None:
        """Loopback only, spans on, the request id sent; 4xx and 5xx are errors."""
        options = ClientOptions()
        assert ((), True, True) == (options.baggage_hosts, options.spans, options.send_request_id)
        assert client_error is options.is_error
        assert options.allowed.allows("localhost")

    def test_hosts_are_kept_as_a_tuple(self) -> None:
        """Any iterable of names is taken, and kept as a tuple."""
        options = ClientOptions(baggage_hosts=(host for host in ["a.internal", "*.b"]))
        assert ("a.internal", "*.b") == options.baggage_hosts
        assert options.allowed.allows("x.b")

    @pytest.mark.parametrize(
        ("option", "value", "error"),
        [
            ("baggage_hosts", "api.internal", TypeError),
            ("baggage_hosts", [b"api.internal"], TypeError),
            ("baggage_hosts", None, TypeError),
            ("baggage_hosts", 5, TypeError),
            ("baggage_hosts", {"a.internal": 1}, TypeError),
            ("baggage_hosts", b"a.internal", TypeError),
            ("baggage_hosts", [42], TypeError),
            ("baggage_hosts", [""], ValueError),
            ("baggage_hosts", ["*"], ValueError),
            ("baggage_hosts", ["api.*.internal"], ValueError),
            ("baggage_hosts", ["api.internal:8080"], ValueError),
            ("baggage_hosts", ["https://api.internal"], ValueError),
            ("spans", "yes", TypeError),
            ("send_request_id", 0, TypeError),
            ("is_error", None, TypeError),
        ],
    )
    def test_a_wrong_option_names_it(self, option: str, value: Any, error: type) -> None:
        """A wrong type is a TypeError, a host that is no host name a ValueError; both name it."""
        with pytest.raises(error, match=option):
            ClientOptions(**{option: value})

    def test_bytes_are_answered_with_the_list_of_str_meant(self) -> None:
        """The suggestion for bytes is a list of str, which is then taken."""
        with pytest.raises(TypeError) as caught:
            ClientOptions(baggage_hosts=b"a.internal")  # type: ignore[arg-type]
        assert "['a.internal']" in str(caught.value)
        assert ("a.internal",) == ClientOptions(baggage_hosts=["a.internal"]).baggage_hosts

    @pytest.mark.parametrize("value", [None, 5, {"a.internal": 1}])
    @pytest.mark.parametrize("client", ["httpx", "requests", "aiohttp"])
    def test_every_client_names_a_wrong_baggage_hosts(self, client: str, value: Any) -> None:
        """Each client's own factory: a TypeError naming baggage_hosts."""
        instrument = {
            "httpx": lambda hosts: tl_httpx.instrument(httpx.Client(), baggage_hosts=hosts),
            "requests": lambda hosts: tl_requests.instrument(
                requests.Session(), baggage_hosts=hosts
            ),
            "aiohttp": lambda hosts: tl_aiohttp.trace_config(baggage_hosts=hosts),
        }[client]
        with pytest.raises(TypeError, match=r"^baggage_hosts takes a list of host names"):
            instrument(value)


class TestHostAllowList:
    @pytest.mark.parametrize(
        "host",
        ["localhost", "LOCALHOST", "127.0.0.1", "127.8.9.10", "::1", "[::1]", "api.internal",
         "API.Internal.", "x.y.internal", "partner.example", "10.0.0.5", "::ffff:10.0.0.6"],
    )  # fmt: skip
    def test_allowed(self, host: str) -> None:
        """Loopback always; exact names and *.suffix patterns, in any case, with a final dot."""
        allowed = HostAllowList(["*.internal", "partner.example", "10.0.0.5", "::ffff:10.0.0.6"])
        assert allowed.allows(host)

    @pytest.mark.parametrize(
        "host", [None, "", "internal", "evilinternal", "partner.example.com", "10.0.0.7", "::2"]
    )
    def test_refused(self, host: str | None) -> None:
        """Anything else: a suffix matches subdomains only, not the bare domain or a lookalike."""
        allowed = HostAllowList(["*.internal", "partner.example", "10.0.0.5"])
        assert not allowed.allows(host)

    def test_many_hosts_each_decided_by_itself(self) -> None:
        """Past the hosts it keeps decided, each host is still decided by the list, every time."""
        allowed = HostAllowList(["*.internal"])
        for _ in range(2):
            for index in range(600):
                assert allowed.allows(f"h{index}.internal")
                assert not allowed.allows(f"h{index}.example")
                assert allowed.allows(f"127.0.{index % 256}.1")

    @pytest.mark.parametrize(
        ("url", "host"),
        [
            ("http://API.internal:8080/x", "api.internal"),
            ("https://[::1]:8443/", "::1"),
            ("http://user:pw@h.example/", "h.example"),
            ("http://[::1/", None),
            ("/relative", None),
            (None, None),
        ],
    )
    def test_host_of(self, url: str | None, host: str | None) -> None:
        """The host of a redirect's URL; None (nothing trusted) when there is none."""
        assert host == host_of(url)
