"""Manifest -> features directory: the index format, the cache, bad videos, data-dir resolution.

A stand-in extractor keeps these fast; tests/cli/test_data_cmd.py runs the real one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from segtag.datasets import resolve
from segtag.datasets.resolve import DatasetError, extract_manifest, features_dir_for, read_manifest
from segtag.errors import VideoUnreadableError
from segtag.settings import Settings


class _Arrays:
    def __init__(self, n: int) -> None:
        self.n = n

    def save(self, path: Path) -> None:
        np.savez(path, rgb=np.zeros((self.n, 4), np.float32), timestamps=np.arange(self.n, dtype=np.float64))


class FakeExtractor:
    """Records calls; fails on URIs containing 'broken' like a real decoder would."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def extract(self, uri: str, title: str) -> _Arrays:
        self.calls.append((uri, title))
        if "broken" in uri:
            raise VideoUnreadableError(f"{uri}: moov atom not found")
        return _Arrays(3)


def _line(video_id: str, labels: list[str], uri: str | None = None) -> dict[str, Any]:
    return {
        "video_id": video_id,
        "uri": uri or f"file:///data/{video_id}.mp4",
        "title": f"title of {video_id}",
        "labels": labels,
        "segments": [{"start": 0.0, "end": 5.0, "labels": labels}],
    }


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    lines = [_line("a", ["x", "y"]), _line("b", ["z"], uri="file:///data/broken.mp4"), _line("c", ["y", "w"])]
    path = tmp_path / "manifest.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


@pytest.fixture
def settings() -> Settings:
    return Settings.load(env={})


def test_extract_writes_the_contract_format(manifest: Path, tmp_path: Path, settings: Settings) -> None:
    out = tmp_path / "feat"
    fake = FakeExtractor()
    report = extract_manifest(manifest, out, settings, progress=False, extractor=fake)
    assert (report.total, report.extracted, report.cached) == (3, 2, 0)
    assert [f["video_id"] for f in report.failed] == ["b"]
    assert report.failed[0]["error_type"] == "VideoUnreadableError"
    assert fake.calls[0] == ("file:///data/a.mp4", "title of a")
    index = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    # manifest lines (minus the bad video) plus the relative features path
    assert [r["video_id"] for r in index] == ["a", "c"]
    assert index[0] == {**_line("a", ["x", "y"]), "features": "features/a.npz"}
    assert (out / "features" / "a.npz").is_file() and not (out / "features" / "b.npz").exists()
    assert not list((out / "features").glob("*.part*"))
    # every tag of the manifest, sorted
    assert json.loads((out / "vocabulary.json").read_text()) == ["w", "x", "y", "z"]


def test_second_run_uses_the_cache_and_retries_failures(manifest: Path, tmp_path: Path, settings: Settings) -> None:
    out = tmp_path / "feat"
    extract_manifest(manifest, out, settings, progress=False, extractor=FakeExtractor())
    again = FakeExtractor()
    report = extract_manifest(manifest, out, settings, progress=False, extractor=again)
    assert (report.extracted, report.cached, len(report.failed)) == (0, 2, 1)
    assert [uri for uri, _ in again.calls] == ["file:///data/broken.mp4"]


def test_media_root_of_the_manifest_is_allowed(manifest: Path, settings: Settings) -> None:
    extended = resolve.settings_for_manifest(settings.replace(media_roots=("/srv",)), manifest)
    assert extended.media_roots == ("/srv", str(manifest.parent.resolve()))
    assert resolve.settings_for_manifest(extended, manifest) is extended


def test_extractor_is_built_once_from_settings_with_the_manifest_root(
    manifest: Path, tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[Settings] = []

    def fake_load(s: Settings) -> FakeExtractor:
        built.append(s)
        return FakeExtractor()

    monkeypatch.setattr(resolve, "_load_extractor", fake_load)
    extract_manifest(manifest, tmp_path / "feat", settings, progress=False)
    assert len(built) == 1
    assert str(manifest.parent.resolve()) in built[0].media_roots
    built.clear()
    # nothing left but the bad video: still built once; all cached and no failures: never built
    extract_manifest(manifest, tmp_path / "feat", settings, progress=False)
    assert len(built) == 1


def test_features_dir_for_each_kind_of_data_dir(
    manifest: Path, tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resolve, "_load_extractor", lambda s: FakeExtractor())
    # a directory with manifest.jsonl -> DIR/.features, extracted once
    got = features_dir_for(tmp_path, settings, progress=False)
    assert got == tmp_path / ".features"
    assert (got / "index.jsonl").is_file()
    # a features directory is returned as is
    assert features_dir_for(got, settings) == got
    # a manifest file works too
    assert features_dir_for(manifest, settings, progress=False) == tmp_path / ".features"
    # anything else (e.g. a directory of TFRecords) is left to the caller's reader
    records = tmp_path / "yt8m"
    records.mkdir()
    assert features_dir_for(records, settings) == records


def test_all_videos_bad_is_an_error(tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resolve, "_load_extractor", lambda s: FakeExtractor())
    (tmp_path / "manifest.jsonl").write_text(json.dumps(_line("b", ["z"], uri="file:///broken.mp4")) + "\n")
    with pytest.raises(DatasetError, match="no video"):
        features_dir_for(tmp_path, settings, progress=False)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json\n", "not a JSON object"),
        ('{"video_id": "a"}\n', "video_id and uri"),
        ('{"video_id": "a", "uri": "u"}\n{"video_id": "a", "uri": "v"}\n', "duplicate"),
        ('{"video_id": "../a", "uri": "u"}\n', "file name"),
    ],
)
def test_bad_manifests_say_what_is_wrong(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "manifest.jsonl"
    path.write_text(content)
    with pytest.raises(DatasetError, match=message):
        read_manifest(path)
    with pytest.raises(DatasetError, match="segtag synth"):
        read_manifest(tmp_path / "missing.jsonl")
