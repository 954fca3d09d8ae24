"""Which hosts may receive baggage and the request id: loopback, and the hosts the user allowed."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from .._core.checks import require_names

__all__ = ["HostAllowList", "host_of"]

_DECIDED_MAX = 256


class HostAllowList:
    """Hosts that may receive baggage: loopback, exact names, and ``*.suffix`` patterns.

    Raises:
        TypeError: *hosts* is no collection of ``str`` (one ``str``, bytes, a
            mapping, None), or holds something that is not a ``str``.
        ValueError: a host is empty, has a port, a scheme or a path, or a
            ``*`` anywhere but a leading ``*.``.
    """

    __slots__ = ("_decided", "_exact", "_suffixes", "hosts")

    def __init__(self, hosts: Iterable[str], option: str = "baggage_hosts") -> None:
        self.hosts = require_names(option, hosts, "host names")
        exact: set[str] = set()
        suffixes: list[str] = []
        for given in self.hosts:
            host = _checked(given, option)
            if host.startswith("*."):
                suffixes.append(host[1:])
            else:
                exact.add(host)
        self._exact = frozenset(exact)
        self._suffixes = tuple(suffixes)
        self._decided: dict[str, bool] = {}

    def allows(self, host: str | None) -> bool:
        """Return True if *host* may receive baggage and the request id."""
        if not host:
            return False
        # A client calls the same few hosts again and again; parsing an address costs
        # more than the rest of the decision. Bounded: a crawler's hosts are decided anew.
        decided = self._decided.get(host)
        if decided is None:
            decided = self._decide(host)
            if len(self._decided) < _DECIDED_MAX:
                self._decided[host] = decided
        return decided

    def _decide(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        if host == "localhost" or host in self._exact or host.endswith(self._suffixes):
            return True
        try:
            return ipaddress.ip_address(host.strip("[]")).is_loopback
        except ValueError:
            return False

    def __repr__(self) -> str:
        return f"HostAllowList({list(self.hosts)!r})"


def _checked(given: object, option: str) -> str:
    """*given* as the lower-case name the allow-list compares, or the error naming *option*."""
    if not isinstance(given, str):
        raise TypeError(f"{option} takes host names (str), got {given!r}")
    host = given.lower().rstrip(".")
    name = host[2:] if host.startswith("*.") else host
    if not name or "*" in name:
        raise ValueError(
            f"{option}: {given!r} is no host name (use 'api.internal' or '*.internal')"
        )
    if any(char in name for char in "/@ \t") or (":" in name and not _is_ip(name)):
        raise ValueError(f"{option}: {given!r} is no host name (no scheme, port or path)")
    return host


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def host_of(url: str | None) -> str | None:
    """The host of the absolute *url* (lower case, IPv6 without brackets); None if it has none."""
    if not url:
        return None
    try:
        return urlsplit(url).hostname
    except ValueError:  # an unclosed IPv6 bracket, a bad port: nothing trusted goes there
        return None
