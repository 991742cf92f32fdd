"""From a video URI and its title to whole-video feature arrays.

The T axis of :class:`VideoFeatures` is the video's sampled-frame timeline (one
row per frame sampled at ``sample_fps``). Windows index into it with
``(first_frame, end_frame)``; with overlapping windows (stride < length) a frame
shared by two windows is encoded and stored once. Only features are kept across
windows, never decoded frames, so memory grows with T * (1280 + 1000 + 128)
floats (about 9.6 KB per sampled frame), not with the video's pixels.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segtag.decode import DecodeLimits, open_video
from segtag.features.audio import AUDIO_DIM, AudioFeaturizer
from segtag.features.title import TITLE_DIM, TitleEncoder
from segtag.features.visual import NUM_CONCEPTS, VISUAL_DIM, VisualEncoder
from segtag.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class VideoFeatures:
    """Every feature of one video, on the sampled-frame timeline."""

    rgb: np.ndarray  # (T, 1280) float32, all sampled frames of the video, in time order
    audio: np.ndarray  # (T, 128) float32
    audio_mask: np.ndarray  # (T,) bool, False where there is no audio track
    title: np.ndarray  # (384,) float32
    title_mask: bool
    timestamps: np.ndarray  # (T,) float64
    windows: list[tuple[float, float, int, int]]  # (start_s, end_s, first_frame, end_frame) into the T axis
    concepts: np.ndarray  # (T, 1000) float32 ImageNet logits
    duration_s: float
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage; not saved

    @property
    def num_frames(self) -> int:
        """T, the number of sampled frames."""
        return int(self.rgb.shape[0])

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write everything (but timings) to one compressed .npz file."""
        win = np.asarray(self.windows, dtype=np.float64).reshape(-1, 4)  # (W, 4)
        np.savez_compressed(
            path,
            rgb=self.rgb,
            audio=self.audio,
            audio_mask=self.audio_mask,
            title=self.title,
            title_mask=np.asarray(self.title_mask),
            timestamps=self.timestamps,
            windows=win,
            concepts=self.concepts,
            duration_s=np.asarray(self.duration_s, dtype=np.float64),
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> VideoFeatures:
        """Read a file written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as z:
            missing = {"rgb", "audio", "audio_mask", "title", "title_mask", "timestamps", "windows", "concepts"}
            missing -= set(z.files)
            if missing:
                raise ValueError(f"{path}: not a VideoFeatures file, missing {sorted(missing)}")
            win = z["windows"].reshape(-1, 4)  # (W, 4)
            return cls(
                rgb=z["rgb"].astype(np.float32),
                audio=z["audio"].astype(np.float32),
                audio_mask=z["audio_mask"].astype(bool),
                title=z["title"].astype(np.float32),
                title_mask=bool(z["title_mask"]),
                timestamps=z["timestamps"].astype(np.float64),
                windows=[(float(a), float(b), int(c), int(d)) for a, b, c, d in win],
                concepts=z["concepts"].astype(np.float32),
                duration_s=float(z["duration_s"]) if "duration_s" in z.files else 0.0,
            )


class _Growing:
    """A (rows, dim) float array that grows by doubling, so appending T rows is O(T)."""

    def __init__(self, dim: int, dtype: Any = np.float32) -> None:
        self.data = np.zeros((64, dim), dtype=dtype)
        self.n = 0

    def append(self, rows: np.ndarray) -> None:
        need = self.n + len(rows)
        if need > len(self.data):
            grown = np.zeros((max(need, 2 * len(self.data)), self.data.shape[1]), dtype=self.data.dtype)
            grown[: self.n] = self.data[: self.n]
            self.data = grown
        self.data[self.n : need] = rows
        self.n = need

    def array(self) -> np.ndarray:
        return self.data[: self.n].copy()


class FeatureExtractor:
    """Decode a video window by window and encode its frames, audio and title.

    The encoders load their models lazily, once per extractor; reuse one
    extractor for many videos.
    """

    def __init__(
        self,
        window_s: float = 5.0,
        stride_s: float | None = None,
        sample_fps: float = 1.0,
        limits: DecodeLimits | None = None,
        device: str = "auto",
        batch_size: int = 32,
    ) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        if stride_s is not None and stride_s < 0:
            raise ValueError(f"stride_s must be >= 0 (0 or None: equal to window_s), got {stride_s}")
        if sample_fps <= 0:
            raise ValueError(f"sample_fps must be > 0, got {sample_fps}")
        self.window_s = window_s
        self.stride_s = stride_s if stride_s else window_s
        self.sample_fps = sample_fps
        self.limits = limits or DecodeLimits()
        self.visual = VisualEncoder(device=device, batch_size=batch_size)
        self.title_encoder = TitleEncoder(device=device)
        self.audio_featurizer = AudioFeaturizer()

    @classmethod
    def from_settings(cls, settings: Settings, device: str | None = None) -> FeatureExtractor:
        """An extractor with the decoding and model settings of ``settings``."""
        return cls(
            window_s=settings.window_s,
            stride_s=settings.effective_stride_s,
            sample_fps=settings.sample_fps,
            limits=DecodeLimits.from_settings(settings),
            device=device or settings.device,
            batch_size=settings.batch_size,
        )

    def extract(self, uri: str, title: str = "") -> VideoFeatures:
        """All features of the video at ``uri``; raises the VideoError family on bad input."""
        t_start = time.perf_counter()
        timings = {"decode": 0.0, "visual": 0.0, "audio": 0.0, "title": 0.0}
        rgb, concepts, audio = _Growing(VISUAL_DIM), _Growing(NUM_CONCEPTS), _Growing(AUDIO_DIM)
        times: list[np.ndarray] = []
        masks: list[np.ndarray] = []
        windows: list[tuple[float, float, int, int]] = []
        step = 1.0 / self.sample_fps
        with open_video(uri, self.limits) as video:
            duration = video.info.duration_s
            t0 = time.perf_counter()
            for w in video.windows(self.window_s, self.stride_s, self.sample_fps):
                t1 = time.perf_counter()
                timings["decode"] += t1 - t0
                windows.append((w.start, w.end, w.first_frame, w.first_frame + len(w.timestamps)))
                # Frames before rgb.n were encoded with an earlier, overlapping window.
                skip = rgb.n - w.first_frame
                if skip < len(w.timestamps):
                    new = slice(max(skip, 0), None)
                    feats, logits = self.visual.encode(w.frames[new])  # (T', 1280), (T', 1000)
                    t2 = time.perf_counter()
                    af = self.audio_featurizer(w.audio, w.timestamps[new], w.start, step)  # (T', 128)
                    timings["visual"] += t2 - t1
                    timings["audio"] += time.perf_counter() - t2
                    rgb.append(feats)
                    concepts.append(logits)
                    audio.append(af)
                    times.append(w.timestamps[new])
                    masks.append(np.full(len(feats), w.has_audio, dtype=bool))
                t0 = time.perf_counter()
        t3 = time.perf_counter()
        title_vec = self.title_encoder.encode([title or ""])[0]  # (384,)
        timings["title"] = time.perf_counter() - t3
        timings["total"] = time.perf_counter() - t_start
        ts = np.concatenate(times) if times else np.zeros(0, dtype=np.float64)
        log.debug("extracted %s: %d frames, %d windows, %s", uri, len(ts), len(windows), timings)
        return VideoFeatures(
            rgb=rgb.array(),
            audio=audio.array(),
            audio_mask=np.concatenate(masks) if masks else np.zeros(0, dtype=bool),
            title=title_vec.astype(np.float32),
            title_mask=bool(title and title.strip()),
            timestamps=ts.astype(np.float64),
            windows=windows,
            concepts=concepts.array(),
            duration_s=float(duration),
            timings=timings,
        )


__all__ = ["TITLE_DIM", "FeatureExtractor", "VideoFeatures"]
