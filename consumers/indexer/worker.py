"""The indexer's consume loop.

Exactly-once in effect, with at-least-once delivery underneath:

1. At start the index comes from the last snapshot (or Redis, see snapshot.py),
   and every partition of the segments topic is *assigned* (not subscribed: one
   writer owns the whole index) and positioned at the snapshot's offset, falling
   back to the group's committed offset, then to the log start.
2. Events are applied in log order. An upsert whose version is not newer than the
   indexed one changes nothing, so events replayed after a crash are harmless.
3. Every so often the index is snapshotted atomically together with the next
   offset of every partition, and only then are those offsets committed.

A kill -9 at any point therefore restarts from a snapshot and the exact log
positions it includes: nothing lost, nothing applied twice. SIGTERM/SIGINT stop
the loop, which writes a last snapshot and commits before it exits.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import redis
from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from consumers.indexer.snapshot import SnapshotPolicy, load_or_rebuild
from segtag.bus import ensure_topics, make_consumer, make_producer
from segtag.errors import PoisonError, ServiceError, SinkUnavailableError
from segtag.index import IndexConfig, IndexDataError, SegmentIndex
from segtag.index_records import Keys, decode_segments_event
from segtag.index_snapshot import position_key, write_snapshot
from segtag.settings import Settings

log = logging.getLogger(__name__)

ASSIGN_TRIES = 30
DEAD_LETTER_TIMEOUT_S = 10.0


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class IndexerOptions:
    """Tunables of the indexer process (the index itself: ``index``)."""

    index: IndexConfig = field(default_factory=IndexConfig)
    snapshot_interval_s: float = 10.0
    snapshot_every: int = 1000
    poll_timeout_ms: int = 500
    max_poll_records: int = 200
    heartbeat_s: float = 5.0
    worker_id: str = field(default_factory=_default_worker_id)
    metrics_port: int = 0  # 0: no Prometheus endpoint (the tagger owns Settings.metrics_port)


class IndexerMetrics:
    """The indexer's Prometheus metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.events = Counter("segtag_indexer_events", "segments events by outcome", ["outcome"], registry=r)
        self.vectors = Gauge("segtag_indexer_vectors", "live vectors in the index", registry=self.registry)
        self.tombstones = Gauge("segtag_indexer_tombstones", "HNSW nodes awaiting a rebuild", registry=self.registry)
        self.snapshot_seconds = Histogram(
            "segtag_indexer_snapshot_seconds", "time to write a snapshot", registry=self.registry
        )


