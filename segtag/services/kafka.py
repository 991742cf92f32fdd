"""A real single-node KRaft Kafka broker from the Apache jars on Maven Central."""

from __future__ import annotations

import base64
import logging
import shutil
import subprocess
import time
import uuid
from importlib import resources
from pathlib import Path

from segtag.errors import ServiceError
from segtag.services.process import port_open, read_pid, spawn, stop, tail
from segtag.settings import Settings

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.0"
MARKER = "kafka.Kafka"

_SERVER_PROPERTIES = """\
# Written by segtag services; single-node KRaft on loopback only.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={data_dir}
num.partitions={partitions}
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
log.retention.hours=168
"""

_LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log_file}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
"""


def jar_cache_dir() -> Path:
    """Where the broker jars are kept between runs (shared by every state directory)."""
    return Path.home() / ".cache" / "segtag" / f"kafka-{KAFKA_VERSION}" / "libs"


def ensure_jars() -> Path:
    """Resolve the broker jars with Maven once; return the folder that holds them."""
    libs = jar_cache_dir()
    done = libs / ".complete"
    if done.exists():
        return libs
    java, mvn = shutil.which("java"), shutil.which("mvn")
    if not java or not mvn:
        raise ServiceError("Kafka needs Java 17+ and Maven on PATH (apt-get install openjdk-17-jre-headless maven)")
    libs.mkdir(parents=True, exist_ok=True)
    pom = resources.files("segtag.services").joinpath("kafka-pom.xml")
    with resources.as_file(pom) as pom_path:
        log.info("resolving Apache Kafka %s jars from Maven Central into %s", KAFKA_VERSION, libs)
        cmd = [mvn, "-q", "-B", "-f", str(pom_path), "dependency:copy-dependencies", f"-DoutputDirectory={libs}"]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ServiceError(f"mvn could not resolve the Kafka jars:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    done.write_text(KAFKA_VERSION)
    return libs


class KafkaService:
    """The broker under ``STATE/kafka``: configure, format, start, wait, stop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = Path(settings.state_dir) / "kafka"
        self.data_dir = self.home / "data"
        self.log_file = self.home / "kafka.log"
        self.pid_file = self.home / "pid"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.settings.kafka_port}"

    def pid(self) -> int | None:
        return read_pid(self.pid_file)

    def running(self) -> bool:
        return self.pid() is not None and port_open("127.0.0.1", self.settings.kafka_port)

    def start(self, timeout: float = 90.0) -> bool:
        """Start the broker unless ours already runs; True if this call started it."""
        if self.pid() is not None:
            self.wait_ready(timeout)
            return False
        if port_open("127.0.0.1", self.settings.kafka_port):
            raise ServiceError(
                f"port {self.settings.kafka_port} is taken by a process segtag did not start; "
                "stop it or set SEGTAG_KAFKA_PORT to another port"
            )
        libs = ensure_jars()
        self._configure()
        self._format(libs)
        java = shutil.which("java") or "java"
        cmd = [
            java,
            "-Xms256m",
            "-Xmx768m",
            "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
            MARKER,
            str(self.home / "server.properties"),
        ]
        log.info("starting Kafka broker on %s (log %s)", self.address, self.log_file)
        proc = spawn(cmd, self.log_file, self.pid_file, MARKER, self.home)
        try:
            self.wait_ready(timeout, proc)
        except ServiceError:
            stop(self.pid_file, "kafka", timeout=10)
            raise
        return True

    def stop(self) -> bool:
        return stop(self.pid_file, "kafka")

    def wait_ready(self, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
        """Wait until the broker answers a metadata request, or raise naming its log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise ServiceError(
                    f"the Kafka broker exited with code {proc.returncode} while starting; "
                    f"see {self.log_file}:\n{tail(self.log_file)}"
                )
            if port_open("127.0.0.1", self.settings.kafka_port) and _metadata_ok(self.address):
                return
            time.sleep(0.5)
        raise ServiceError(
            f"the Kafka broker did not answer a metadata request on {self.address} within {timeout:.0f}s; "
            f"see {self.log_file}:\n{tail(self.log_file)}"
        )

    def _configure(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "server.properties").write_text(
            _SERVER_PROPERTIES.format(
                port=self.settings.kafka_port,
                controller_port=self.settings.kafka_controller_port,
                data_dir=self.data_dir,
                partitions=self.settings.topic_partitions,
            )
        )
        (self.home / "log4j2.properties").write_text(_LOG4J2.format(log_file=self.log_file))

    def _format(self, libs: Path) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        cluster_id = _cluster_id()
        cmd = [
            shutil.which("java") or "java",
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(self.home / "server.properties"),
            "--standalone",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        format_log = self.home / "format.log"
        format_log.write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            reason = next((ln for ln in (result.stderr + result.stdout).splitlines() if "Exception" in ln), "")
            raise ServiceError(
                f"formatting Kafka storage in {self.data_dir} failed: {reason.strip()}; see {format_log}"
            )


def _cluster_id() -> str:
    # kafka-storage's argument parser reads an id that starts with "-" as an option
    # (1 in 64 of random ids), so draw again until it does not.
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _metadata_ok(address: str) -> bool:
    """True when the broker at address answers a metadata request."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    try:
        consumer = KafkaConsumer(bootstrap_servers=address, request_timeout_ms=3000)
    except (KafkaError, OSError, ValueError):
        return False
    try:
        consumer.topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        consumer.close()
