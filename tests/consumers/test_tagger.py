"""The tagger service against a real broker and Redis: events in, results out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segtag.events import parse_segments_event
from segtag.pipeline import VideoTagger
from segtag.settings import Settings
from tests.consumers.helpers import (
    all_committed,
    produce_raw,
    produce_uploads,
    read_json,
    running_tagger,
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
    with running_tagger(settings, video_tagger):
        statuses = wait_statuses(sink, ["vid-a", "vid-b", "vid-bad"], 120)
        wait_for(lambda: all_committed(settings), 30, "all offsets committed")
    assert statuses == {"vid-a": "done", "vid-b": "done", "vid-bad": "failed"}

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
    parsed = parse_segments_event(__import__("json").dumps(segs["vid-a"]).encode())
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
