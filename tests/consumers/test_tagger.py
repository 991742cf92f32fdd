"""The tagger service against a real broker and Redis: events in, results out."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from consumers.tagger.jobs import DONE
from consumers.tagger.worker import TaggerWorker
from segtag.bus import ensure_topics, make_consumer
from segtag.errors import InvalidEventError
from segtag.events import parse_segments_event, parse_upload
from segtag.pipeline import VideoTagger
from segtag.services.process import free_port
from segtag.services.redis import RedisService
from segtag.settings import Settings
from segtag.sinks.redis_sink import RedisSink
from tests.consumers.helpers import (
    all_committed,
    committed,
    produce_raw,
    produce_uploads,
    read_json,
    running_tagger,
    segtag_cmd,
    settings_env,
    sink_for,
    wait_for,
    wait_statuses,
)

pytestmark = pytest.mark.integration


def test_events_in_results_out(settings: Settings, video_tagger: VideoTagger, videos: dict[str, Path]) -> None:
    produce_uploads(settings, [("vid-a", videos["a"], "a test pattern"), ("vid-b", videos["b"], "")])
    produce_raw(settings, [(b"junk key", b"{not json")])
    produce_uploads(settings, [("vid-bad", videos["text"], "not a video")])
    sink = sink_for(settings)
    settings = settings.replace(metrics_port=free_port())
    with running_tagger(settings, video_tagger):
        statuses = wait_statuses(sink, ["vid-a", "vid-b", "vid-bad"], 120)
        wait_for(lambda: all_committed(settings), 30, "all offsets committed")
        with urllib.request.urlopen(f"http://127.0.0.1:{settings.metrics_port}/metrics", timeout=10) as resp:
            metrics = resp.read().decode()
    assert statuses == {"vid-a": "done", "vid-b": "done", "vid-bad": "failed"}
    assert "segtag_tagger_videos_done_total 2.0" in metrics and "segtag_tagger_windows_total 4.0" in metrics
    assert 'segtag_tagger_videos_failed_total{error_type="VideoUnreadableError"} 1.0' in metrics
    assert 'segtag_tagger_stage_seconds_count{stage="model"} 2.0' in metrics
    assert "segtag_tagger_consumer_lag" in metrics and "segtag_tagger_windows_per_second" in metrics

    a = sink.read_video("vid-a")
    assert a is not None
    assert a["status"] == "done" and a["version"] == "1" and a["model_version"] == video_tagger.model_version
    assert a["num_segments"] == "2" and len(a["segments"]) == 2
    assert [s["segment_id"] for s in a["segments"]] == ["vid-a#0", "vid-a#1"]
    assert [(s["start"], s["end"]) for s in a["segments"]] == [(0.0, 2.0), (2.0, 4.0)]
    for seg in a["segments"]:
        assert 1 <= len(seg["tags"]) <= settings.top_k
        assert len(seg["concepts"]) == 3
        assert seg["embedding"].shape == (256,)
        assert np.linalg.norm(seg["embedding"]) == pytest.approx(1.0, abs=1e-4)
    assert a["tags"] and all(0 <= t["score"] <= 1 for t in a["tags"])

    bad = sink.read_video("vid-bad")
    assert bad is not None and bad["status"] == "failed" and bad["error_type"] == "VideoUnreadableError"

    segs = {e["video_id"]: e for e in read_json(settings, settings.segments_topic)}
    assert set(segs) == {"vid-a", "vid-b", "vid-bad"}
    parsed = parse_segments_event(json.dumps(segs["vid-a"]).encode())
    assert parsed.version == 1 and len(parsed.segments) == 2
    np.testing.assert_allclose(parsed.segments[0].embedding, a["segments"][0]["embedding"])
    assert segs["vid-bad"]["segments"] == []

    completions = {e["video_id"]: e for e in read_json(settings, settings.completions_topic)}
    assert completions["vid-a"]["status"] == "done" and completions["vid-a"]["tags"]
    assert (
        completions["vid-bad"]["status"] == "failed" and completions["vid-bad"]["error_type"] == "VideoUnreadableError"
    )

    dead = read_json(settings, settings.dead_letter_topic)
    assert sorted(d["error_type"] for d in dead) == ["InvalidEventError", "VideoUnreadableError"]
    junk = next(d for d in dead if d["error_type"] == "InvalidEventError")
    assert junk["payload"] == "{not json" and junk["key"] == "junk key" and junk["topic"] == settings.uploads_topic


def _consistent(sink: RedisSink, vid: str, windows: int) -> dict[str, Any]:
    """The video is done with exactly one set of ``windows`` segments of its current version."""
    video = sink.read_video(vid)
    assert video is not None and video["status"] == "done", video
    version = int(video["version"])
    assert int(video["num_segments"]) == windows == len(video["segments"])
    assert [s["segment_id"] for s in video["segments"]] == [f"{vid}#{i}" for i in range(windows)]
    assert {s["version"] for s in video["segments"]} == {version}
    stray = [k for k in sink.client.scan_iter(match=f"{sink.keys.prefix}:segment:{vid}#*")]
    assert len(stray) == windows
    return video


def test_two_taggers_share_the_partitions(
    settings: Settings, video_tagger: VideoTagger, second_tagger: VideoTagger, videos: dict[str, Path]
) -> None:
    assert settings.topic_partitions == 4
    ensure_topics(settings)
    sink = sink_for(settings)
    with running_tagger(settings, video_tagger, "one") as one, running_tagger(settings, second_tagger, "two") as two:
        # Produce only once the group is settled, so no rebalance redoes work.
        wait_for(
            lambda: (
                bool(one.states and two.states)
                and len(one.states) + len(two.states) == 4
                and set(one.states).isdisjoint(two.states)
            ),
            60,
            "both taggers assigned",
        )
        assert one.states and two.states
        vids = [f"share-{i}" for i in range(8)]
        produce_uploads(settings, [(v, videos["a" if i % 2 else "b"], "") for i, v in enumerate(vids)])
        wait_statuses(sink, vids, 150)
        wait_for(lambda: all_committed(settings), 30, "all offsets committed")
        assert one.counts[DONE] > 0 and two.counts[DONE] > 0
        assert one.counts[DONE] + two.counts[DONE] == 8
    for v in vids:
        assert _consistent(sink, v, 2)["version"] == "1"
    done = [e["video_id"] for e in read_json(settings, settings.completions_topic) if e["status"] == "done"]
    assert sorted(done) == sorted(vids)  # each video completed exactly once


def test_reupload_replaces_old_segments_in_upload_order(
    settings: Settings, video_tagger: VideoTagger, videos: dict[str, Path]
) -> None:
    sink = sink_for(settings)
    with running_tagger(settings, video_tagger) as worker:
        produce_uploads(settings, [("re", videos["long"], "long one")])
        wait_for(lambda: sink.statuses(["re"])["re"] == "processing", 90, "first version processing", every_s=0.05)
        polls, since = worker.polls, time.monotonic()
        wait_for(lambda: sink.statuses(["re"])["re"] == "done", 90, "first version done", every_s=0.05)
        # The poll loop kept polling (every 200 ms at most) while the stage threads tagged the video.
        assert worker.polls - polls >= int((time.monotonic() - since) / 0.2 / 2)
        _consistent(sink, "re", 5)
        # Two more uploads back to back: the later one must win.
        produce_uploads(settings, [("re", videos["b"], "b"), ("re", videos["a"], "a")])
        wait_for(lambda: (sink.read_video("re") or {}).get("version") == "3", 90, "third version written")
        wait_for(lambda: all_committed(settings), 30, "all offsets committed")
    video = _consistent(sink, "re", 2)
    assert video["uri"] == videos["a"].as_uri() and video["title"] == "a"
    p = sink.keys.prefix
    assert all(sink.client.exists(f"{p}:segment:re#{i}") == 0 for i in (2, 3, 4))
    events = [e for e in read_json(settings, settings.segments_topic) if e["video_id"] == "re"]
    assert [(e["version"], len(e["segments"])) for e in events] == [(1, 5), (2, 2), (3, 2)]


def test_bad_files_are_dead_lettered_and_the_tagger_goes_on(
    settings: Settings, video_tagger: VideoTagger, videos: dict[str, Path], tmp_path: Path
) -> None:
    cases: dict[str, tuple[Path | str, str]] = {
        "bad-text": (videos["text"], "VideoUnreadableError"),
        "bad-trunc": (videos["truncated"], "VideoUnreadableError"),
        "bad-empty": (videos["empty"], "VideoUnreadableError"),
        "bad-missing": (videos["a"].parent / "missing.mp4", "VideoUnreadableError"),
        "bad-outside": ("file:///etc/hostname", "UnsupportedSourceError"),
        "bad-long": (videos["toolong"], "VideoLimitError"),
    }
    uploads = [(vid, path, "") for vid, (path, _) in cases.items()] + [("good-after", videos["a"], "")]
    produce_uploads(settings, uploads)
    sink = sink_for(settings)
    with running_tagger(settings, video_tagger):
        statuses = wait_statuses(sink, [u[0] for u in uploads], 120)
        wait_for(lambda: all_committed(settings), 30, "all offsets committed")
    assert statuses == {**{v: "failed" for v in cases}, "good-after": "done"}
    dead = {d["video_id"]: d for d in read_json(settings, settings.dead_letter_topic)}
    assert set(dead) == set(cases)
    for vid, (_, error_type) in cases.items():
        assert dead[vid]["error_type"] == error_type, dead[vid]
        assert json.loads(dead[vid]["payload"])["video_id"] == vid and dead[vid]["attempts"] == 1
        video = sink.read_video(vid)
        assert video is not None and video["error_type"] == error_type and video["error"]


def test_redis_restart_loses_nothing(
    settings: Settings, video_tagger: VideoTagger, videos: dict[str, Path], tmp_path: Path
) -> None:
    """Our own Redis (the session's is shared), stopped while videos are in flight."""
    port = free_port()
    own = settings.replace(redis_port=port, redis_url=f"redis://127.0.0.1:{port}/0", state_dir=str(tmp_path / "state"))
    own = own.replace(max_attempts=2)  # exhaust quickly: exercises the seek-back path too
    redis_svc = RedisService(own)
    redis_svc.start()
    try:
        sink = sink_for(own)
        vids = [f"rr-{i}" for i in range(4)]
        with running_tagger(own, video_tagger) as worker:
            produce_uploads(own, [(v, videos["a"], "") for v in vids])
            wait_for(lambda: any(s is not None for s in sink.statuses(vids).values()), 60, "work under way")
            redis_svc.stop()
            time.sleep(5)
            assert redis_svc.start()
            wait_statuses(sink, vids, 150)
            wait_for(lambda: all_committed(own), 30, "all offsets committed")
            assert worker.runner is not None and worker.runner.crashed is None
        for v in vids:
            _consistent(sink, v, 2)
        dead = read_json(own, own.dead_letter_topic, timeout_s=1)
        assert dead == []
    finally:
        redis_svc.stop()


# --- malformed events, property-based -------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
    max_leaves=8,
)
VALID = {"video_id": "ok", "uri": "file:///x.mp4"}
broken_uploads = st.one_of(
    st.binary(max_size=64),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.builds(
        lambda k, v: json.dumps({**VALID, k: v}).encode(), st.sampled_from(["video_id", "uri", "title"]), json_values
    ),
    st.builds(lambda k: json.dumps({**VALID, k: 1}).encode(), st.text(min_size=1, max_size=8)),
)


