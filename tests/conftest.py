"""Shared fixtures: a real Kafka broker and a real Redis, started for the test session
on free loopback ports in a temporary state directory and always stopped at the end.

Tests that use them get their own topic names, consumer groups and Redis key prefix
(``live_settings``) so they never see each other's data.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from segtag.services import services_down, services_up
from segtag.services.process import free_port
from segtag.settings import Settings

# Library code never reads the environment; the tests build their settings from scratch.
_CLEAN_ENV: dict[str, str] = {}


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Start Redis and a KRaft broker for this session; yield settings that point at them."""
    state = tmp_path_factory.mktemp("segtag-state")
    kafka_port, controller_port, redis_port = free_port(), free_port(), free_port()
    settings = Settings.load(
        env=_CLEAN_ENV,
        state_dir=str(state),
        kafka_port=kafka_port,
        kafka_controller_port=controller_port,
        redis_port=redis_port,
        kafka_bootstrap_servers=f"127.0.0.1:{kafka_port}",
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        index_dir=str(state / "index"),
    )
    try:
        services_up(settings)
        yield settings
    finally:
        services_down(settings)


@pytest.fixture
def live_settings(services: Settings, tmp_path: os.PathLike[str]) -> Settings:
    """Settings on the session's services with topics, groups and keys unique to this test."""
    tag = uuid.uuid4().hex[:10]
    return services.replace(
        uploads_topic=f"t{tag}.uploads",
        dead_letter_topic=f"t{tag}.deadletter",
        segments_topic=f"t{tag}.segments",
        completions_topic=f"t{tag}.tagged",
        consumer_group=f"g{tag}.tagger",
        indexer_group=f"g{tag}.indexer",
        redis_prefix=f"test{tag}",
        index_dir=str(tmp_path) + "/index",
    )
