"""Evaluate a model on a labelled dataset: video-level and segment-level metrics."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segtag.checkpoint import load_model
from segtag.datasets.example import Example
from segtag.errors import ModelError
from segtag.metrics import EvaluationMetrics
from segtag.model import SegTagger

log = logging.getLogger(__name__)


def check_dims(model: SegTagger, example: Example) -> None:
    """Raise ModelError when an example's feature sizes do not fit the model."""
    cfg = model.config
    got = {"rgb": example.rgb.shape[1], "audio": example.audio.shape[1], "text": example.title.shape[0]}
    want = {"rgb": cfg.rgb_dim, "audio": cfg.audio_dim, "text": cfg.text_dim}
    bad = [f"{k} {got[k]}-d (model expects {want[k]})" for k in got if want[k] > 0 and got[k] != want[k]]
    if bad:
        raise ModelError(f"video {example.video_id}: features do not fit the model: {', '.join(bad)}")


def evaluate_examples(
    model: SegTagger, examples: Iterable[Example], device: str | torch.device = "cpu", segment_top_k: int | None = None
) -> dict[str, Any]:
    """Metrics of ``model`` over examples: each video is tagged whole, each labelled segment on its window."""
    metrics = EvaluationMetrics(model.config.num_classes, segment_top_k=segment_top_k)
    for ex in examples:
        check_dims(model, ex)
        windows = [(s, e) for s, e, _, _ in ex.segments]
        video_probs, seg_probs, _, _ = model.tag_video(
            ex.rgb, ex.audio, ex.audio_mask, ex.title, ex.title_mask, windows, device=device
        )
        seg_labels = np.stack([y for _, _, y, _ in ex.segments]) if ex.segments else None
        seg_rated = np.stack([r for _, _, _, r in ex.segments]) if ex.segments else None
        metrics.accumulate(video_probs[None], ex.labels[None], seg_probs, seg_labels, seg_rated)
    if metrics.video.num_videos == 0:
        raise ValueError("no videos to evaluate")
    return metrics.get()


def open_dataset(data: str | Path, vocabulary: list[str] | None = None) -> Any:
    """A features directory (index.jsonl) or a directory / file of YouTube-8M *.tfrecord."""
    from segtag.datasets.features_dir import FeaturesDataset, is_features_dir

    path = Path(data)
    if is_features_dir(path):
        return FeaturesDataset(path, vocabulary)
    from segtag.datasets.yt8m import YT8MDataset, tfrecord_files

    files = tfrecord_files(path)
    if not files:
        raise ValueError(f"{path} is neither a features directory (index.jsonl) nor holds *.tfrecord files")
    return YT8MDataset(files, num_classes=len(vocabulary) if vocabulary else None)


def evaluate(model_dir: str | Path, features_dir: str | Path, device: str = "cpu") -> dict[str, Any]:
    """Evaluate the model in ``model_dir`` on a features directory or YouTube-8M TFRecords.

    Returns gap, map, hit1, perr, segment_map (None without labelled segments),
    num_videos, num_segments, model_version and unknown_tags (dataset tags the
    model does not know, which are ignored).
    """
    loaded = load_model(model_dir, device)
    dataset = open_dataset(features_dir, loaded.vocabulary)
    result = evaluate_examples(loaded.model, (dataset[i] for i in range(len(dataset))), device)
    result["model_version"] = loaded.version
    unknown = sorted(getattr(dataset, "unknown_tags", set()))
    result["unknown_tags"] = len(unknown)
    if unknown:
        log.warning("%d tags in %s are not in the model's vocabulary and were ignored: %s", len(unknown),
                    features_dir, ", ".join(unknown[:10]))  # fmt: skip
    return result
