"""``threadline top URL``: the requests in flight in a service, refreshing in the terminal.

It reads the JSON a service's live view serves (`threadline.live.serve`) at
``URL/requests`` and draws it with a plain ANSI redraw every ``--interval``
seconds until interrupted; ``--once`` draws one snapshot, ``--html OUT``
writes one as a page. What it reads is checked strictly
(`threadline.live._page.read_snapshot`) and escaped where it is drawn.
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.error
import urllib.request
from typing import Any

from .._core.text import escape_controls
from ..live._page import BadSnapshotError, read_snapshot, render_html, render_text
from ._output import unicode_ok, write

MAX_BYTES = 16 * 1024 * 1024
"""The most ``top`` reads of one snapshot; a longer answer is not a live view."""
_CLEAR = "\x1b[H\x1b[2J"


class ViewUnreadableError(Exception):
    """The live view at the URL could not be read, or what came is not one (says why)."""


def top_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """`threadline top URL [--once] [--interval S] [--html OUT]`.

    Returns 0; 1 when the view cannot be read (``--once``, ``--html``).
    A URL that is not ``http://`` is a usage error.
    """
    base = args.url.rstrip("/")
    if not base.startswith(("http://", "https://")) or not base.isprintable():
        parser.error(f"top: {escape_controls(args.url)!r} is not an http:// URL")
    url = base if base.endswith("/requests") else base + "/requests"
    source = base.removesuffix("/requests")
    if args.html or args.once:
        try:
            snapshot = read_view(url, args.interval)
        except ViewUnreadableError as exc:
            write(f"threadline top: {exc}\n")
            return 1
        if args.html:
            try:
                with open(args.html, "w", encoding="utf-8") as out:
                    out.write(render_html(snapshot, source=source))
            except OSError as exc:
                parser.error(f"top: cannot write {args.html}: {exc.strerror or exc}")
            write(f"{len(snapshot['requests'])} requests in flight written to {args.html}\n")
        else:
            write(render_text(snapshot, source=source, unicode=unicode_ok()) + "\n")
        return 0
    try:
        while True:
            try:
                text = render_text(
                    read_view(url, args.interval), source=source, unicode=unicode_ok()
                )
            except ViewUnreadableError as exc:
                text = f"threadline top: {exc} (trying again every {args.interval:g}s)"
            write(_CLEAR + text + "\n")
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0


def read_view(url: str, timeout: float) -> dict[str, Any]:
    """The snapshot at *url*, checked; a `ViewUnreadableError` saying why it cannot be had."""
    try:
        with urllib.request.urlopen(url, timeout=max(timeout, 2.0)) as answer:  # noqa: S310 - http(s) only, checked above
            body = answer.read(MAX_BYTES + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ViewUnreadableError(f"cannot read {url}: {escape_controls(str(reason))}") from None
    if len(body) > MAX_BYTES:
        raise ViewUnreadableError(f"{url} sent more than {MAX_BYTES} bytes: not a live view")
    try:
        return read_snapshot(json.loads(body))
    except (ValueError, RecursionError) as exc:  # BadSnapshotError and JSON's errors
        what = exc if isinstance(exc, BadSnapshotError) else "not JSON"
        raise ViewUnreadableError(
            f"{url} is not a threadline live view: {escape_controls(str(what))}"
        ) from None
