"""VideoTagger: the in-process pipeline the tagger and `segtag tag` run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segtag.checkpoint import load_model
from segtag.errors import ModelError, UnsupportedSourceError, VideoUnreadableError
from segtag.features.extractor import VideoFeatures
from segtag.features.visual import imagenet_classes
from segtag.pipeline import VideoTagger, softmax, top_concepts, top_tags
from segtag.settings import Settings
from segtag.testing.media import make_video
from tests.consumers.helpers import VOCAB, build_model, tagger_settings


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pipeline-model")
    build_model(d)
    return d


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pipeline-media")
    make_video(d / "clip.mp4", seconds=5, width=96, height=72)
    (d / "bad.mp4").write_text("not a video")
    return d


@pytest.fixture(scope="module")
def base_settings(model_dir: Path, media: Path) -> Settings:
    return tagger_settings(Settings.load(env={}), model_dir, media)


class FakeExtractor:
    """Synthetic features: enough to test the model stage without decoding."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def features(self, frames: int, window: int = 2, title: bool = True, audio: bool = True) -> VideoFeatures:
        r = self.rng
        wins = [
            (float(s), float(min(s + window, frames)), s, min(s + window, frames)) for s in range(0, frames, window)
        ]
        return VideoFeatures(
            rgb=r.standard_normal((frames, 1280)).astype(np.float32),
            audio=r.standard_normal((frames, 128)).astype(np.float32),
            audio_mask=np.full(frames, audio),
            title=r.standard_normal(384).astype(np.float32) if title else np.zeros(384, np.float32),
            title_mask=title,
            timestamps=np.arange(frames, dtype=np.float64),
            windows=wins,
            concepts=r.standard_normal((frames, 1000)).astype(np.float32),
            duration_s=float(frames),
        )

    def extract(self, uri: str, title: str = "") -> VideoFeatures:
        return self.features(7)


@pytest.fixture(scope="module")
def fake_tagger(base_settings: Settings) -> VideoTagger:
    return VideoTagger(base_settings.replace(batch_size=3), extractor=FakeExtractor())  # type: ignore[arg-type]


def test_helpers() -> None:
    probs = np.array([0.01, 0.9, 0.2, 0.04], np.float32)
    assert top_tags(probs, ["a", "b", "c", "d"], 3) == [("b", pytest.approx(0.9)), ("c", pytest.approx(0.2))]
    assert top_tags(np.full(4, 0.01, np.float32), ["a", "b", "c", "d"], 3) == [("a", pytest.approx(0.01))]
    # SEGTAG_MIN_TAG_SCORE raises the floor; the best tag is still reported.
    assert top_tags(probs, ["a", "b", "c", "d"], 3, 0.5) == [("b", pytest.approx(0.9))]
    assert softmax(np.array([1000.0, 1000.0])).tolist() == [0.5, 0.5]
    names = [f"c{i}" for i in range(5)]
    logits = np.array([[0, 5, 0, 0, 1], [0, 3, 0, 0, 2]], np.float32)
    top = top_concepts(logits, names)
    assert [c for c, _ in top] == ["c1", "c4", "c0"] and top[0][1] > top[1][1] > top[2][1]
    assert top_concepts(np.zeros((0, 5), np.float32), names) == []


def test_batched_inference_matches_one_video_at_a_time(fake_tagger: VideoTagger) -> None:
    """Windows of several videos share batches (batch_size=3 here) without changing any result."""
    ex = FakeExtractor(seed=1)
    videos = [ex.features(7), ex.features(3, title=False), ex.features(11, audio=False), ex.features(1)]
    together = fake_tagger.infer(videos)
    for f, out in zip(videos, together, strict=True):
        (alone,) = fake_tagger.infer([f])
        np.testing.assert_allclose(out.video_probs, alone.video_probs, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(out.segment_probs, alone.segment_probs, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(out.segment_embeddings, alone.segment_embeddings, rtol=1e-4, atol=1e-5)
        assert out.segment_probs.shape == (len(f.windows), len(VOCAB))
        # the model's own per-video path gives the same numbers
        vp, sp, se, _ve = fake_tagger.model.tag_video(
            f.rgb, f.audio, f.audio_mask, f.title, f.title_mask, [(w[2], w[3]) for w in f.windows]
        )
        np.testing.assert_allclose(out.video_probs, vp, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(out.segment_probs, sp, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(out.segment_embeddings, se, rtol=1e-4, atol=1e-5)


def test_assemble_reports_tags_concepts_embeddings(fake_tagger: VideoTagger) -> None:
    result = fake_tagger.tag("file:///fake.mp4", "t", video_id="vid")
    assert result.video_id == "vid" and result.model_version == fake_tagger.model_version
    assert [(s.index, s.start, s.end) for s in result.segments] == [(0, 0, 2), (1, 2, 4), (2, 4, 6), (3, 6, 7)]
    names = set(imagenet_classes())
    for seg in result.segments:
        assert 1 <= len(seg.tags) <= fake_tagger.settings.top_k and {t for t, _ in seg.tags} <= set(VOCAB)
        assert [s for _, s in seg.tags] == sorted((s for _, s in seg.tags), reverse=True)
        assert len(seg.concepts) == 3 and {c for c, _ in seg.concepts} <= names
        assert seg.embedding.shape == (256,) and np.linalg.norm(seg.embedding) == pytest.approx(1, abs=1e-4)
    data = result.to_json()
    assert set(data) >= {"tags", "segments"} and set(data["segments"][0]) >= {"start", "end", "tags", "concepts"}
    assert {"decode_features", "model"} <= set(result.timings)


def test_model_feature_mismatch_is_a_model_error(fake_tagger: VideoTagger) -> None:
    f = FakeExtractor().features(4)
    f.rgb = f.rgb[:, :100]
    with pytest.raises(ModelError, match="rgb features"):
        fake_tagger.infer([f])


def test_missing_model_dir(base_settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(ModelError):
        VideoTagger(base_settings.replace(model_dir=str(tmp_path / "none")), extractor=FakeExtractor())  # type: ignore[arg-type]


def test_real_pipeline_on_a_video(base_settings: Settings, media: Path, model_dir: Path) -> None:
    tagger = VideoTagger(base_settings, loaded=load_model(model_dir))
    result = tagger.tag((media / "clip.mp4").as_uri(), "a test pattern")
    assert result.duration_s == pytest.approx(5.0, abs=0.1)
    assert [(s.start, s.end) for s in result.segments] == [(0.0, 2.0), (2.0, 4.0), (4.0, pytest.approx(5.0, abs=0.1))]
    assert all(len(s.concepts) == 3 for s in result.segments)
    with pytest.raises(VideoUnreadableError):
        tagger.tag((media / "bad.mp4").as_uri())
    with pytest.raises(UnsupportedSourceError):
        tagger.tag("file:///etc/passwd")
