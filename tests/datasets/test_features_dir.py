"""The extracted-features directory reader, batching and window crops."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from segtag.datasets import collate, random_window
from segtag.datasets.features_dir import FeaturesDataset, is_features_dir, read_vocabulary, seconds_to_frames


def test_reads_examples_with_vocabulary_indices(features_dir: Path) -> None:
    ds = FeaturesDataset(features_dir)
    assert ds.vocabulary == ["bird", "cat", "dog"]
    assert len(ds) == 3 and ds.video_ids == ["a", "b", "c"]
    a = ds[0]
    assert a.rgb.shape == (12, 1280) and a.rgb.dtype == np.float32
    assert a.audio.shape == (12, 128) and a.audio_mask.sum() == 6
    assert a.title.shape == (384,) and a.title_mask
    assert a.labels.tolist() == [0, 1, 1]
    # timestamps 0.5, 1.5, ...: [0, 5) s holds frames 0..4
    (s, e, y, rated) = a.segments[0]
    assert (s, e) == (0, 5) and y.tolist() == [0, 1, 0] and rated.all()
    c = ds[2]
    assert c.labels.sum() == 0
    assert [(s, e) for s, e, _, _ in c.segments] == [(5, 10)]
    assert c.segments[0][2].tolist() == [1, 0, 1]


def test_given_vocabulary_maps_and_counts_unknown_tags(features_dir: Path) -> None:
    ds = FeaturesDataset(features_dir, vocabulary=["dog", "fish"])
    assert ds[0].labels.tolist() == [1, 0]
    assert ds.unknown_tags == {"cat"}


def test_missing_or_bad_directory_errors(tmp_path: Path) -> None:
    assert not is_features_dir(tmp_path)
    with pytest.raises(ValueError, match=r"index\.jsonl is missing"):
        FeaturesDataset(tmp_path)
    (tmp_path / "index.jsonl").write_text('{"video_id": "x"}\n')
    with pytest.raises(ValueError, match="needs video_id and features"):
        FeaturesDataset(tmp_path, vocabulary=[])
    (tmp_path / "vocabulary.json").write_text(json.dumps(["a", "a"]))
    with pytest.raises(ValueError, match="duplicate"):
        read_vocabulary(tmp_path / "vocabulary.json")


def test_missing_feature_file_names_the_video(features_dir: Path) -> None:
    (features_dir / "features" / "b.npz").unlink()
    ds = FeaturesDataset(features_dir)
    with pytest.raises(ValueError, match=r"video b\) is missing"):
        ds[1]


def test_seconds_to_frames() -> None:
    ts = np.arange(10) + 0.5
    assert seconds_to_frames(ts, 0, 5) == (0, 5)
    assert seconds_to_frames(ts, 5, 10) == (5, 10)
    assert seconds_to_frames(ts, 9.6, 9.7) == (9, 10)  # never empty


def test_collate_pads_with_masks(features_dir: Path) -> None:
    ds = FeaturesDataset(features_dir)
    exs = [ds[0], ds[1]]
    b = collate(exs)
    assert b["rgb"].shape == (2, 12, 1280)
    assert b["rgb_mask"].sum(1).tolist() == [12, 7]
    assert b["audio_mask"][1].sum() == 3  # 7 frames, audio for the first 3
    assert float(b["rgb"][1, 7:].abs().sum()) == 0.0
    assert b["labels"].shape == (2, 3) and b["label_weights"].eq(1).all()
    seg = collate(exs, slices=[(2, 7), (0, 3)], labels=[np.ones(3), np.zeros(3)], weights=[np.ones(3), np.zeros(3)])
    assert seg["rgb"].shape == (2, 5, 1280) and seg["rgb_mask"].sum(1).tolist() == [5, 3]
    np.testing.assert_array_equal(seg["rgb"][0].numpy(), exs[0].rgb[2:7])
    assert seg["label_weights"][1].sum() == 0
    with pytest.raises(ValueError, match="empty batch"):
        collate([])


def test_random_window_bounds() -> None:
    rng = np.random.default_rng(0)
    for _ in range(100):
        s, e = random_window(12, 5, rng)
        assert s >= 0 and e <= 12 and e - s == 5
    assert random_window(3, 5, rng) == (0, 3)
    starts = {random_window(12, 5, rng)[0] for _ in range(300)}
    assert starts == set(range(8))
