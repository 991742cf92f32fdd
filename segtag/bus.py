"""Kafka clients configured the way segtag's services need them.

Consumers never auto-commit: a service commits ``offset + 1`` itself, only after
the record's effects are durable. Producers wait for the broker's acknowledgement
(``acks=all``) so that a flushed record is on the log.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, NoBrokersAvailable, TopicAlreadyExistsError

from segtag.errors import SinkUnavailableError
from segtag.settings import Settings

log = logging.getLogger(__name__)


def all_topics(settings: Settings) -> list[str]:
    """Every topic segtag uses."""
    return [settings.uploads_topic, settings.dead_letter_topic, settings.segments_topic, settings.completions_topic]


def make_producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    """A producer of raw bytes that waits for full acknowledgement."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers.split(","),
        "acks": "all",
        "linger_ms": 5,
        "retries": 5,
        "request_timeout_ms": 15000,
        "max_block_ms": 15000,
    }
    config.update(overrides)
    try:
        return KafkaProducer(**config)
    except NoBrokersAvailable as exc:
        raise SinkUnavailableError(
            f"no Kafka broker answers at {settings.kafka_bootstrap_servers}; "
            "start one with `segtag services up` or set SEGTAG_KAFKA_BOOTSTRAP_SERVERS"
        ) from exc


def make_consumer(settings: Settings, group_id: str, topics: Iterable[str] = (), **overrides: Any) -> KafkaConsumer:
    """A group consumer with auto-commit off, reading from the earliest offset of a new group."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers.split(","),
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": 10000,
        "heartbeat_interval_ms": 3000,
        "max_poll_interval_ms": 300000,
    }
    config.update(overrides)
    try:
        consumer = KafkaConsumer(**config)
    except NoBrokersAvailable as exc:
        raise SinkUnavailableError(
            f"no Kafka broker answers at {settings.kafka_bootstrap_servers}; "
            "start one with `segtag services up` or set SEGTAG_KAFKA_BOOTSTRAP_SERVERS"
        ) from exc
    topics = list(topics)
    if topics:
        consumer.subscribe(topics)
    return consumer


def ensure_topics(settings: Settings, topics: Iterable[str] | None = None, partitions: int | None = None) -> None:
    """Create segtag's topics when they are missing (idempotent)."""
    names = list(topics) if topics is not None else all_topics(settings)
    parts = partitions or settings.topic_partitions
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=settings.kafka_bootstrap_servers.split(","), request_timeout_ms=15000
        )
    except NoBrokersAvailable as exc:
        raise SinkUnavailableError(f"no Kafka broker answers at {settings.kafka_bootstrap_servers}") from exc
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(name=n, num_partitions=parts, replication_factor=1) for n in names if n not in existing]
        if missing:
            try:
                admin.create_topics(missing)
                log.info("created topics %s", ", ".join(t.name for t in missing))
            except TopicAlreadyExistsError:
                pass  # another process won the race
    except KafkaError as exc:
        raise SinkUnavailableError(f"could not create Kafka topics: {exc}") from exc
    finally:
        admin.close()
