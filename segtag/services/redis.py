"""A real Redis server (Debian's redis-server) on loopback."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

from segtag.errors import ServiceError
from segtag.services.process import port_open, read_pid, spawn, stop, tail
from segtag.settings import Settings

log = logging.getLogger(__name__)

MARKER = "redis-server"


def ensure_redis_server() -> str:
    """The path of redis-server, installing Debian's package when it is missing and we are root."""
    path = shutil.which("redis-server")
    if path:
        return path
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ServiceError("redis-server is not installed: run `sudo apt-get install redis-server`")
    log.info("installing Debian's redis-server package")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "redis-server"]):
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            raise ServiceError(f"{' '.join(cmd)} failed:\n{result.stderr[-2000:]}")
    path = shutil.which("redis-server")
    if not path:
        raise ServiceError("apt-get installed redis-server but it is not on PATH")
    return path


class RedisService:
    """Redis under ``STATE/redis`` with append-only persistence, so a restart keeps data."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = Path(settings.state_dir) / "redis"
        self.log_file = self.home / "redis.log"
        self.pid_file = self.home / "pid"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.settings.redis_port}/0"

    def pid(self) -> int | None:
        return read_pid(self.pid_file)

    def running(self) -> bool:
        return self.pid() is not None and port_open("127.0.0.1", self.settings.redis_port)

    def start(self, timeout: float = 30.0) -> bool:
        """Start Redis unless ours already runs; True if this call started it."""
        if self.pid() is not None:
            self.wait_ready(timeout)
            return False
        if port_open("127.0.0.1", self.settings.redis_port):
            raise ServiceError(
                f"port {self.settings.redis_port} is taken by a process segtag did not start; "
                "stop it or set SEGTAG_REDIS_PORT to another port"
            )
        binary = ensure_redis_server()
        self.home.mkdir(parents=True, exist_ok=True)
        cmd = [
            binary,
            "--bind", "127.0.0.1",
            "--port", str(self.settings.redis_port),
            "--dir", str(self.home),
            "--daemonize", "no",
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--protected-mode", "yes",
        ]  # fmt: skip
        log.info("starting Redis on 127.0.0.1:%d (log %s)", self.settings.redis_port, self.log_file)
        proc = spawn(cmd, self.log_file, self.pid_file, MARKER, self.home)
        try:
            self.wait_ready(timeout, proc)
        except ServiceError:
            stop(self.pid_file, "redis", timeout=5)
            raise
        return True

    def stop(self) -> bool:
        return stop(self.pid_file, "redis")

    def wait_ready(self, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
        """Wait until Redis answers PING, or raise naming its log."""
        import redis

        client = redis.Redis.from_url(self.url, socket_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if proc is not None and proc.poll() is not None:
                    raise ServiceError(
                        f"redis-server exited with code {proc.returncode}; see {self.log_file}:\n{tail(self.log_file)}"
                    )
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    time.sleep(0.1)
        finally:
            client.close()
        raise ServiceError(f"Redis did not answer PING within {timeout:.0f}s; see {self.log_file}")
