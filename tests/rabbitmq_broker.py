"""A real RabbitMQ node for the tests, with its own epmd, started on free ports and stopped.

`rabbitmq_server` runs Debian's ``rabbitmq-server`` (``.ci/run`` installs it)
directly, not through the ``/usr/sbin`` wrapper (which switches user and logs
to /var/log), with its home, cookie, database and logs in the test's
directory, a unique node name, and its own ``epmd`` on a free loopback port
(otherwise the node starts one on 0.0.0.0:4369 that outlives it). ``.ci/run``
sets ``THREADLINE_REQUIRE_RABBITMQ``: the tests then fail rather than skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.helpers import free_port, wait_for

REQUIRE_ENV = "THREADLINE_REQUIRE_RABBITMQ"
SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")


class RabbitMQUnavailableError(Exception):
    """No rabbitmq-server here, or it would not start."""


def required() -> bool:
    """Whether the RabbitMQ tests must run here (CI) rather than skip."""
    return bool(os.environ.get(REQUIRE_ENV))


def _answers(port: int) -> bool:
    """Whether an AMQP server answers a protocol header on *port* (with its own)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"AMQP\x00\x00\x09\x01")
            return conn.recv(8).startswith(b"\x01\x00\x00")  # a Connection.Start frame
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


@contextmanager
def rabbitmq_server(directory: Path) -> Iterator[str]:
    """Run a RabbitMQ node on free loopback ports in *directory*; yield its AMQP URL."""
    epmd_binary = shutil.which("epmd")
    if not SERVER.exists() or epmd_binary is None:
        raise RabbitMQUnavailableError(
            "rabbitmq-server is not installed (apt-get install rabbitmq-server)"
        )
    port, epmd_port, dist_port = free_port(), free_port(), free_port()
    home = directory / "home"
    home.mkdir()
    (directory / "enabled_plugins").write_text("[].\n")
    env = {
        **os.environ,
        "HOME": str(home),
        "ERL_EPMD_PORT": str(epmd_port),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODENAME": f"threadline-{uuid.uuid4().hex[:12]}@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_MNESIA_BASE": str(directory / "mnesia"),
        "RABBITMQ_LOG_BASE": str(directory / "log"),
        "RABBITMQ_LOGS": "-",
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "enabled_plugins"),
        "RABBITMQ_CONFIG_FILE": str(directory / "rabbitmq"),
        "RABBITMQ_PID_FILE": str(directory / "rabbitmq.pid"),
    }
    log_path = directory / "rabbitmq.log"
    log = log_path.open("w")
    epmd = subprocess.Popen(
        [epmd_binary, "-port", str(epmd_port), "-address", "127.0.0.1"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = None
    try:
        server = subprocess.Popen(
            [str(SERVER)], env=env, cwd=directory, stdout=log, stderr=subprocess.STDOUT
        )
        if not wait_for(lambda: _answers(port) or server.poll() is not None, 90) or not _answers(
            port
        ):
            raise RabbitMQUnavailableError(
                f"rabbitmq-server did not start: {log_path.read_text(errors='replace')[-1500:]}"
            )
        yield f"amqp://guest:guest@127.0.0.1:{port}/"
    finally:
        if server is not None:
            _stop(server)
        _stop(epmd)
        log.close()
