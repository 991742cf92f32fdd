"""The training/evaluation example every dataset reader yields, and batching."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

# (start_frame, end_frame exclusive, labels (C,) multi-hot, rated (C,) bool)
Segment = tuple[int, int, np.ndarray, np.ndarray]


@dataclass
class Example:
    """One video's features and labels (see docs/contracts.md, "Training data on disk")."""

    video_id: str
    rgb: np.ndarray  # (T, Dr) float32
    audio: np.ndarray  # (T, Da) float32
    audio_mask: np.ndarray  # (T,) bool, False where there is no audio
    title: np.ndarray  # (Dt,) float32 (Dt may be 0: no title modality)
    title_mask: bool
    labels: np.ndarray  # (C,) float32 multi-hot
    segments: list[Segment] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        """T, the number of sampled frames."""
        return int(self.rgb.shape[0])


def collate(
    examples: Sequence[Example],
    slices: Sequence[tuple[int, int]] | None = None,
    labels: Sequence[np.ndarray] | None = None,
    weights: Sequence[np.ndarray] | None = None,
) -> dict[str, torch.Tensor]:
    """Pad a batch to its longest (sliced) sequence, with masks.

    ``slices`` picks a frame range (start, end) per example (default: all
    frames); ``labels`` / ``weights`` replace the video labels (e.g. by segment
    labels and their rated bits). Returns the keyword arguments of
    ``SegTagger.forward`` plus ``labels`` and ``label_weights``.
    """
    if not examples:
        raise ValueError("collate: empty batch")
    ranges = list(slices) if slices is not None else [(0, ex.num_frames) for ex in examples]
    B = len(examples)
    T = max(1, max(e - s for s, e in ranges))
    first = examples[0]
    rgb = np.zeros((B, T, first.rgb.shape[1]), np.float32)  # (B, T, Dr)
    audio = np.zeros((B, T, first.audio.shape[1]), np.float32)  # (B, T, Da)
    rgb_mask = np.zeros((B, T), bool)
    audio_mask = np.zeros((B, T), bool)
    for i, (ex, (s, e)) in enumerate(zip(examples, ranges, strict=True)):
        n = e - s
        rgb[i, :n] = ex.rgb[s:e]
        audio[i, :n] = ex.audio[s:e]
        rgb_mask[i, :n] = True
        audio_mask[i, :n] = ex.audio_mask[s:e]
    y = np.stack(list(labels) if labels is not None else [ex.labels for ex in examples]).astype(np.float32)
    w = np.stack(list(weights)).astype(np.float32) if weights is not None else np.ones_like(y)
    return {
        "rgb": torch.from_numpy(rgb),
        "rgb_mask": torch.from_numpy(rgb_mask),
        "audio": torch.from_numpy(audio),
        "audio_mask": torch.from_numpy(audio_mask),
        "text": torch.from_numpy(np.stack([ex.title for ex in examples]).astype(np.float32)),  # (B, Dt)
        "text_mask": torch.tensor([bool(ex.title_mask) for ex in examples]),
        "labels": torch.from_numpy(y),  # (B, C)
        "label_weights": torch.from_numpy(w),  # (B, C)
    }


def random_window(num_frames: int, window_frames: int, rng: np.random.Generator) -> tuple[int, int]:
    """A random crop of ``window_frames`` consecutive frames (the whole video if shorter)."""
    if num_frames <= window_frames:
        return 0, num_frames
    start = int(rng.integers(0, num_frames - window_frames + 1))
    return start, start + window_frames
