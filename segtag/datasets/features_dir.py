"""The extracted-features directory (docs/contracts.md): index.jsonl + features/*.npz + vocabulary.json."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from segtag.datasets.example import Example, Segment

log = logging.getLogger(__name__)

INDEX = "index.jsonl"
VOCABULARY = "vocabulary.json"
NEEDED = ("rgb", "audio", "audio_mask", "title", "title_mask", "timestamps")


def read_vocabulary(path: str | Path) -> list[str]:
    """A vocabulary.json file: a JSON list of tag names."""
    path = Path(path)
    try:
        vocab = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ValueError(f"{path} does not exist; a features directory needs its vocabulary.json") from exc
    if not isinstance(vocab, list) or not all(isinstance(t, str) for t in vocab):
        raise ValueError(f"{path}: expected a JSON list of tag names")
    if len(set(vocab)) != len(vocab):
        raise ValueError(f"{path}: duplicate tag names")
    return vocab


def is_features_dir(path: str | Path) -> bool:
    """True when ``path`` looks like a features directory (has index.jsonl)."""
    return (Path(path) / INDEX).is_file()


class FeaturesDataset:
    """Random-access dataset over a features directory; feature files are read lazily.

    Tags are mapped to indices through ``vocabulary`` (default: DIR/vocabulary.json);
    tags outside it are ignored (and counted in ``unknown_tags``).
    """

    def __init__(self, root: str | Path, vocabulary: list[str] | None = None) -> None:
        self.root = Path(root)
        index = self.root / INDEX
        if not index.is_file():
            raise ValueError(f"{self.root} is not a features directory: {index} is missing (run `segtag extract`)")
        self.vocabulary = list(vocabulary) if vocabulary is not None else read_vocabulary(self.root / VOCABULARY)
        self.tag_index = {t: i for i, t in enumerate(self.vocabulary)}
        self.records: list[dict[str, Any]] = []
        for n, line in enumerate(index.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{index}:{n}: not JSON: {exc}") from exc
            if "video_id" not in rec or "features" not in rec:
                raise ValueError(f"{index}:{n}: needs video_id and features")
            self.records.append(rec)
        self.unknown_tags: set[str] = set()

    def __len__(self) -> int:
        return len(self.records)

    @property
    def video_ids(self) -> list[str]:
        """The video ids in index order."""
        return [str(r["video_id"]) for r in self.records]

    def multi_hot(self, tags: list[str]) -> np.ndarray:
        """(C,) float32 multi-hot of the known tags."""
        y = np.zeros(len(self.vocabulary), np.float32)
        for t in tags:
            i = self.tag_index.get(t)
            if i is None:
                self.unknown_tags.add(t)
            else:
                y[i] = 1.0
        return y

    def __getitem__(self, i: int) -> Example:
        rec = self.records[i]
        path = self.root / rec["features"]
        try:
            with np.load(path, allow_pickle=False) as z:
                # only what training needs: the (T, 1000) concepts would double the read time
                arrays = {k: z[k] for k in NEEDED if k in z.files}
        except FileNotFoundError as exc:
            raise ValueError(f"{path} (video {rec['video_id']}) is missing") from exc
        return self._example(rec, arrays)

    def _example(self, rec: dict[str, Any], a: dict[str, np.ndarray]) -> Example:
        rgb = a["rgb"].astype(np.float32)
        T = rgb.shape[0]
        audio = a["audio"].astype(np.float32) if "audio" in a else np.zeros((T, 128), np.float32)
        audio_mask = a["audio_mask"].astype(bool) if "audio_mask" in a else np.zeros(T, bool)
        title = a["title"].astype(np.float32) if "title" in a else np.zeros(384, np.float32)
        title_mask = bool(a["title_mask"]) if "title_mask" in a else bool(np.any(title))
        timestamps = a["timestamps"].astype(np.float64) if "timestamps" in a else np.arange(T, dtype=np.float64)
        segments: list[Segment] = []
        for seg in rec.get("segments") or []:
            s, e = seconds_to_frames(timestamps, float(seg["start"]), float(seg["end"]))
            # our manifests annotate every tag of a segment, so all classes are rated
            segments.append((s, e, self.multi_hot(list(seg.get("labels", []))), np.ones(len(self.vocabulary), bool)))
        return Example(
            video_id=str(rec["video_id"]),
            rgb=rgb,
            audio=audio,
            audio_mask=audio_mask,
            title=title,
            title_mask=title_mask,
            labels=self.multi_hot(list(rec.get("labels", []))),
            segments=segments,
        )


def seconds_to_frames(timestamps: np.ndarray, start: float, end: float) -> tuple[int, int]:
    """The frame slice [s, e) whose timestamps fall in [start, end); at least one frame."""
    T = len(timestamps)
    s = int(np.searchsorted(timestamps, start, side="left"))
    e = int(np.searchsorted(timestamps, end, side="left"))
    s = min(s, max(T - 1, 0))
    return s, max(e, s + 1) if T else 0


def write_features_dir(root: str | Path, items: list[tuple[dict[str, Any], dict[str, np.ndarray]]]) -> Path:
    """Write a features directory from (manifest line, arrays) pairs; used by tests and tools.

    The arrays use the ``VideoFeatures`` field names (rgb, audio, audio_mask, title,
    title_mask, timestamps, ...). vocabulary.json gets every tag, sorted.
    """
    root = Path(root)
    (root / "features").mkdir(parents=True, exist_ok=True)
    tags: set[str] = set()
    lines = []
    for rec, arrays in items:
        rel = f"features/{rec['video_id']}.npz"
        np.savez(root / rel, **arrays)  # type: ignore[arg-type]
        tags.update(rec.get("labels", []))
        for seg in rec.get("segments", []):
            tags.update(seg.get("labels", []))
        lines.append(json.dumps({**rec, "features": rel}))
    (root / INDEX).write_text("\n".join(lines) + "\n")
    (root / VOCABULARY).write_text(json.dumps(sorted(tags)))
    return root
