"""docker-compose.yml configures the services only through variables the settings read."""

from __future__ import annotations

from pathlib import Path

import yaml

from segtag.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def _compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_every_segtag_variable_is_one_settings_reads() -> None:
    known = set(Settings.env_names())
    services = _compose()["services"]
    seen: set[str] = set()
    for name in ("tagger", "indexer", "api"):
        env = services[name]["environment"]
        names = {k for k in env if k.startswith("SEGTAG_")}
        assert names, f"service {name} sets no SEGTAG_* variable"
        unknown = names - known
        assert not unknown, f"service {name} sets variables Settings does not read: {sorted(unknown)}"
        seen |= names
    assert {"SEGTAG_KAFKA_BOOTSTRAP_SERVERS", "SEGTAG_REDIS_URL"} <= seen


def test_compose_values_parse_as_valid_settings() -> None:
    services = _compose()["services"]
    for name in ("tagger", "indexer", "api"):
        env = {k: str(v) for k, v in services[name]["environment"].items()}
        settings = Settings.load(env=env)
        assert settings.kafka_bootstrap_servers == "kafka:9092"
        assert settings.redis_url == "redis://redis:6379/0"


def test_compose_has_the_system_services() -> None:
    services = _compose()["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:4")
    assert services["redis"]["image"].startswith("redis:")
    assert {"tagger", "indexer", "api"} <= set(services)
