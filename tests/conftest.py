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

from segtag.services import isolated_settings, services_down, services_up
from segtag.settings import Settings


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Start Redis and a KRaft broker for this session; yield settings that point at them."""
    settings = isolated_settings(tmp_path_factory.mktemp("segtag-state"))
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
