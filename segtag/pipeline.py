"""One video in, its tags and segments out: the code both the tagger service and
``segtag tag`` (local mode) run.

The work has two stages with very different costs, kept apart so the tagger can
pipeline them (decode/features of the next video while the model runs):

1. :meth:`VideoTagger.extract` - decode the video, sample frames and compute the
   frame features (EfficientNet, log-mel audio, title embedding). CPU/GPU heavy.
2. :meth:`VideoTagger.infer` - the tagging network over the whole video and over
   every window, for *several* videos at once: windows from different videos
   share a forward pass, chunked by ``Settings.batch_size``.

:meth:`VideoTagger.assemble` turns the two into a :class:`VideoResult`;
:meth:`VideoTagger.tag` runs all three for one video.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from segtag.errors import ModelError
from segtag.features.device import resolve_device
from segtag.settings import Settings

if TYPE_CHECKING:
    from segtag.checkpoint import LoadedModel
    from segtag.features.extractor import FeatureExtractor, VideoFeatures

log = logging.getLogger(__name__)

# A tag is reported (and indexed by tag) when its probability reaches this; the
# best tag of a video or segment is always reported so nothing comes back empty.
MIN_TAG_SCORE = 0.05
NUM_CONCEPTS = 3  # top ImageNet concepts reported per segment


@dataclass
class SegmentResult:
    """One window of a video: where it is, what it shows, and its embedding."""

    index: int
    start: float
    end: float
    tags: list[tuple[str, float]]
    concepts: list[tuple[str, float]]
    embedding: np.ndarray  # (E,) float32, L2-normalised

    def to_json(self) -> dict[str, Any]:
        """The segment for JSON output (without the embedding)."""
        return {
            "index": self.index,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "tags": [{"tag": t, "score": round(s, 4)} for t, s in self.tags],
            "concepts": [{"concept": c, "score": round(s, 4)} for c, s in self.concepts],
        }


@dataclass
class VideoResult:
    """Everything the tagger found in one video."""

    tags: list[tuple[str, float]]
    segments: list[SegmentResult]
    duration_s: float
    model_version: str
    timings: dict[str, float] = field(default_factory=dict)
    video_id: str | None = None
    embedding: np.ndarray | None = None  # (E,) video-level embedding

    def to_json(self) -> dict[str, Any]:
        """Tags and segments as JSON (``segtag tag --json``)."""
        return {
            "video_id": self.video_id,
            "duration_s": round(self.duration_s, 3),
            "model_version": self.model_version,
            "tags": [{"tag": t, "score": round(s, 4)} for t, s in self.tags],
            "segments": [s.to_json() for s in self.segments],
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }


@dataclass
class ModelOutputs:
    """The network's outputs for one video."""

    video_probs: np.ndarray  # (C,)
    video_embedding: np.ndarray  # (E,)
    segment_probs: np.ndarray  # (W, C)
    segment_embeddings: np.ndarray  # (W, E)
    seconds: float = 0.0  # this video's share of the batch's forward time


def top_tags(
    probs: np.ndarray, vocabulary: Sequence[str], k: int, min_score: float = MIN_TAG_SCORE
) -> list[tuple[str, float]]:
    """The ``k`` most probable tags at or above ``min_score`` (at least the best one)."""
    order = np.argsort(-probs, kind="stable")[:k]
    out = [(vocabulary[i], float(probs[i])) for i in order if probs[i] >= min_score]
    return out or [(vocabulary[int(order[0])], float(probs[order[0]]))]


def softmax(x: np.ndarray) -> np.ndarray:
    """Numerically stable softmax of a 1-d array."""
    z = x.astype(np.float64) - float(np.max(x))
    e = np.exp(z)
    return (e / e.sum()).astype(np.float32)


def top_concepts(logits: np.ndarray, names: Sequence[str], k: int = NUM_CONCEPTS) -> list[tuple[str, float]]:
    """The ``k`` most probable ImageNet classes of frame logits averaged over a window."""
    if logits.shape[0] == 0:
        return []
    probs = softmax(logits.mean(axis=0))
    order = np.argsort(-probs, kind="stable")[:k]
    return [(names[i], float(probs[i])) for i in order]


