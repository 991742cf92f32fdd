"""`segtag produce`, `segtag tag` (local mode) and `segtag tagger --check` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segtag.cli import main
from segtag.events import parse_upload
from segtag.settings import Settings
from segtag.testing.media import make_video
from tests.consumers.helpers import VOCAB, build_model, read_topic, settings_env, tagger_settings


def use_settings(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    for key, value in settings_env(settings).items():
        if key.startswith("SEGTAG_"):
            monkeypatch.setenv(key, value)


@pytest.mark.integration
def test_produce_sends_a_valid_keyed_event(
    live_settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_settings(monkeypatch, live_settings)
    code = main(["produce", "--video-id", "cli-1", "--uri", "file:///m/a.mp4", "--title", "T", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["topic"] == live_settings.uploads_topic and out["event"]["video_id"] == "cli-1"
    (record,) = read_topic(live_settings, live_settings.uploads_topic, timeout_s=3)
    assert record.key == b"cli-1" and record.offset == out["offset"]
    event = parse_upload(record.value, record.key)
    assert event.uri == "file:///m/a.mp4" and event.title == "T" and event.uploaded_at


def test_produce_refuses_an_invalid_event(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SEGTAG_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")  # never reached
    assert main(["produce", "--video-id", "has space", "--uri", "file:///a.mp4"]) == 1
    assert "video_id 'has space' is invalid" in capsys.readouterr().err
    assert main(["produce", "--video-id", "ok", "--uri", "ftp://a/b.mp4"]) == 1
    assert "must start with file://" in capsys.readouterr().err


@pytest.mark.integration
def test_check_without_taggers_fails(
    live_settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use_settings(monkeypatch, live_settings)
    assert main(["tagger", "--check"]) == 1
    assert "no live tagger" in capsys.readouterr().out


def test_tag_a_local_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "model"
    build_model(model)
    clip = make_video(tmp_path / "media" / "clip.mp4", seconds=4, width=96, height=72)
    settings = tagger_settings(Settings.load(env={}), model, tmp_path / "unrelated-root")
    use_settings(monkeypatch, settings)
    # Kafka and Redis point nowhere: local mode must not need them.
    monkeypatch.setenv("SEGTAG_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("SEGTAG_REDIS_URL", "redis://127.0.0.1:1/0")
    assert main(["tag", str(clip), "--title", "test pattern", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["tags"] and {t["tag"] for t in data["tags"]} <= set(VOCAB)
    assert [(s["start"], s["end"]) for s in data["segments"]] == [(0.0, 2.0), (2.0, 4.0)]
    for seg in data["segments"]:
        assert set(seg) >= {"start", "end", "tags", "concepts"} and len(seg["concepts"]) == 3
        assert all(set(t) == {"tag", "score"} for t in seg["tags"])
    from segtag.cli.stream_cmd import _tag_text

    text = _tag_text(data)
    assert "segments:" in text and "0.0-    2.0" in text

    assert main(["tag", str(tmp_path / "nope.mp4")]) == 1
    assert "is not a file" in capsys.readouterr().err
