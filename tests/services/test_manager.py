"""`segtag services up|down|status` against the real broker and Redis."""

from __future__ import annotations

from pathlib import Path

import pytest

from segtag.errors import ServiceError
from segtag.services import isolated_settings, services_down, services_status, services_up

pytestmark = pytest.mark.integration


def test_up_twice_is_harmless_and_down_leaves_nothing(tmp_path: Path) -> None:
    settings = isolated_settings(tmp_path)
    try:
        first = {s.name: s for s in services_up(settings)}
        assert first["kafka"].action == "started" and first["redis"].action == "started"
        pids = {name: s.pid for name, s in first.items()}
        second = {s.name: s for s in services_up(settings)}
        assert {s.action for s in second.values()} == {"already running"}
        assert {name: s.pid for name, s in second.items()} == pids
        assert all(s.running for s in services_status(settings))
    finally:
        down = {s.name: s for s in services_down(settings)}
    assert down["kafka"].action == "stopped" and down["redis"].action == "stopped"
    for pid in pids.values():
        assert pid is not None
        assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid)
    assert not any(s.running for s in services_status(settings))
    # down again: nothing to stop, nothing fails
    assert {s.action for s in services_down(settings)} == {"not running"}


def test_port_taken_by_a_stranger_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        settings = isolated_settings(tmp_path).replace(redis_port=port)
        with pytest.raises(ServiceError, match=f"port {port} is taken.*SEGTAG_REDIS_PORT"):
            services_up(settings)
    services_down(settings)


def test_bad_broker_config_names_its_log(tmp_path: Path) -> None:
    settings = isolated_settings(tmp_path)
    # A controller port equal to the broker port is refused by Kafka's own storage tool.
    bad = settings.replace(kafka_controller_port=settings.kafka_port)
    try:
        with pytest.raises(ServiceError, match=r"two listeners on the same port.*format\.log"):
            services_up(bad)
    finally:
        services_down(bad)


def test_broker_that_dies_at_start_names_its_log_without_hanging(tmp_path: Path) -> None:
    settings = isolated_settings(tmp_path)
    data = tmp_path / "kafka" / "data"
    data.mkdir(parents=True)
    # Storage that claims to be formatted but is garbage: the broker exits during start-up.
    (data / "meta.properties").write_text("version=7\nnode.id=not-a-number\n")
    try:
        with pytest.raises(ServiceError, match=r"kafka\.log"):
            services_up(settings)
    finally:
        services_down(settings)
    assert not any(s.running for s in services_status(settings))


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_isolated_settings_ignore_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The suite must not depend on, or meet, the developer's own SEGTAG_* services.
    monkeypatch.setenv("SEGTAG_KAFKA_PORT", "9092")
    monkeypatch.setenv("SEGTAG_UPLOADS_TOPIC", "from-the-environment")
    s = isolated_settings(tmp_path)
    assert s.uploads_topic == "segtag.uploads"
    assert len({s.kafka_port, s.kafka_controller_port, s.redis_port}) == 3
    assert s.kafka_bootstrap_servers == f"127.0.0.1:{s.kafka_port}"
    assert s.redis_url == f"redis://127.0.0.1:{s.redis_port}/0"
    assert s.state_dir == str(tmp_path)
