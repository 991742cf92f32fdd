"""Fixtures of the tagger tests: one tiny model, tiny videos and one VideoTagger for
the whole session (loading the encoders is the slow part), settings per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from segtag.pipeline import VideoTagger
from segtag.settings import Settings
from tests.consumers.helpers import build_model, build_videos, tagger_settings


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tiny-model")
    build_model(d)
    return d


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def videos(media_dir: Path) -> dict[str, Path]:
    return build_videos(media_dir)


@pytest.fixture(scope="session")
def video_tagger(services: Settings, tiny_model: Path, media_dir: Path, videos: dict[str, Path]) -> VideoTagger:
    tagger = VideoTagger(tagger_settings(services, tiny_model, media_dir))
    tagger.warm_up()
    return tagger


@pytest.fixture
def settings(live_settings: Settings, tiny_model: Path, media_dir: Path) -> Settings:
    return tagger_settings(live_settings, tiny_model, media_dir)


@pytest.fixture(scope="session")
def second_tagger(video_tagger: VideoTagger, services: Settings, tiny_model: Path, media_dir: Path) -> VideoTagger:
    """Another tagger process' worth of pipeline (same weights, its own extractor)."""
    tagger = VideoTagger(tagger_settings(services, tiny_model, media_dir), loaded=video_tagger.loaded)
    # Warmed here, one after the other: the title encoder's lazy `transformers`
    # import fails when two threads of one process run it at the same time.
    tagger.warm_up()
    return tagger