class IndexerWorker:
    """Consumes segment events into the index; the only writer of ``index_dir``."""

    def __init__(self, settings: Settings, options: IndexerOptions, redis_client: redis.Redis | None = None) -> None:
        self.settings = settings
        self.options = options
        self.redis = redis_client or redis.Redis.from_url(settings.redis_url, socket_timeout=10)
        self.index: SegmentIndex | None = None
        self.applied = 0
        self.ignored = 0
        self.dead_lettered = 0
        self._stop = threading.Event()
        self._producer: KafkaProducer | None = None
        self._keys = Keys(settings.redis_prefix)
        self._last_heartbeat = 0.0
        self.metrics = IndexerMetrics()

    def stop(self) -> None:
        """Ask the loop to finish: it snapshots, commits and returns."""
        self._stop.set()

    # -- main loop ----------------------------------------------------------
    def run(self) -> None:
        server = None
        if self.options.metrics_port:
            server, _ = start_http_server(self.options.metrics_port, registry=self.metrics.registry)
        try:
            self._run()
        finally:
            if server is not None:
                server.shutdown()

    def _run(self) -> None:
        with _writer_lock(Path(self.settings.index_dir)):
            start = load_or_rebuild(self.settings, self.options.index, self.redis)
            self.index = start.snapshot.index
            if start.rebuilt:
                # Readers (API, CLI) need a snapshot to load; the log positions are
                # unknown, so none are recorded and the group's commits apply.
                write_snapshot(self.settings.index_dir, self.index, {})
            ensure_topics(self.settings, [self.settings.segments_topic])
            consumer = make_consumer(
                self.settings, self.settings.indexer_group, max_poll_records=self.options.max_poll_records
            )
            try:
                positions = self._assign(consumer, start.snapshot.positions)
                self._loop(consumer, positions)
            finally:
                consumer.close(autocommit=False)
                if self._producer is not None:
                    self._producer.close(timeout=5)

    def _loop(self, consumer: KafkaConsumer, positions: dict[TopicPartition, int]) -> None:
        assert self.index is not None
        policy = SnapshotPolicy(self.options.snapshot_interval_s, self.options.snapshot_every)
        pending = 0
        log.info("indexer %s consuming %s", self.options.worker_id, self.settings.segments_topic)
        while not self._stop.is_set():
            batch = consumer.poll(timeout_ms=self.options.poll_timeout_ms)
            for tp, records in batch.items():
                for record in records:
                    self._apply(record)
                    positions[tp] = record.offset + 1
                    pending += 1
            if pending:
                self.index.maybe_rebuild()
            if policy.due(pending):
                self._checkpoint(consumer, positions)
                policy.done()
                pending = 0
            self._heartbeat(pending)
        if pending:
            self._checkpoint(consumer, positions)
        log.info("indexer stopped: %d vectors, %d events applied", len(self.index), self.applied)

    def _assign(self, consumer: KafkaConsumer, saved: dict[str, int]) -> dict[TopicPartition, int]:
        topic = self.settings.segments_topic
        partitions = None
        for _ in range(ASSIGN_TRIES):
            partitions = consumer.partitions_for_topic(topic)
            if partitions:
                break
            time.sleep(0.5)
        if not partitions:
            raise SinkUnavailableError(f"topic {topic} has no partitions (is the broker up?)")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        for tp in tps:
            key = position_key(tp.topic, tp.partition)
            if key in saved:
                consumer.seek(tp, saved[key])  # the snapshot is the truth, not the group
                continue
            committed = consumer.committed(tp)
            if committed is not None:
                consumer.seek(tp, committed)
            else:
                consumer.seek_to_beginning(tp)
        positions = {tp: consumer.position(tp) for tp in tps}
        log.info("positions: %s", {f"{tp.topic}:{tp.partition}": off for tp, off in positions.items()})
        return positions

    # -- applying events --------------------------------------------------
    def _apply(self, record: Any) -> None:
        assert self.index is not None
        try:
            event = decode_segments_event(record.value)
            if event.op == "delete":
                current = self.index.video_version(event.video_id)
                changed = current is not None and event.version >= current
                if changed:
                    self.index.remove_video(event.video_id)
            else:
                changed = self.index.upsert_video(event.video_id, event.version, event.segment_ids, event.vectors)
        except (PoisonError, IndexDataError) as exc:
            log.warning("bad segments event at %s:%d@%d: %s", record.topic, record.partition, record.offset, exc)
            self._dead_letter(record, exc)
            return
        if changed:
            self.applied += 1
            self.metrics.events.labels("applied").inc()
        else:
            self.ignored += 1
            self.metrics.events.labels("ignored").inc()
            log.debug("ignored stale event for %s version %d", event.video_id, event.version)

    def _dead_letter(self, record: Any, exc: Exception) -> None:
        payload = record.value.decode("utf-8", "replace") if record.value is not None else None
        value = {
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "key": record.key.decode("utf-8", "replace") if record.key is not None else None,
            "payload": payload,
            "error_type": type(exc).__name__,
            "error": str(exc),
            "attempts": 1,
            "failed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        try:
            if self._producer is None:
                self._producer = make_producer(self.settings)
            self._producer.send(self.settings.dead_letter_topic, key=record.key, value=json.dumps(value).encode()).get(
                timeout=DEAD_LETTER_TIMEOUT_S
            )
            self.dead_lettered += 1
            self.metrics.events.labels("dead_lettered").inc()
        except (KafkaError, SinkUnavailableError) as err:
            # The event is unusable either way; losing its dead letter must not stall the index.
            log.error("could not dead-letter %s:%d@%d: %s", record.topic, record.partition, record.offset, err)

    # -- durability ---------------------------------------------------------
    def _checkpoint(self, consumer: KafkaConsumer, positions: dict[TopicPartition, int]) -> None:
        assert self.index is not None
        saved = {position_key(tp.topic, tp.partition): off for tp, off in positions.items()}
        started = time.monotonic()
        with self.metrics.snapshot_seconds.time():
            write_snapshot(self.settings.index_dir, self.index, saved)
        self.metrics.vectors.set(len(self.index))
        self.metrics.tombstones.set(self.index.dead_count)
        try:
            consumer.commit({tp: OffsetAndMetadata(off, "", -1) for tp, off in positions.items()})
        except KafkaError as exc:
            # The snapshot already holds the positions; the commit is only a fallback.
            log.warning("offset commit failed after snapshot: %s", exc)
        log.info(
            "snapshot: %d vectors, %d applied, %d ignored, %.2fs",
            len(self.index),
            self.applied,
            self.ignored,
            time.monotonic() - started,
        )

    def _heartbeat(self, pending: int) -> None:
        now = time.monotonic()
        if now - self._last_heartbeat < self.options.heartbeat_s or self.index is None:
            return
        self._last_heartbeat = now
        beat = {
            "worker": self.options.worker_id,
            "pid": os.getpid(),
            "vectors": len(self.index),
            "kind": self.index.kind,
            "applied": self.applied,
            "pending": pending,
            "at": time.time(),
        }
        try:
            ttl = max(1, int(self.options.heartbeat_s * 3))
            self.redis.set(self._keys.health("indexer", self.options.worker_id), json.dumps(beat), ex=ttl)
        except redis.RedisError as exc:
            log.debug("heartbeat skipped: %s", exc)


@contextlib.contextmanager
def _writer_lock(index_dir: Path) -> Any:
    """Refuse to start a second writer on the same index directory (an flock, freed on exit or kill)."""
    index_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(index_dir / "indexer.lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise ServiceError(f"another indexer is writing {index_dir}") from exc
        yield
    finally:
        os.close(fd)


def run_indexer(settings: Settings, options: IndexerOptions) -> int:
    """Run the indexer until SIGTERM/SIGINT (snapshot, commit, exit 0)."""
    worker = IndexerWorker(settings, options)

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: finishing", signum)
        worker.stop()

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        worker.run()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0
