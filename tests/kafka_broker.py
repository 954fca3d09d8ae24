"""A real Kafka broker (KRaft mode) for the tests, started from Maven Central's jars and stopped.

`kafka_broker` formats a data directory and runs ``kafka.Kafka`` on free
loopback ports with a small JVM, from the jars ``scripts/kafka-jars`` copies
into a cache (``THREADLINE_KAFKA_JARS`` names the folder; otherwise the script
is run, which needs Maven and a Java runtime). ``.ci/run`` sets
``THREADLINE_REQUIRE_KAFKA``: the tests then fail rather than skip.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.helpers import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
REQUIRE_ENV = "THREADLINE_REQUIRE_KAFKA"
JARS_ENV = "THREADLINE_KAFKA_JARS"
JVM = ["-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xshare:auto"]
READY = "Kafka Server started"


class KafkaUnavailableError(Exception):
    """No Java or no Kafka jars here, or the broker would not start."""


def required() -> bool:
    """Whether the Kafka tests must run here (CI) rather than skip."""
    return bool(os.environ.get(REQUIRE_ENV))


def jars() -> Path:
    """The broker's jars: ``THREADLINE_KAFKA_JARS``, or the folder scripts/kafka-jars prints."""
    given = os.environ.get(JARS_ENV)
    if given:
        return Path(given)
    if shutil.which("java") is None or shutil.which("mvn") is None:
        raise KafkaUnavailableError("no Java runtime or Maven here (apt-get install maven)")
    done = subprocess.run(
        [str(ROOT / "scripts" / "kafka-jars")], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise KafkaUnavailableError(f"scripts/kafka-jars failed: {done.stderr[-500:]}")
    return Path(done.stdout.strip())


def _properties(directory: Path, port: int, controller: int) -> str:
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{controller}",
            f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
            f"log.dirs={directory / 'data'}",
            "num.partitions=1",
            "auto.create.topics.enable=true",
            # one partition: a first consumer group joins in well under a second
            "offsets.topic.num.partitions=1",
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "",
        ]
    )


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@contextmanager
def kafka_broker(directory: Path) -> Iterator[str]:
    """Run a one-node Kafka on free loopback ports in *directory*; yield its bootstrap address."""
    classpath = f"{jars()}/*"
    java = shutil.which("java")
    if java is None:
        raise KafkaUnavailableError("no Java runtime here (apt-get install default-jre-headless)")
    port, controller = free_port(), free_port()
    config = directory / "server.properties"
    config.write_text(_properties(directory, port, controller))
    cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    log_path = directory / "kafka.log"
    base = [java, *JVM, f"-Dkafka.logs.dir={directory}", "-cp", classpath]
    formatted = subprocess.run(
        [*base, "kafka.tools.StorageTool", "format", "-t", cluster, "-c", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    if formatted.returncode != 0:
        raise KafkaUnavailableError(f"kafka-storage format failed: {formatted.stderr[-800:]}")
    log = log_path.open("w")
    server = subprocess.Popen(
        [*base, "kafka.Kafka", str(config)], stdout=log, stderr=subprocess.STDOUT
    )

    def started() -> bool:
        return READY in log_path.read_text(errors="replace") or server.poll() is not None

    try:
        if not wait_for(started, 90) or server.poll() is not None or not _answers(port):
            raise KafkaUnavailableError(
                f"kafka did not start: {log_path.read_text(errors='replace')[-1500:]}"
            )
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        log.close()
