"""The clients the tagger holds: one consumer, one producer, two Redis clients."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis
from kafka import KafkaConsumer, KafkaProducer

from segtag.bus import make_consumer, make_producer
from segtag.settings import Settings
from segtag.sinks.kafka_sink import KafkaSink
from segtag.sinks.redis_sink import RedisSink, make_redis

log = logging.getLogger(__name__)

# The poll loop must not stall on Redis: its status updates fail fast and are
# best effort; the final writes get the longer timeout and real retries.
STATUS_TIMEOUT_S = 1.0
RESULTS_TIMEOUT_S = 5.0
# Leader elections (a new topic, a restarted broker) take seconds: let the client
# retry a send for ~10 s before our own retry-and-seek-back logic sees an error.
PRODUCER_RETRIES = {"retries": 40, "retry_backoff_ms": 250}


@dataclass
class Connections:
    """Everything the tagger talks to. ``close()`` is safe to call more than once."""

    consumer: KafkaConsumer
    producer: KafkaProducer
    results: RedisSink  # final writes, from the sink thread
    status: RedisSink  # queued/processing updates and the heartbeat
    kafka: KafkaSink

    def close(self) -> None:
        """Close every client, logging (not raising) what fails, consumer last."""
        for name, closer in (
            ("producer", lambda: self.producer.close(timeout=10)),
            ("redis", self.results.client.close),
            ("redis status", self.status.client.close),
            # No autocommit: offsets are committed explicitly, never on close.
            ("consumer", lambda: self.consumer.close(autocommit=False, timeout_ms=10000)),
        ):
            try:
                closer()
            except Exception as exc:  # closing must go on with the others
                log.warning("closing the %s failed: %s", name, exc)


def open_connections(settings: Settings, max_poll_records: int) -> Connections:
    """Connect to the broker and Redis (the consumer is not subscribed yet)."""
    producer = make_producer(settings, **PRODUCER_RETRIES)
    try:
        consumer = make_consumer(
            settings,
            settings.consumer_group,
            max_poll_records=max_poll_records,
            # Heavy work runs off the poll loop, so polls stay frequent; this is
            # only the bound for a wedged process.
            max_poll_interval_ms=300000,
        )
    except Exception:
        producer.close(timeout=5)
        raise
    results = RedisSink(make_redis(settings.redis_url, RESULTS_TIMEOUT_S), settings.redis_prefix)
    status = RedisSink(make_redis(settings.redis_url, STATUS_TIMEOUT_S), settings.redis_prefix)
    return Connections(consumer, producer, results, status, KafkaSink(producer, settings))


def redis_for_check(settings: Settings) -> redis.Redis:
    """A short-timeout client for ``segtag tagger --check``."""
    return make_redis(settings.redis_url, STATUS_TIMEOUT_S)
