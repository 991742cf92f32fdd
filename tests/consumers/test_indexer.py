"""The indexer service on the real broker and Redis: log -> index -> snapshot -> restart.

Events are built here following docs/contracts.md (the tagger is another stage).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from consumers.indexer import IndexerOptions, IndexerWorker
from segtag.bus import ensure_topics, make_consumer, make_producer
from segtag.index import IndexConfig
from segtag.index_records import SegmentRecord, encode_segments_event, write_video
from segtag.index_snapshot import Snapshot, read_snapshot, snapshot_path
from segtag.settings import Settings
from tests.test_index import Video, make_corpus

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _event(v: Video, version: int, vectors: np.ndarray | None = None) -> bytes:
    x = v.vectors if vectors is None else vectors
    segs = [(sid, 5.0 * i, 5.0 * (i + 1), x[i]) for i, sid in enumerate(v.segment_ids[: len(x)])]
    return encode_segments_event(v.video_id, version, segs)


def _publish(s: Settings, messages: list[tuple[str, bytes]]) -> None:
    producer = make_producer(s)
    try:
        for key, value in messages:
            producer.send(s.segments_topic, key=key.encode(), value=value)
        producer.flush(timeout=15)
    finally:
        producer.close()


def _wait_for(
    predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition", state: Callable[[], str] = str
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} {state()}")


def _snapshot(s: Settings) -> Snapshot | None:
    try:
        return read_snapshot(snapshot_path(s.index_dir))
    except FileNotFoundError:
        return None


def _snapshot_has(s: Settings, n: int) -> Callable[[], bool]:
    def check() -> bool:
        snap = _snapshot(s)
        return snap is not None and len(snap.index) == n

    return check


@pytest.fixture
def settings2(live_settings: Settings) -> Settings:
    s = live_settings.replace(topic_partitions=2)
    ensure_topics(s, [s.segments_topic, s.dead_letter_topic], partitions=2)
    return s


@pytest.fixture
def worker_thread(settings2: Settings) -> Iterator[Callable[..., IndexerWorker]]:
    started: list[tuple[IndexerWorker, threading.Thread]] = []

    def start(**options: object) -> IndexerWorker:
        opts = IndexerOptions(snapshot_interval_s=0.3, poll_timeout_ms=100, **options)  # type: ignore[arg-type]
        worker = IndexerWorker(settings2, opts)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        started.append((worker, thread))
        return worker

    yield start
    for worker, thread in started:
        worker.stop()
        thread.join(timeout=30)
        assert not thread.is_alive()


Start = Callable[..., IndexerWorker]


def test_events_are_indexed_and_reingest_replaces(settings2: Settings, worker_thread: Start) -> None:
    s = settings2
    corpus = make_corpus(sources=4, videos_per_source=3)
    _publish(s, [(v.video_id, _event(v, 1)) for v in corpus])
    worker = worker_thread()
    _wait_for(_snapshot_has(s, 36), what="36 vectors in the snapshot")

    target, other = corpus[0], corpus[-1]
    # Version 2 of the target looks like another source and has 2 segments; then a
    # late (stale) version 1 and a poison event arrive.
    _publish(
        s,
        [
            (target.video_id, _event(target, 2, other.vectors[:2])),
            (target.video_id, _event(target, 1)),
            ("junk", b"{not json"),
            ("junk", json.dumps({"video_id": "x", "version": 1, "segments": [{"segment_id": "x#0"}]}).encode()),
        ],
    )
    _wait_for(
        lambda: worker.applied + worker.ignored + worker.dead_lettered >= 12 + 4,
        what="all events handled",
        state=lambda: f"applied {worker.applied} ignored {worker.ignored} dead {worker.dead_lettered}",
    )
    _wait_for(_snapshot_has(s, 35), what="the re-ingested video in the snapshot")
    snap = _snapshot(s)
    assert snap is not None
    index = snap.index
    assert index.video_version(target.video_id) == 2
    assert index.video_segments(target.video_id) == target.segment_ids[:2]
    assert index.physical_size == len(index) == 35
    hits = index.search(target.vectors[2], 35)[0]
    assert target.segment_ids[2] not in {h.segment_id for h in hits}
    assert index.search(other.vectors[0], 2)[0][1].segment_id in (target.segment_ids[0], other.segment_ids[0])
    assert worker.ignored == 1 and worker.dead_lettered == 2
    sample = worker.metrics.registry.get_sample_value
    assert sample("segtag_indexer_events_total", {"outcome": "applied"}) == 13
    assert sample("segtag_indexer_events_total", {"outcome": "dead_lettered"}) == 2
    assert sum(snap.positions.values()) == 12 + 4  # both partitions, every event included

    dead = make_consumer(s, s.indexer_group + "-dl", [s.dead_letter_topic])
    try:
        got: list = []
        deadline = time.monotonic() + 20
        while len(got) < 2 and time.monotonic() < deadline:
            for records in dead.poll(timeout_ms=300).values():
                got.extend(json.loads(r.value) for r in records)
    finally:
        dead.close()
    assert {g["error_type"] for g in got} == {"InvalidEventError"}
    assert {g["topic"] for g in got} == {s.segments_topic}


def _indexer_env(s: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGTAG_")}
    env.update(
        {
            "SEGTAG_KAFKA_BOOTSTRAP_SERVERS": s.kafka_bootstrap_servers,
            "SEGTAG_REDIS_URL": s.redis_url,
            "SEGTAG_REDIS_PREFIX": s.redis_prefix,
            "SEGTAG_SEGMENTS_TOPIC": s.segments_topic,
            "SEGTAG_DEAD_LETTER_TOPIC": s.dead_letter_topic,
            "SEGTAG_INDEXER_GROUP": s.indexer_group,
            "SEGTAG_INDEX_DIR": s.index_dir,
            "SEGTAG_TOPIC_PARTITIONS": str(s.topic_partitions),
            "SEGTAG_STATE_DIR": s.state_dir,
        }
    )
    return env


def _spawn(s: Settings, log_file: Path) -> subprocess.Popen[bytes]:
    with open(log_file, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "segtag", "indexer", "--snapshot-interval", "0.2", "--snapshot-every", "5"],
            cwd=REPO,
            env=_indexer_env(s),
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def test_kill_9_and_restart_loses_and_duplicates_nothing(settings2: Settings, tmp_path: Path) -> None:
    s = settings2
    log_file = tmp_path / "indexer.log"
    corpus = make_corpus(sources=6, videos_per_source=5)  # 30 videos, 90 segments
    first, second = corpus[:18], corpus[18:]
    _publish(s, [(v.video_id, _event(v, 1)) for v in first])
    proc = _spawn(s, log_file)
    try:
        _wait_for(lambda: (snap := _snapshot(s)) is not None and len(snap.index) >= 15, what="a first snapshot")
        # Re-ingest some videos and add the rest while the indexer runs, then kill it
        # without warning somewhere in the middle.
        reingest = [(v.video_id, _event(v, 2, v.vectors[:2])) for v in first[:6]]
        _publish(s, reingest + [(v.video_id, _event(v, 1)) for v in second[:6]])
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        killed_at = _snapshot(s)
        assert killed_at is not None
        _publish(s, [(v.video_id, _event(v, 1)) for v in second[6:]])
        proc = _spawn(s, log_file)
        expected = 90 - 6  # six videos went from 3 to 2 segments
        _wait_for(_snapshot_has(s, expected), timeout=60, what=f"{expected} vectors after the restart")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log_file.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    snap = _snapshot(s)
    assert snap is not None
    index = snap.index
    live = {sid for v in corpus for sid in v.segment_ids} - {v.segment_ids[2] for v in first[:6]}
    assert set(index.segment_ids()) == live
    assert len(index) == index.physical_size == len(live)  # one vector per distinct segment
    assert all(index.video_version(v.video_id) == 2 for v in first[:6])
    assert sum(snap.positions.values()) == 18 + 6 + 6 + 6
    # The group's committed offsets follow the snapshot.
    consumer = make_consumer(s, s.indexer_group)
    try:
        from kafka import TopicPartition

        committed = {p: consumer.committed(TopicPartition(s.segments_topic, p)) for p in (0, 1)}
    finally:
        consumer.close()
    assert sum(c or 0 for c in committed.values()) == 36
    text = log_file.read_text()
    assert "loaded snapshot" in text  # the second start resumed from the snapshot


def test_corrupt_snapshot_is_rebuilt_from_redis(settings2: Settings, worker_thread: Start) -> None:
    s = settings2
    r = redis.Redis.from_url(s.redis_url)
    corpus = make_corpus(sources=3, videos_per_source=3)
    for v in corpus[:8]:
        records = [SegmentRecord(5.0 * i, 5.0 * i + 5, x) for i, x in enumerate(v.vectors)]
        write_video(r, s.redis_prefix, v.video_id, records)
    # A failed video is not indexed.
    write_video(r, s.redis_prefix, corpus[8].video_id, [], status="failed")
    Path(s.index_dir).mkdir(parents=True, exist_ok=True)
    snapshot_path(s.index_dir).write_bytes(b"SEGTAGIX garbage from a bad disk")

    # The log holds one of those videos at the version Redis has (ignored) and a newer one.
    newer = _event(corpus[1], 2, corpus[1].vectors[:1])
    _publish(s, [(corpus[0].video_id, _event(corpus[0], 1)), (corpus[1].video_id, newer)])
    worker = worker_thread(index=IndexConfig(kind="hnsw", hnsw_m=8))
    _wait_for(lambda: worker.applied + worker.ignored >= 2, what="the log replayed")
    _wait_for(_snapshot_has(s, 24 - 2), what="the rebuilt index")
    snap = _snapshot(s)
    assert snap is not None
    assert snap.index.kind == "hnsw"
    assert set(snap.index.videos()) == {v.video_id for v in corpus[:8]}
    assert snap.index.video_version(corpus[1].video_id) == 2
    assert worker.ignored == 1
    assert list(Path(s.index_dir).glob("segments.snapshot.corrupt-*"))
    q = corpus[4].vectors[1]
    assert snap.index.search(q, 1)[0][0].segment_id == corpus[4].segment_ids[1]
    r.close()
