"""FeatureExtractor: whole-video arrays on the sampled-frame timeline, windows indexing into it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segtag.decode import DecodeLimits
from segtag.errors import VideoUnreadableError
from segtag.features.extractor import FeatureExtractor, VideoFeatures
from segtag.features.title import TitleEncoder
from segtag.features.visual import VisualEncoder
from segtag.settings import Settings
from segtag.testing.media import make_text_file, make_video


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("extract")
    return {
        "sound": make_video(d / "sound.mp4", seconds=5, fps=10, width=96, height=96, audio=True),
        "mute": make_video(d / "mute.mp4", seconds=3, fps=10, width=96, height=96, audio=False, source="smptebars"),
        "text": make_text_file(d / "text.mp4"),
    }


def _extractor(
    videos: dict[str, Path],
    visual: VisualEncoder,
    title: TitleEncoder,
    window_s: float = 5.0,
    stride_s: float | None = None,
    sample_fps: float = 1.0,
) -> FeatureExtractor:
    limits = DecodeLimits(media_roots=(str(videos["sound"].parent),))
    fx = FeatureExtractor(window_s, stride_s, sample_fps, limits=limits, device="cpu")
    fx.visual, fx.title_encoder = visual, title  # share the session's loaded models
    return fx


def test_overlapping_windows_store_each_frame_once(
    videos: dict[str, Path], visual_encoder: VisualEncoder, title_encoder: TitleEncoder
) -> None:
    plain = _extractor(videos, visual_encoder, title_encoder, window_s=2.0).extract(str(videos["sound"]), "A tone")
    overlap = _extractor(videos, visual_encoder, title_encoder, window_s=2.0, stride_s=1.0).extract(
        str(videos["sound"]), "A tone"
    )
    assert plain.num_frames == overlap.num_frames == 5
    np.testing.assert_allclose(overlap.timestamps, [0, 1, 2, 3, 4], atol=1e-6)
    np.testing.assert_allclose(overlap.rgb, plain.rgb, atol=1e-4)  # same frames, encoded once each
    np.testing.assert_allclose(overlap.audio, plain.audio, atol=1e-4)
    assert [w[2:] for w in plain.windows] == [(0, 2), (2, 4), (4, 5)]
    assert [w[2:] for w in overlap.windows] == [(0, 2), (1, 3), (2, 4), (3, 5)]
    for start, end, first, stop in overlap.windows:
        assert start == pytest.approx(overlap.timestamps[first]) and end > overlap.timestamps[stop - 1]
    assert overlap.windows[-1][1] == pytest.approx(overlap.duration_s) == pytest.approx(5.0)
    assert overlap.rgb.shape == (5, 1280) and overlap.concepts.shape == (5, 1000) and overlap.audio.shape == (5, 128)
    assert overlap.audio_mask.all() and overlap.title_mask and np.linalg.norm(overlap.title) == pytest.approx(1.0)
    assert set(overlap.timings) >= {"decode", "visual", "audio", "title", "total"}


def test_no_audio_no_title_and_npz_round_trip(
    tmp_path: Path, videos: dict[str, Path], visual_encoder: VisualEncoder, title_encoder: TitleEncoder
) -> None:
    feats = _extractor(videos, visual_encoder, title_encoder, window_s=5.0, sample_fps=2.0).extract(
        "file://" + str(videos["mute"]), ""
    )
    assert feats.num_frames == 6 and len(feats.windows) == 1
    assert not feats.audio_mask.any() and not feats.title_mask and not feats.title.any()
    # smptebars: the same colour bars in every frame (up to coding noise), so nearly the same features.
    a, b = feats.rgb[0], feats.rgb[-1]
    assert a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) > 0.95
    path = tmp_path / "f.npz"
    feats.save(path)
    back = VideoFeatures.load(path)
    for name in ("rgb", "audio", "audio_mask", "title", "timestamps", "concepts"):
        np.testing.assert_array_equal(getattr(back, name), getattr(feats, name))
        assert getattr(back, name).dtype == getattr(feats, name).dtype
    assert back.windows == feats.windows and back.title_mask is False and back.duration_s == feats.duration_s
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="not a VideoFeatures file"):
        VideoFeatures.load(tmp_path / "other.npz")


def test_bad_video_raises_typed_error(
    videos: dict[str, Path], visual_encoder: VisualEncoder, title_encoder: TitleEncoder
) -> None:
    with pytest.raises(VideoUnreadableError):
        _extractor(videos, visual_encoder, title_encoder).extract(str(videos["text"]), "x")


def test_from_settings_and_validation() -> None:
    s = Settings.load(env={}, window_s=4.0, stride_s=0.0, sample_fps=2.0, media_roots=("/srv",), batch_size=7)
    fx = FeatureExtractor.from_settings(s, device="cpu")
    assert (fx.window_s, fx.stride_s, fx.sample_fps) == (4.0, 4.0, 2.0)
    assert fx.limits.media_roots == ("/srv",) and fx.visual.batch_size == 7
    with pytest.raises(ValueError, match="window_s"):
        FeatureExtractor(window_s=0, device="cpu")
    with pytest.raises(ValueError, match="sample_fps"):
        FeatureExtractor(sample_fps=-1, device="cpu")
