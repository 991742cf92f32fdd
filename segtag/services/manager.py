"""``segtag services up|down|status`` over the local Kafka broker and Redis."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segtag.services.kafka import KafkaService
from segtag.services.process import free_port
from segtag.services.redis import RedisService
from segtag.settings import Settings


@dataclass(frozen=True)
class ServiceStatus:
    """What one local service is doing."""

    name: str
    running: bool
    pid: int | None
    address: str
    log_file: str
    action: str = ""  # "started", "already running", "stopped", "not running"

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "running": self.running,
            "pid": self.pid,
            "address": self.address,
            "log_file": self.log_file,
            "action": self.action,
        }


def _services(settings: Settings) -> tuple[KafkaService, RedisService]:
    return KafkaService(settings), RedisService(settings)


def _status(svc: KafkaService | RedisService, action: str = "") -> ServiceStatus:
    name = "kafka" if isinstance(svc, KafkaService) else "redis"
    address = svc.address if isinstance(svc, KafkaService) else svc.url
    return ServiceStatus(name, svc.running(), svc.pid(), address, str(svc.log_file), action)


def isolated_settings(state_dir: str | Path, **overrides: Any) -> Settings:
    """Settings for a private broker and Redis on free loopback ports under ``state_dir``,
    built from defaults alone (not the environment): for tests and benchmarks that must
    not meet anything else on this machine. ``overrides`` may set any other field."""
    kafka_port, redis_port = free_port(), free_port()
    fields: dict[str, Any] = {
        "state_dir": str(state_dir),
        "kafka_port": kafka_port,
        "kafka_controller_port": free_port(),
        "redis_port": redis_port,
        "kafka_bootstrap_servers": f"127.0.0.1:{kafka_port}",
        "redis_url": f"redis://127.0.0.1:{redis_port}/0",
        "index_dir": str(Path(state_dir) / "index"),
    }
    fields.update(overrides)
    return Settings.load(env={}, **fields)


def services_up(settings: Settings) -> list[ServiceStatus]:
    """Start Redis and the broker unless they already run; wait (bounded) until both answer."""
    redis_svc, kafka_svc = RedisService(settings), KafkaService(settings)
    out = []
    for svc in (redis_svc, kafka_svc):
        started = svc.start()
        out.append(_status(svc, "started" if started else "already running"))
    return out


def services_down(settings: Settings) -> list[ServiceStatus]:
    """Stop the services this state directory started (and nothing else)."""
    out = []
    for svc in _services(settings):
        stopped = svc.stop()
        out.append(_status(svc, "stopped" if stopped else "not running"))
    return out


def services_status(settings: Settings) -> list[ServiceStatus]:
    """Whether each local service runs, where, and where its log is."""
    return [_status(svc) for svc in _services(settings)]
