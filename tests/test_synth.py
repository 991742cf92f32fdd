"""The synthetic labelled-video generator: determinism, real decodable encodes, exact labels."""

from __future__ import annotations

import json
import random
import re
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from decord import VideoReader

from segtag.synth import (
    AUDIO_SOURCES,
    SEGMENT_UNIT_S,
    VISUAL_SOURCES,
    SegmentPlan,
    SourceSpec,
    SynthError,
    SynthOptions,
    VideoPlan,
    audio_tags,
    ffmpeg_exe,
    generate,
    plan_videos,
    render_video,
    tag_phrase,
    visual_tags,
    vocabulary,
)

TINY = {"min_duration_s": 10, "max_duration_s": 10, "sizes": ((160, 90),), "no_audio_fraction": 0.5}
TINY_SEED = 4  # with TINY and 4 videos this seed gives videos both with and without audio (checked below)


def _strip_uri(line: str) -> dict[str, Any]:
    rec = json.loads(line)
    assert rec.pop("uri").endswith(f"/videos/{rec['video_id']}.mp4")
    return dict(rec)


def _streams(path: Path) -> str:
    """ffmpeg's stream listing of a file (stderr of `ffmpeg -i`)."""
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    return "\n".join(line for line in proc.stderr.splitlines() if "Stream #" in line)


def _audio_pcm(path: Path, rate: int = 16000) -> np.ndarray:
    out = subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1", "-ar", str(rate), "-"],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(out, np.float32)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth-a")
    generate(out, SynthOptions(videos=4, seed=TINY_SEED, jobs=2, **TINY), progress=False)  # type: ignore[arg-type]
    return out


def _records(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "manifest.jsonl").read_text().splitlines()]


def test_same_seed_same_manifest_in_another_dir(tiny_run: Path, tmp_path: Path) -> None:
    generate(tmp_path, SynthOptions(videos=4, seed=TINY_SEED, jobs=1, **TINY), progress=False)  # type: ignore[arg-type]
    first = [_strip_uri(line) for line in (tiny_run / "manifest.jsonl").read_text().splitlines()]
    second = [_strip_uri(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert first == second
    assert len(first) == 4
    assert json.loads((tmp_path / "vocabulary.json").read_text()) == vocabulary()


def test_plans_depend_on_seed_only() -> None:
    a = plan_videos(SynthOptions(videos=50, seed=7))
    b = plan_videos(SynthOptions(videos=50, seed=7))
    c = plan_videos(SynthOptions(videos=50, seed=8))
    assert a == b
    assert [p.segments for p in a] != [p.segments for p in c]
    # a prefix of a bigger run is the same videos
    assert plan_videos(SynthOptions(videos=10, seed=7)) == a[:10]


def test_manifest_uri_points_at_the_video(tiny_run: Path) -> None:
    for rec in _records(tiny_run):
        assert rec["uri"].startswith("file:///")
        assert Path(rec["uri"][len("file://") :]) == (tiny_run / "videos" / f"{rec['video_id']}.mp4").resolve()
        assert Path(rec["uri"][len("file://") :]).stat().st_size > 1000


def test_videos_decode_with_the_size_rate_and_duration_of_the_manifest(tiny_run: Path) -> None:
    for rec in _records(tiny_run):
        src = rec["source"]
        vr = VideoReader(rec["uri"][len("file://") :])
        fps = float(Fraction(src["fps"]))
        frame = vr[len(vr) - 1].asnumpy()
        assert frame.shape == (src["height"], src["width"], 3)
        assert vr.get_avg_fps() == pytest.approx(fps, rel=1e-3)
        assert len(vr) == round(src["duration_s"] * Fraction(src["fps"]))
        assert len(vr) / fps == pytest.approx(rec["segments"][-1]["end"], abs=1.0 / fps)


def test_no_audio_videos_have_no_audio_stream(tiny_run: Path) -> None:
    records = _records(tiny_run)
    kinds = {rec["source"]["has_audio"] for rec in records}
    assert kinds == {True, False}, "TINY_SEED must give both kinds of video; pick another seed"
    for rec in records:
        streams = _streams(Path(rec["uri"][len("file://") :]))
        assert "Video: h264" in streams
        assert ("Audio: aac" in streams) is rec["source"]["has_audio"]
        audio_labels = set(rec["labels"]) & set(audio_tags())
        assert bool(audio_labels) is rec["source"]["has_audio"]


def test_segments_tile_the_video_on_window_multiples() -> None:
    for plan in plan_videos(SynthOptions(videos=200, seed=11)):
        assert plan.segments[0].start == 0
        assert 15 <= plan.duration_s <= 30
        for prev, seg in zip(plan.segments, plan.segments[1:], strict=False):
            assert seg.start == prev.end
            assert seg.visual.tag != prev.visual.tag  # every boundary is a visible change
        for seg in plan.segments:
            assert seg.end - seg.start in (5, 10, 15)
            assert seg.start % SEGMENT_UNIT_S == 0
            assert seg.visual.tag in visual_tags()
            assert seg.labels[0] == seg.visual.tag
            if plan.has_audio:
                assert seg.audio is not None and seg.labels == [seg.visual.tag, seg.audio.tag]
            else:
                assert seg.audio is None and seg.labels == [seg.visual.tag]
        assert plan.labels == sorted({t for s in plan.segments for t in s.labels})


def test_manifest_segment_labels_match_the_sources(tiny_run: Path) -> None:
    for rec in _records(tiny_run):
        parts = rec["source"]["parts"]
        assert len(parts) == len(rec["segments"])
        for seg, part in zip(rec["segments"], parts, strict=True):
            expected = [part["visual"]["tag"]] + ([part["audio"]["tag"]] if part["audio"] else [])
            assert seg["labels"] == expected
        assert rec["labels"] == sorted({t for s in rec["segments"] for t in s["labels"]})


def test_titles_name_some_of_the_video_tags_and_no_others() -> None:
    phrases = {t: tag_phrase(t) for t in vocabulary()}
    for a in phrases.values():  # a phrase inside another would make titles ambiguous
        assert sum(a in b for b in phrases.values()) == 1
    for plan in plan_videos(SynthOptions(videos=200, seed=3)):
        named = {t for t, p in phrases.items() if re.search(rf"\b{re.escape(p)}\b", plan.title)}
        assert named, plan.title
        assert named <= set(plan.labels), plan.title
        assert plan.title not in phrases.values()  # noise words around the tags


def _two_segment_plan() -> VideoPlan:
    fps = Fraction(30000, 1001)
    return VideoPlan(
        video_id="boundary",
        index=0,
        width=160,
        height=90,
        fps=fps,
        has_audio=True,
        title="t",
        segments=(
            SegmentPlan(0, 5, SourceSpec("color-bars", {"kind": "smptebars"}), SourceSpec("silence", {})),
            SegmentPlan(
                5,
                10,
                SourceSpec("moving-shapes", {"background": "0xff0000", "shapes": []}),
                SourceSpec("tone-high", {"freq": 3000.0, "amp": 0.5}),
            ),
        ),
    )


def test_rendered_boundary_is_exact_in_frames_and_audio(tmp_path: Path) -> None:
    plan = _two_segment_plan()
    out = tmp_path / "boundary.mp4"
    render_video(plan, out)
    vr = VideoReader(str(out))
    switch = plan.frame_at(5)  # 150 at 29.97 fps
    assert switch == 150
    frames = vr.get_batch([0, switch - 1, switch, len(vr) - 1]).asnumpy().astype(np.float32)
    # static bars up to the switch, a plain red frame from it on
    assert np.abs(frames[0] - frames[1]).mean() < 3
    assert np.abs(frames[2] - frames[3]).mean() < 3
    assert np.abs(frames[1] - frames[2]).mean() > 40
    assert frames[2][..., 0].mean() > 200 and frames[2][..., 1].mean() < 60
    pcm = _audio_pcm(out)
    rate = 16000

    def rms(a: float, b: float) -> float:
        return float(np.sqrt(np.mean(pcm[int(a * rate) : int(b * rate)] ** 2)))

    assert rms(0.0, 4.95) < 1e-3
    assert rms(5.05, 9.95) == pytest.approx(0.5 / np.sqrt(2), rel=0.1)


def _decoded_md5(path: Path) -> str:
    proc = subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "md5", "-"], capture_output=True, text=True, check=True
    )
    return proc.stdout.strip()