def _invalid(key: bytes | None, value: bytes) -> bool:
    try:
        parse_upload(value, key)
    except InvalidEventError:
        return True
    return False


@pytest.fixture
def malformed_env(settings: Settings, video_tagger: VideoTagger) -> Iterator[tuple[Settings, TaggerWorker, Any]]:
    ensure_topics(settings)
    reader = make_consumer(settings, f"{settings.consumer_group}-dlq", [settings.dead_letter_topic])
    with running_tagger(settings, video_tagger) as worker:
        yield settings, worker, reader
    reader.close()


@hyp_settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(st.tuples(st.one_of(st.none(), st.binary(max_size=12)), broken_uploads), min_size=1, max_size=8))
def test_malformed_events_all_end_as_dead_letters(
    malformed_env: tuple[Settings, TaggerWorker, Any], batch: list[tuple[bytes | None, bytes]]
) -> None:
    settings, worker, reader = malformed_env
    batch = [(k, v) for k, v in batch if _invalid(k, v)]
    assume(batch)
    positions = produce_raw(settings, batch)
    sent = set(positions)
    got: dict[tuple[int, int], dict[str, Any]] = {}
    deadline = time.monotonic() + 60
    while not sent <= set(got) and time.monotonic() < deadline:
        for records in reader.poll(timeout_ms=500).values():
            for r in records:
                d = json.loads(r.value)
                got[(d["partition"], d["offset"])] = d
    assert sent <= set(got), f"missing dead letters for {sent - set(got)}"
    for pos, (_key, value) in zip(positions, batch, strict=True):
        d = got[pos]
        assert d["error_type"] == "InvalidEventError" and d["error"] and d["topic"] == settings.uploads_topic
        original = d["payload"].encode() if d["payload_encoding"] == "utf-8" else base64.b64decode(d["payload"])
        assert original == value  # the original payload, verbatim
    assert worker.runner is not None and worker.runner.crashed is None and not worker.stop_event.is_set()