@dataclass
class _Item:
    """One row of a model batch: a slice [first, end) of one video's frames."""

    video: int
    first: int
    end: int


class VideoTagger:
    """Loads the model and the feature extractor once; tags videos.

    ``extractor`` and ``loaded`` may be given (tests, or a caller that already holds
    them); otherwise they are built from ``settings`` (``model_dir``, ``device``).
    """

    def __init__(
        self,
        settings: Settings,
        extractor: FeatureExtractor | None = None,
        loaded: LoadedModel | None = None,
    ) -> None:
        self.settings = settings
        self.device = str(resolve_device(settings.device))
        if loaded is None:
            from segtag.checkpoint import load_model

            loaded = load_model(settings.model_dir, self.device)
        self.loaded = loaded
        self.model = loaded.model.to(self.device).eval()
        self.vocabulary = loaded.vocabulary
        self.model_version = loaded.version
        if extractor is None:
            from segtag.features.extractor import FeatureExtractor

            extractor = FeatureExtractor.from_settings(settings, self.device)
        self.extractor = extractor
        from segtag.features.visual import imagenet_classes

        self.concept_names = imagenet_classes()
        cfg = self.model.config
        if (cfg.window_s, cfg.sample_fps) != (settings.window_s, settings.sample_fps):
            # Still usable (NeXtVLAD pools any length), but scores drift from what was measured.
            log.warning(
                "model %s was trained on %.1f s windows at %.1f fps; tagging with %.1f s at %.1f fps",
                self.model_version, cfg.window_s, cfg.sample_fps, settings.window_s, settings.sample_fps,
            )  # fmt: skip
        log.info("tagger ready: model %s on %s, %d tags", self.model_version, self.device, len(self.vocabulary))

    def warm_up(self) -> None:
        """Load the encoders the extractor loads lazily, so the first video is not slower.

        The tagger calls this before it joins its consumer group: a member that
        spends its first seconds loading weights only delays its own partitions.
        """
        visual = getattr(self.extractor, "visual", None)
        if visual is not None:
            visual.encode(np.zeros((1, 224, 224, 3), np.uint8))
        title = getattr(self.extractor, "title_encoder", None)
        if title is not None:
            title.encode(["warm up"])

    # --- stage 1 -------------------------------------------------------------

    def extract(self, uri: str, title: str = "") -> VideoFeatures:
        """Decode a video and compute its frame features (raises VideoError subclasses)."""
        return self.extractor.extract(uri, title)

    # --- stage 2 -------------------------------------------------------------

    def infer(self, videos: Sequence[VideoFeatures]) -> list[ModelOutputs]:
        """Run the network over the whole of each video and over all their windows.

        Rows of different videos share forward passes of at most ``batch_size``
        rows, which is what keeps the model busy when videos are short.
        """
        if not videos:
            return []
        for f in videos:
            self._check_dims(f)
        started = time.perf_counter()
        whole = [_Item(v, 0, int(f.rgb.shape[0])) for v, f in enumerate(videos)]
        windows = [_Item(v, int(w[2]), int(w[3])) for v, f in enumerate(videos) for w in f.windows]
        # Whole videos are batched apart from windows: one long video would
        # otherwise pad every short window to its length.
        v_probs, v_emb = self._run(videos, whole)
        w_probs, w_emb = self._run(videos, windows)
        elapsed = time.perf_counter() - started
        total_rows = len(whole) + len(windows)
        out = []
        row = 0
        for v, f in enumerate(videos):
            n = len(f.windows)
            share = (1 + n) / total_rows
            out.append(
                ModelOutputs(v_probs[v], v_emb[v], w_probs[row : row + n], w_emb[row : row + n], elapsed * share)
            )
            row += n
        return out

    def _check_dims(self, f: VideoFeatures) -> None:
        cfg = self.model.config
        for name, arr, want in (("rgb", f.rgb, cfg.rgb_dim), ("audio", f.audio, cfg.audio_dim)):
            if want > 0 and (arr.ndim != 2 or arr.shape[1] != want):
                raise ModelError(f"{name} features have shape {arr.shape}, the model expects (T, {want})")
        if cfg.text_dim > 0 and f.title.shape[-1] != cfg.text_dim:
            raise ModelError(f"title features have {f.title.shape[-1]} dims, the model expects {cfg.text_dim}")

    def _run(self, videos: Sequence[VideoFeatures], items: Sequence[_Item]) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.model.config
        probs = np.zeros((len(items), cfg.num_classes), np.float32)
        emb = np.zeros((len(items), cfg.embed_dim), np.float32)
        bs = self.settings.batch_size
        for lo in range(0, len(items), bs):
            chunk = items[lo : lo + bs]
            batch = _make_batch(videos, chunk)
            with torch.inference_mode():
                res = self.model(**{k: t.to(self.device) for k, t in batch.items()})
            probs[lo : lo + len(chunk)] = res.probs.float().cpu().numpy()
            emb[lo : lo + len(chunk)] = res.embedding.float().cpu().numpy()
        return probs, emb

    # --- results -------------------------------------------------------------

    def assemble(
        self,
        features: VideoFeatures,
        outputs: ModelOutputs,
        video_id: str | None = None,
        timings: dict[str, float] | None = None,
    ) -> VideoResult:
        """Turn model outputs into reported tags, concepts and segments."""
        k, floor = self.settings.top_k, self.settings.min_tag_score
        segments = []
        for i, (start, end, first, last) in enumerate(features.windows):
            segments.append(
                SegmentResult(
                    index=i,
                    start=float(start),
                    end=float(end),
                    tags=top_tags(outputs.segment_probs[i], self.vocabulary, k, floor),
                    concepts=top_concepts(features.concepts[int(first) : int(last)], self.concept_names),
                    embedding=outputs.segment_embeddings[i].astype(np.float32),
                )
            )
        return VideoResult(
            tags=top_tags(outputs.video_probs, self.vocabulary, k, floor),
            segments=segments,
            duration_s=float(features.duration_s),
            model_version=self.model_version,
            timings=dict(timings or {}),
            video_id=video_id,
            embedding=outputs.video_embedding.astype(np.float32),
        )

    def tag(self, uri: str, title: str = "", video_id: str | None = None) -> VideoResult:
        """Tag one video end to end (decode, features, model)."""
        t0 = time.perf_counter()
        features = self.extract(uri, title)
        t1 = time.perf_counter()
        (outputs,) = self.infer([features])
        t2 = time.perf_counter()
        return self.assemble(features, outputs, video_id, {"decode_features": t1 - t0, "model": t2 - t1})


