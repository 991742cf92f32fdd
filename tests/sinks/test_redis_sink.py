"""The Redis sink against a real Redis: schema, replacement of versions, atomicity."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import pytest

from segtag.errors import SinkUnavailableError
from segtag.services.process import free_port
from segtag.settings import Settings
from segtag.sinks.redis_sink import RedisSink, _text, make_redis

pytestmark = pytest.mark.integration


@dataclass
class Seg:
    index: int
    start: float
    end: float
    tags: list[tuple[str, float]]
    concepts: list[tuple[str, float]] = field(default_factory=lambda: [("tabby", 0.5), ("lynx", 0.2), ("tiger", 0.1)])
    embedding: np.ndarray = field(default_factory=lambda: np.full(8, 0.125, np.float32))


@pytest.fixture
def sink(live_settings: Settings) -> RedisSink:
    return RedisSink(make_redis(live_settings.redis_url), live_settings.redis_prefix)


def segs(n: int, tag: str) -> list[Seg]:
    return [Seg(i, 5.0 * i, 5.0 * i + 5, [(tag, 0.9 - 0.1 * i), ("common", 0.3)]) for i in range(n)]


def keys(sink: RedisSink) -> set[str]:
    return {k.decode() if isinstance(k, bytes) else k for k in sink.client.scan_iter(match=sink.keys.prefix + ":*")}


def test_write_done_follows_the_schema(sink: RedisSink) -> None:
    p = sink.keys.prefix
    out = sink.write_done("v1", "file:///a.mp4", "A", [("cat", 0.8), ("common", 0.4)], segs(2, "cat"), 10.0, "m-1")
    assert out.version == 1 and out.removed_segments == 0
    c = sink.client
    video = {_text(k): _text(v) for k, v in c.hgetall(f"{p}:video:v1").items()}
    assert video["status"] == "done" and video["version"] == "1" and video["num_segments"] == "2"
    assert video["uri"] == "file:///a.mp4" and video["model_version"] == "m-1" and video["duration_s"] == "10.000"
    assert {"created_at", "updated_at", "tags", "error", "error_type", "attempts", "title"} <= set(video)
    assert c.zrange(f"{p}:video:v1:segments", 0, -1, withscores=True) == [(b"v1#0", 0.0), (b"v1#1", 5.0)]
    seg = c.hgetall(f"{p}:segment:v1#1")
    assert seg[b"video_id"] == b"v1" and seg[b"index"] == b"1" and seg[b"version"] == b"1"
    emb = seg[b"embedding"]
    assert isinstance(emb, bytes)
    np.testing.assert_array_equal(np.frombuffer(emb, "<f4"), np.full(8, 0.125))
    assert c.zscore(f"{p}:tag:cat:segments", "v1#0") == pytest.approx(0.9)
    assert c.zscore(f"{p}:tag:cat:videos", "v1") == pytest.approx(0.8)
    assert c.zscore(f"{p}:tags", "cat") == 1 and c.zscore(f"{p}:tags", "common") == 1
    assert c.zscore(f"{p}:videos", "v1") is not None


def test_reupload_replaces_everything_of_the_old_version(sink: RedisSink) -> None:
    p = sink.keys.prefix
    sink.write_done("v1", "file:///a.mp4", "A", [("cat", 0.8)], segs(3, "cat"), 15.0, "m-1")
    sink.write_done("v2", "file:///b.mp4", "B", [("cat", 0.7)], segs(1, "cat"), 5.0, "m-1")
    before = keys(sink)
    out = sink.write_done("v1", "file:///c.mp4", "C", [("dog", 0.6)], segs(1, "dog"), 5.0, "m-1")
    assert out.version == 2 and out.removed_segments == 3
    after = keys(sink)
    assert f"{p}:segment:v1#1" in before and f"{p}:segment:v1#1" not in after
    assert f"{p}:segment:v1#2" not in after and f"{p}:segment:v1#0" in after
    assert f"{p}:tag:cat:videos" in after  # v2 still carries cat
    c = sink.client
    assert c.zscore(f"{p}:tag:cat:videos", "v1") is None
    assert c.zrange(f"{p}:tag:cat:segments", 0, -1) == [b"v2#0"]
    assert c.zrange(f"{p}:tag:dog:segments", 0, -1) == [b"v1#0"]
    assert c.zscore(f"{p}:tags", "cat") == 1 and c.zscore(f"{p}:tags", "dog") == 1
    video = sink.read_video("v1")
    assert video is not None and video["uri"] == "file:///c.mp4" and video["version"] == "2"
    assert [s["version"] for s in video["segments"]] == [2]


def test_failure_removes_old_results(sink: RedisSink) -> None:
    p = sink.keys.prefix
    sink.write_done("v1", "file:///a.mp4", "A", [("cat", 0.8)], segs(2, "cat"), 10.0, "m-1")
    out = sink.write_failed("v1", "file:///bad.mp4", "A", "VideoUnreadableError", "corrupt", "m-1", attempts=1)
    assert out.version == 2 and out.removed_segments == 2
    video = sink.read_video("v1")
    assert video is not None and video["status"] == "failed" and video["error"] == "corrupt"
    assert video["segments"] == [] and video["tags"] == []
    assert keys(sink) == {f"{p}:video:v1", f"{p}:videos"}  # no tag index, no P:tags entry left


def test_status_updates_keep_results(sink: RedisSink) -> None:
    sink.set_status("new", "queued", "file:///n.mp4", "N")
    assert sink.statuses(["new", "unknown"]) == {"new": "queued", "unknown": None}
    sink.write_done("v1", "file:///a.mp4", "A", [("cat", 0.8)], segs(2, "cat"), 10.0, "m-1")
    sink.set_status("v1", "processing", "file:///other.mp4", "Other")
    video = sink.read_video("v1")
    assert video is not None and video["status"] == "processing"
    # uri/title of a known video change only with its results, in the final write
    assert video["uri"] == "file:///a.mp4" and len(video["segments"]) == 2
    with pytest.raises(ValueError):
        sink.set_status("v1", "done")


def test_readers_never_see_half_a_video(sink: RedisSink) -> None:
    """A writer flips a video between a 4-segment and a 1-segment version while readers
    check, in one MULTI snapshot and through read_video, that everything agrees."""
    p = sink.keys.prefix
    stop = threading.Event()
    versions = [([("cat", 0.9)], segs(4, "cat")), ([("dog", 0.8)], segs(1, "dog"))]
    writer = RedisSink(make_redis(sink_url(sink)), p)
    errors: list[str] = []

    def write() -> None:
        n = 0
        while not stop.is_set() and n < 150:
            tags, ss = versions[n % 2]
            writer.write_done("flip", "file:///f.mp4", "F", tags, ss, 5.0 * len(ss), "m")
            n += 1

    t = threading.Thread(target=write)
    t.start()
    checks = 0
    try:
        while t.is_alive() and checks < 400:
            pipe = sink.client.pipeline(transaction=True)
            pipe.hmget(f"{p}:video:flip", ["num_segments", "tags"])
            pipe.zcard(f"{p}:video:flip:segments")
            pipe.zcard(f"{p}:tag:cat:segments")
            pipe.zcard(f"{p}:tag:dog:segments")
            (num, _tags), n_segs, n_cat, n_dog = pipe.execute()
            if num is not None:
                want = int(num)
                if n_segs != want or (n_cat, n_dog) not in ((4, 0), (0, 1)) or (n_cat + n_dog) != want:
                    errors.append(f"torn snapshot: num={want} zcard={n_segs} cat={n_cat} dog={n_dog}")
            try:
                video = sink.read_video("flip")
            except SinkUnavailableError:
                # A reader starved by a writer that never pauses gets the retryable error,
                # never a torn read; under load that can happen, and it is the contract.
                continue
            if video is not None:
                versions_seen = {s["version"] for s in video["segments"]}
                if len(video["segments"]) != int(video["num_segments"]) or versions_seen != {int(video["version"])}:
                    errors.append(f"read_video mixed versions: {video['version']} vs {versions_seen}")
            checks += 1
    finally:
        stop.set()
        t.join()
    assert checks > 10
    assert not errors, errors[:3]


def sink_url(sink: RedisSink) -> str:
    kw = sink.client.connection_pool.connection_kwargs
    return f"redis://{kw['host']}:{kw['port']}/{kw.get('db', 0)}"


def test_redis_away_is_retryable() -> None:
    sink = RedisSink(make_redis(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.5), "x")
    with pytest.raises(SinkUnavailableError, match="Redis unavailable"):
        sink.write_done("v", "file:///a", "", [], [], 1.0, "m")
    with pytest.raises(SinkUnavailableError):
        sink.set_status("v", "queued")