def test_every_source_renders_identically_twice(tmp_path: Path) -> None:
    # every visual and audio source once, each with its own drawn parameters
    rng = random.Random(0)
    visual, audio = list(VISUAL_SOURCES), list(AUDIO_SOURCES)
    segments = tuple(
        SegmentPlan(
            5 * i,
            5 * i + 5,
            SourceSpec(visual[i].tag, visual[i].draw(rng)),
            SourceSpec(audio[i % len(audio)].tag, audio[i % len(audio)].draw(rng)),
        )
        for i in range(len(visual))
    )
    plan = VideoPlan("all", 0, 160, 90, Fraction(25), True, "t", segments)
    first, second = tmp_path / "a.mp4", tmp_path / "b.mp4"
    render_video(plan, first)
    render_video(plan, second)
    assert _decoded_md5(first) == _decoded_md5(second)


def test_options_are_checked() -> None:
    with pytest.raises(SynthError, match="multiple of 5"):
        SynthOptions(videos=1, seed=0, min_duration_s=11, max_duration_s=14)
    with pytest.raises(SynthError, match="even"):
        SynthOptions(videos=1, seed=0, sizes=((161, 90),))
    with pytest.raises(SynthError, match="videos"):
        SynthOptions(videos=0, seed=0)


def test_existing_videos_are_kept_on_rerun(tiny_run: Path, tmp_path: Path) -> None:
    # resume: a second run over the same dir renders nothing and rewrites the same manifest
    before = (tiny_run / "manifest.jsonl").read_text()
    result = generate(tiny_run, SynthOptions(videos=4, seed=TINY_SEED, **TINY), progress=False)  # type: ignore[arg-type]
    assert result.rendered == 0 and result.videos == 4
    assert (tiny_run / "manifest.jsonl").read_text() == before
