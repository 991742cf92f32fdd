"""``segtag services up|down|status`` over the local Kafka broker and Redis."""

from __future__ import annotations

from dataclasses import dataclass

from segtag.services.kafka import KafkaService
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
