"""Fixtures for the dataset tests (the shared conftest belongs to the lead)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from segtag.datasets.features_dir import write_features_dir


def features_item(video_id: str, T: int, labels: list[str], segments: list[dict[str, Any]], seed: int) -> tuple:
    rng = np.random.default_rng(seed)
    audio_mask = np.ones(T, bool)
    audio_mask[T // 2 :] = False
    arrays = {
        "rgb": rng.normal(size=(T, 1280)).astype(np.float32),
        "audio": rng.normal(size=(T, 128)).astype(np.float32),
        "audio_mask": audio_mask,
        "title": rng.normal(size=384).astype(np.float32),
        "title_mask": np.asarray(True),
        "timestamps": np.arange(T, dtype=np.float64) + 0.5,  # frames sampled mid-second at 1 fps
        "concepts": np.zeros((T, 1000), np.float32),
    }
    rec = {"video_id": video_id, "uri": f"file:///{video_id}.mp4", "title": "t", "labels": labels, "segments": segments}
    return rec, arrays


@pytest.fixture
def features_dir(tmp_path: Path) -> Path:
    items = [
        features_item("a", 12, ["cat", "dog"], [{"start": 0.0, "end": 5.0, "labels": ["cat"]}], 0),
        features_item("b", 7, ["dog"], [], 1),
        features_item("c", 10, [], [{"start": 5.0, "end": 10.0, "labels": ["bird", "dog"]}], 2),
    ]
    return write_features_dir(tmp_path / "feats", items)
