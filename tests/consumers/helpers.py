"""Builders shared by the tagger, pipeline and stream-CLI tests: a tiny model, tiny
videos, settings that point at them, a tagger running in a thread, and Kafka readers."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from kafka import KafkaConsumer, KafkaProducer

from consumers.tagger.worker import TaggerWorker
from segtag.bus import ensure_topics, make_producer
from segtag.checkpoint import save_model
from segtag.events import make_upload
from segtag.model import SegTagger, preset
from segtag.pipeline import VideoTagger
from segtag.settings import Settings
from segtag.sinks.redis_sink import RedisSink, make_redis
from segtag.testing.media import make_video

VOCAB = [f"tag{i}" for i in range(8)]
# Few sampled frames per video: EfficientNet on a shared CPU is the slow part.
# A topic that was just created may not have a partition leader yet on a loaded
# machine: retry sends for several seconds rather than 0.5 s.
PATIENT_PRODUCER = {"retries": 40, "retry_backoff_ms": 250}
WINDOW_S = 2.0
SAMPLE_FPS = 1.0


def build_model(directory: Path) -> str:
    """A tiny demo-preset checkpoint with random weights; returns its version."""
    torch.manual_seed(1234)
    model = SegTagger(preset("demo", num_classes=len(VOCAB)))
    return save_model(directory, model, VOCAB, {"name": "tiny-test"})


def build_videos(directory: Path) -> dict[str, Path]:
    """Small test videos: two 4 s clips, one 9 s clip (for mid-video kills), bad files."""
    directory.mkdir(parents=True, exist_ok=True)
    videos = {
        "a": make_video(directory / "a.mp4", seconds=4, width=96, height=72, source="testsrc2"),
        "b": make_video(directory / "b.mp4", seconds=4, width=96, height=72, source="smptebars", audio=False),
        "long": make_video(directory / "long.mp4", seconds=9, width=96, height=72, source="mandelbrot"),
        # over the tests' max_duration_s (10 s): refused after probing, never decoded
        "toolong": make_video(directory / "toolong.mp4", seconds=12, width=32, height=24, fps=5, audio=False),
    }
    (directory / "text.mp4").write_text("this is not a video\n" * 20)
    data = videos["a"].read_bytes()
    (directory / "truncated.mp4").write_bytes(data[: len(data) // 3])
    (directory / "empty.mp4").write_bytes(b"")
    videos.update(text=directory / "text.mp4", truncated=directory / "truncated.mp4", empty=directory / "empty.mp4")
    return videos


def tagger_settings(base: Settings, model_dir: Path, media_dir: Path, **changes: Any) -> Settings:
    return base.replace(
        model_dir=str(model_dir),
        media_roots=(str(media_dir),),
        window_s=WINDOW_S,
        sample_fps=SAMPLE_FPS,
        device="cpu",
        batch_size=16,
        batch_wait_ms=30,
        max_attempts=3,
        max_duration_s=10.0,
        **changes,
    )


@contextmanager
def running_tagger(
    settings: Settings, tagger: VideoTagger, worker_id: str | None = None, **kwargs: Any
) -> Iterator[TaggerWorker]:
    """A TaggerWorker polling on a thread; stopped (and checked to stop) on exit."""
    worker = TaggerWorker(settings, worker_id=worker_id or f"test-{uuid.uuid4().hex[:6]}", tagger=tagger, **kwargs)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            worker.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name=f"worker-{worker.worker_id}", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.request_stop()
        thread.join(60)
        assert not thread.is_alive(), "the tagger did not stop within 60 s"
    if errors:
        raise errors[0]


def produce_uploads(settings: Settings, uploads: Sequence[tuple[str, Path | str, str]]) -> list[tuple[int, int]]:
    """Send valid upload events; returns (partition, offset) of each."""
    ensure_topics(settings)
    producer = make_producer(settings, **PATIENT_PRODUCER)
    try:
        out = []
        for vid, path, title in uploads:
            uri = path.as_uri() if isinstance(path, Path) else path
            event = make_upload(vid, uri, title)
            meta = producer.send(settings.uploads_topic, key=vid.encode(), value=event.to_bytes()).get(30)
            out.append((meta.partition, meta.offset))
        return out
    finally:
        producer.close(timeout=10)


def produce_raw(settings: Settings, records: Sequence[tuple[bytes | None, bytes | None]]) -> list[tuple[int, int]]:
    ensure_topics(settings)
    producer: KafkaProducer = make_producer(settings, **PATIENT_PRODUCER)
    try:
        return [
            (m.partition, m.offset)
            for m in (producer.send(settings.uploads_topic, key=k, value=v).get(30) for k, v in records)
        ]
    finally:
        producer.close(timeout=10)


def read_topic(settings: Settings, topic: str, timeout_s: float = 5.0) -> list[Any]:
    """Every record of a topic, read from the start without a group."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers.split(","),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=int(timeout_s * 1000),
    )
    try:
        consumer.subscribe([topic])
        return list(consumer)
    finally:
        consumer.close()


def read_json(settings: Settings, topic: str, timeout_s: float = 2.0) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in read_topic(settings, topic, timeout_s)]


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment of a `segtag` subprocess that reproduces ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGTAG_")}
    for f in fields(Settings):
        value = getattr(settings, f.name)
        env["SEGTAG_" + f.name.upper()] = ",".join(value) if isinstance(value, tuple) else str(value)
    env["SEGTAG_LOG_LEVEL"] = "INFO"
    return env


def segtag_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "segtag", *args]


def sink_for(settings: Settings) -> RedisSink:
    return RedisSink(make_redis(settings.redis_url), settings.redis_prefix)


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str, every_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def wait_statuses(
    sink: RedisSink, vids: list[str], timeout_s: float, final: tuple[str, ...] = ("done", "failed")
) -> dict[str, str | None]:
    """Wait until every video has a final status; returns the statuses."""
    last: dict[str, str | None] = {}

    def ready() -> bool:
        nonlocal last
        last = sink.statuses(vids)
        return all(s in final for s in last.values())

    try:
        wait_for(ready, timeout_s, f"final statuses of {vids}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last statuses {last}") from None
    return last


def committed(settings: Settings, group: str | None = None) -> dict[int, int]:
    """Committed offsets of the tagger group on the uploads topic, by partition."""
    from kafka import TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers.split(","),
        group_id=group or settings.consumer_group,
        enable_auto_commit=False,
    )
    try:
        parts = consumer.partitions_for_topic(settings.uploads_topic) or set()
        out = {}
        for p in parts:
            off = consumer.committed(TopicPartition(settings.uploads_topic, p))
            if off is not None:
                out[p] = off
        return out
    finally:
        consumer.close()


def end_offsets(settings: Settings) -> dict[int, int]:
    from kafka import TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers.split(","))
    try:
        parts = consumer.partitions_for_topic(settings.uploads_topic) or set()
        tps = [TopicPartition(settings.uploads_topic, p) for p in parts]
        # Empty partitions have nothing to commit: leave them out.
        return {tp.partition: o for tp, o in consumer.end_offsets(tps).items() if o > 0}
    finally:
        consumer.close()


def all_committed(settings: Settings) -> bool:
    """True when the tagger group committed the end of every non-empty partition."""
    return committed(settings) == end_offsets(settings)