def _make_batch(videos: Sequence[VideoFeatures], items: Sequence[_Item]) -> dict[str, torch.Tensor]:
    """A padded batch of frame slices, possibly of different videos."""
    n = len(items)
    t = max(1, max(it.end - it.first for it in items))
    first = videos[items[0].video]
    rgb = np.zeros((n, t, first.rgb.shape[1]), np.float32)
    audio = np.zeros((n, t, first.audio.shape[1]), np.float32)
    rgb_mask = np.zeros((n, t), bool)
    audio_mask = np.zeros((n, t), bool)
    text = np.zeros((n, first.title.shape[-1]), np.float32)
    text_mask = np.zeros((n,), bool)
    for row, it in enumerate(items):
        f = videos[it.video]
        m = it.end - it.first
        rgb[row, :m] = f.rgb[it.first : it.end]
        audio[row, :m] = f.audio[it.first : it.end]
        rgb_mask[row, :m] = True
        audio_mask[row, :m] = f.audio_mask[it.first : it.end]
        text[row] = f.title
        text_mask[row] = bool(f.title_mask)
    return {
        "rgb": torch.from_numpy(rgb),
        "rgb_mask": torch.from_numpy(rgb_mask),
        "audio": torch.from_numpy(audio),
        "audio_mask": torch.from_numpy(audio_mask),
        "text": torch.from_numpy(text),
        "text_mask": torch.from_numpy(text_mask),
    }
