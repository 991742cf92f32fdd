"""The shared test-video helpers make what they say."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segtag.decode import DecodeLimits, probe
from segtag.testing.media import (
    SAMPLE_CLIPS,
    frame_times,
    make_empty,
    make_text_file,
    make_truncated,
    make_video,
    sample_clip,
)


def test_make_video_properties(tmp_path: Path) -> None:
    path = make_video(tmp_path / "a.mp4", seconds=2, fps=29.97, width=90, height=160, audio=True)
    info = probe(path, DecodeLimits())
    assert (info.codec, info.width, info.height, info.has_audio) == ("h264", 90, 160, True)
    times = frame_times(path)
    assert len(times) == 60 and times[1] == pytest.approx(1001 / 30000, abs=1e-5)
    mute = make_video(tmp_path / "b.mkv", seconds=1, fps=12, width=64, height=48, audio=False, source="color=c=red")
    assert not probe(mute, DecodeLimits()).has_audio and len(frame_times(mute)) == 12


def test_make_vfr_video(tmp_path: Path) -> None:
    gaps = np.diff(frame_times(make_video(tmp_path / "v.mp4", seconds=3, fps=30, audio=False, vfr=True)))
    assert gaps.min() == pytest.approx(1 / 30, abs=1e-3) and gaps.max() == pytest.approx(0.1, abs=1e-3)


def test_broken_file_helpers(tmp_path: Path) -> None:
    src = make_video(tmp_path / "s.mp4", seconds=1, fps=10, width=64, height=64, audio=False)
    assert make_truncated(src, tmp_path / "t.mp4", 0.25).stat().st_size == src.stat().st_size // 4
    assert make_empty(tmp_path / "e.mp4").stat().st_size == 0
    assert make_text_file(tmp_path / "x.mp4").read_text().startswith("this is not a video")
    with pytest.raises(ValueError, match="seconds"):
        make_video(tmp_path / "bad.mp4", seconds=0)
    with pytest.raises(RuntimeError, match="ffmpeg failed"):
        make_video(tmp_path / "bad.mp4", seconds=1, codec="no-such-codec")


def test_sample_clips() -> None:
    for name in SAMPLE_CLIPS:
        assert sample_clip(name).stat().st_size > 100_000
    with pytest.raises(ValueError, match="unknown sample clip"):
        sample_clip("nope.mp4")
