"""Kafka and Redis round trips on the real services the session fixture started."""

from __future__ import annotations

import time

import pytest
import redis

from segtag.bus import ensure_topics, make_consumer, make_producer
from segtag.settings import Settings

pytestmark = pytest.mark.integration


def _drain(consumer, want: int, timeout: float = 30.0) -> list:  # type: ignore[no-untyped-def]
    got: list = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            got.extend(records)
    return got


def test_committed_offset_survives_a_consumer_restart(live_settings: Settings) -> None:
    s = live_settings
    ensure_topics(s, [s.uploads_topic], partitions=1)
    producer = make_producer(s)
    try:
        for i in range(6):
            producer.send(s.uploads_topic, key=f"v{i}".encode(), value=f"payload-{i}".encode())
        producer.flush(timeout=15)
    finally:
        producer.close()

    first = make_consumer(s, s.consumer_group, [s.uploads_topic])
    try:
        records = _drain(first, 6)
        assert [r.value for r in records[:6]] == [f"payload-{i}".encode() for i in range(6)]
        # Process only the first four, then commit offset + 1 of the last processed record.
        from kafka import OffsetAndMetadata, TopicPartition

        last = records[3]
        tp = TopicPartition(last.topic, last.partition)
        first.commit({tp: OffsetAndMetadata(last.offset + 1, "", -1)})
    finally:
        first.close()

    second = make_consumer(s, s.consumer_group, [s.uploads_topic])
    try:
        again = _drain(second, 2)
        assert [r.value for r in again] == [b"payload-4", b"payload-5"]
    finally:
        second.close()


def test_ensure_topics_is_idempotent(live_settings: Settings) -> None:
    from kafka import KafkaAdminClient

    ensure_topics(live_settings)
    ensure_topics(live_settings)
    admin = KafkaAdminClient(bootstrap_servers=live_settings.kafka_bootstrap_servers)
    try:
        described = {t["topic"]: len(t["partitions"]) for t in admin.describe_topics([live_settings.uploads_topic])}
    finally:
        admin.close()
    assert described[live_settings.uploads_topic] == live_settings.topic_partitions


def test_redis_round_trip(live_settings: Settings) -> None:
    client = redis.Redis.from_url(live_settings.redis_url)
    try:
        key = f"{live_settings.redis_prefix}:hello"
        client.set(key, b"\x00\x01bytes")
        assert client.get(key) == b"\x00\x01bytes"
        assert client.ping() is True
    finally:
        client.close()
