"""``segtag synth`` and ``segtag extract`` from the command line, with the real extractor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from segtag.cli import main
from segtag.datasets.features_dir import FeaturesDataset
from segtag.features.extractor import VideoFeatures
from segtag.synth import vocabulary


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    tiny = ["--min-duration", "10", "--max-duration", "10", "--sizes", "160x90", "--no-audio-fraction", "0.5"]
    code = main(["synth", "--out", str(out), "--videos", "3", "--seed", "4", *tiny, "--json"])
    assert code == 0
    return out


def test_synth_command_writes_videos_manifest_and_vocabulary(
    synth_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, data = _run(capsys, "synth", "--out", str(tmp_path), "--videos", "1", "--seed", "9", "--json")
    assert code == 0
    assert data["videos"] == 1 and data["rendered"] == 1
    assert Path(data["manifest"]) == tmp_path.resolve() / "manifest.jsonl"
    (rec,) = [json.loads(line) for line in Path(data["manifest"]).read_text().splitlines()]
    assert Path(rec["uri"][len("file://") :]).is_file()
    assert json.loads(Path(data["vocabulary"]).read_text()) == vocabulary()
    assert len(list((synth_dir / "videos").glob("*.mp4"))) == 3


def test_synth_rejects_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["synth", "--out", str(tmp_path), "--min-duration", "11", "--max-duration", "14"])
    assert code == 1
    assert "multiple of 5" in capsys.readouterr().err


def test_extract_writes_a_features_directory(
    synth_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # one bad video among the synth ones: it is reported, the others are extracted. The manifest
    # sits beside the videos: extract allows file:// URIs under the manifest's directory only.
    manifest = synth_dir / "manifest-with-bad.jsonl"
    bad = synth_dir / "bad.mp4"
    bad.write_text("not a video")
    lines = (synth_dir / "manifest.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    bad_line = {"video_id": "bad", "uri": bad.as_uri(), "title": "", "labels": ["x-bad"], "segments": []}
    manifest.write_text("".join(json.dumps(r) + "\n" for r in [*records, bad_line]))

    out = tmp_path / "feat"
    code, report = _run(capsys, "extract", "--manifest", str(manifest), "--out", str(out), "--json")
    assert code == 0
    assert (report["total"], report["extracted"], report["cached"]) == (4, 3, 0)
    assert [(f["video_id"], f["error_type"]) for f in report["failed"]] == [("bad", "VideoUnreadableError")]

    index = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert [r["video_id"] for r in index] == [r["video_id"] for r in records]
    for rec, row in zip(records, index, strict=True):
        assert row == {**rec, "features": f"features/{rec['video_id']}.npz"}
        feats = VideoFeatures.load(out / row["features"])
        assert feats.rgb.shape == (10, 1280) and feats.concepts.shape == (10, 1000)
        assert feats.audio.shape == (10, 128) and feats.title.shape == (384,)
        assert feats.title_mask and np.abs(feats.title).sum() > 0
        assert bool(feats.audio_mask.all()) is rec["source"]["has_audio"]
        # windows come from decoded frame times: at 29.97 fps the 150th frame ends at 5.005 s
        assert [(w[0], w[1]) for w in feats.windows] == [
            (0.0, pytest.approx(5.0, abs=0.02)),
            (pytest.approx(5.0, abs=0.02), pytest.approx(10.0, abs=0.02)),
        ]
    tags = sorted({t for r in [*records, bad_line] for t in r["labels"]})
    assert json.loads((out / "vocabulary.json").read_text()) == tags

    # the training reader maps the segment labels onto the frame axis
    ds = FeaturesDataset(out)
    example = ds[0]
    assert [(s, e) for s, e, _, _ in example.segments] == [
        (int(seg["start"]), int(seg["end"])) for seg in records[0]["segments"]
    ]

    # a second run extracts nothing new
    code, again = _run(capsys, "extract", "--manifest", str(manifest), "--out", str(out), "--json")
    assert code == 0 and (again["extracted"], again["cached"]) == (0, 3)