# --- separate processes: kill -9, restart, SIGTERM, --check ------------------------------


def _spawn_tagger(settings: Settings, worker_id: str, log_file: Path) -> subprocess.Popen[bytes]:
    with open(log_file, "ab") as out:
        return subprocess.Popen(
            [*segtag_cmd("tagger", "--worker-id", worker_id)],
            env=settings_env(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _check(settings: Settings, worker_id: str) -> tuple[int, Any]:
    res = subprocess.run(
        segtag_cmd("tagger", "--check", "--json", "--worker-id", worker_id),
        env=settings_env(settings),
        capture_output=True,
        timeout=60,
    )
    return res.returncode, json.loads(res.stdout or b"null")


@pytest.mark.slow
def test_kill_9_mid_video_then_restart_and_sigterm(settings: Settings, videos: dict[str, Path], tmp_path: Path) -> None:
    """A tagger killed in the middle of a video: the restarted one finishes it, once and
    correctly. The restarted one then stops cleanly on SIGTERM."""
    ensure_topics(settings)
    sink = sink_for(settings)
    log_file = tmp_path / "taggers.log"
    first = _spawn_tagger(settings, "victim", log_file)
    second: subprocess.Popen[bytes] | None = None
    try:
        wait_for(lambda: _check(settings, "victim")[0] == 0, 120, "the first tagger's heartbeat")
        produce_uploads(settings, [("k9", videos["long"], "killed mid-video")])
        wait_for(lambda: sink.statuses(["k9"])["k9"] == "processing", 120, "k9 processing", every_s=0.02)
        first.kill()  # SIGKILL: no cleanup, no commit
        first.wait(30)
        assert sink.statuses(["k9"])["k9"] == "processing" and committed(settings) == {}

        second = _spawn_tagger(settings, "restarted", log_file)
        wait_statuses(sink, ["k9"], 150)
        wait_for(lambda: all_committed(settings), 30, "k9 committed")
        video = _consistent(sink, "k9", 5)
        assert video["version"] == "1"  # the killed tagger wrote nothing; the restarted one wrote once
        done = [e for e in read_json(settings, settings.completions_topic) if e["video_id"] == "k9"]
        assert [e["status"] for e in done] == ["done"]
        assert read_json(settings, settings.dead_letter_topic, timeout_s=1) == []

        # the heartbeat (every 5 s) reports the finished video
        wait_for(lambda: _check(settings, "restarted")[1][0]["done"] == 1, 30, "heartbeat with done=1")

        # SIGTERM in the middle of a video: it stops promptly and cleanly; the video in
        # hand is either finished and committed or abandoned uncommitted.
        ((part, offset),) = produce_uploads(settings, [("term", videos["long"], "")])
        wait_for(lambda: sink.statuses(["term"])["term"] == "processing", 120, "term processing", every_s=0.02)
        second.send_signal(signal.SIGTERM)
        assert second.wait(60) == 0
        if committed(settings).get(part, 0) > offset:
            _consistent(sink, "term", 5)
        code, beats = _check(settings, "restarted")
        assert code == 1 and beats == []  # a cleanly stopped tagger removes its heartbeat
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(30)
    log_text = log_file.read_text()
    assert '"event": "video_done"' in log_text and '"video_id": "k9"' in log_text
