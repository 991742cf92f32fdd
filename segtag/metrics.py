"""Evaluation metrics of the YouTube-8M challenges, vectorised in numpy.

Definitions (``predictions`` and ``labels`` are (N, C) arrays; a label counts as
positive when > 0):

* **hit@1** - fraction of videos whose top-scoring class is a positive.
* **PERR** (precision at equal recall rate) - per video with n positives, the
  fraction of its n top-scoring classes that are positive (and scored > 0);
  videos without positives contribute 0; averaged over all videos.
* **GAP@k** (global average precision, k = 20) - keep each video's k
  top-scoring (class, score, label) triples, pool them across all videos and
  classes, rank the pool by score and compute
  ``AP = sum_i precision@i * rel_i / P`` with ``P`` = the total number of
  positive labels of all videos (also the positives that fell outside a top k).
* **MAP** - the same top-k triples split by class; per class, AP over its
  triples with ``P_c`` = all positives of class c; mean over the classes that
  have at least one positive (the starter code's ``filter_empty_classes``).
* **segment MAP@K** (YouTube-8M 2019 segment challenge) - per class c, the
  candidate segments are those rated for c; rank them by the predicted score of
  c, keep the top K (challenge: K = 100000; default: all) and compute
  ``AP@K = sum_{i<=K} precision@i * rel_i / min(P_c, K)`` where ``P_c`` is the
  number of candidates rated positive for c. The mean runs over classes with at
  least one positive rated segment (AP is undefined without positives).

Ties in score are broken pessimistically (negatives rank first among equal
scores), so a constant predictor never looks better than it is; the starter
code shuffles ties at random for the same reason.
"""

from __future__ import annotations

import numpy as np

TOP_K = 20


def _check_pair(
    predictions: np.ndarray, labels: np.ndarray, what: str = "predictions"
) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(predictions, dtype=np.float64)
    y = np.asarray(labels)
    if p.ndim != 2:
        raise ValueError(f"{what} must be 2-D (num_examples, num_classes), got shape {p.shape}")
    if p.shape != y.shape:
        raise ValueError(f"{what} shape {p.shape} and labels shape {y.shape} differ")
    return p, y > 0


def average_precision(
    scores: np.ndarray, labels: np.ndarray, num_positives: int | None = None, n: int | None = None
) -> float:
    """AP of a ranked list: sum over the top n of precision@i * rel_i / min(P, n).

    ``num_positives`` (P) defaults to the positives in ``labels``; 0 positives gives 0.0.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    rel = np.asarray(labels).ravel() > 0
    if s.shape != rel.shape:
        raise ValueError(f"scores ({s.size}) and labels ({rel.size}) differ in length")
    if n is not None and n <= 0:
        raise ValueError(f"n must be a positive integer, got {n}")
    numpos = int(rel.sum()) if num_positives is None else int(num_positives)
    if n is not None:
        numpos = min(numpos, n)
    if numpos <= 0:
        return 0.0
    order = np.lexsort((rel, -s))  # by score descending, negatives first among ties
    ranked = rel[order][:n]
    precision = np.cumsum(ranked) / np.arange(1, ranked.size + 1)
    return float(np.sum(precision * ranked) / numpos)


def hit_at_one(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Mean over videos of "the top-scoring class is a positive"."""
    p, y = _check_pair(predictions, labels)
    return float(np.mean(y[np.arange(p.shape[0]), np.argmax(p, axis=1)]))


def precision_at_equal_recall_rate(predictions: np.ndarray, labels: np.ndarray) -> float:
    """PERR: mean over videos of precision within the top n_labels predictions."""
    p, y = _check_pair(predictions, labels)
    n = y.sum(axis=1)  # (N,)
    ranks = np.argsort(np.argsort(-p, axis=1, kind="stable"), axis=1)  # (N, C) rank of each class
    hits = (y & (p > 0) & (ranks < n[:, None])).sum(axis=1)
    per_video = np.where(n > 0, hits / np.maximum(n, 1), 0.0)
    return float(per_video.mean())


def top_k_by_class(predictions: np.ndarray, labels: np.ndarray, k: int = TOP_K) -> tuple[np.ndarray, ...]:
    """Each video's k best (class, score, label) triples as flat arrays, and positives per class."""
    if k <= 0:
        raise ValueError(f"k must be a positive integer, got {k}")
    p, y = _check_pair(predictions, labels)
    k = min(k, p.shape[1])
    idx = np.argpartition(-p, k - 1, axis=1)[:, :k]  # (N, k) classes of the top k
    scores = np.take_along_axis(p, idx, axis=1)
    rel = np.take_along_axis(y, idx, axis=1)
    return idx.ravel(), scores.ravel(), rel.ravel(), y.sum(axis=0)


def gap(predictions: np.ndarray, labels: np.ndarray, k: int = TOP_K) -> float:
    """GAP@k of one batch (see the module docstring)."""
    _, scores, rel, positives = top_k_by_class(predictions, labels, k)
    return average_precision(scores, rel, int(positives.sum()))


class VideoMetrics:
    """Accumulator of GAP@k, MAP, hit@1 and PERR over batches of videos."""

    def __init__(self, num_classes: int, top_k: int = TOP_K) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes, self.top_k = num_classes, top_k
        self.clear()

    def clear(self) -> None:
        """Forget everything accumulated."""
        self._classes: list[np.ndarray] = []
        self._scores: list[np.ndarray] = []
        self._rel: list[np.ndarray] = []
        self._positives = np.zeros(self.num_classes, np.int64)
        self._sum_hit1 = 0.0
        self._sum_perr = 0.0
        self.num_videos = 0

    def accumulate(self, predictions: np.ndarray, labels: np.ndarray) -> None:
        """Add a batch of (N, C) predictions and labels."""
        p, y = _check_pair(predictions, labels)
        if p.shape[1] != self.num_classes:
            raise ValueError(f"expected {self.num_classes} classes, got predictions of shape {p.shape}")
        if p.shape[0] == 0:
            return
        cls, scores, rel, positives = top_k_by_class(p, y, self.top_k)
        self._classes.append(cls)
        self._scores.append(scores)
        self._rel.append(rel)
        self._positives += positives
        self._sum_hit1 += hit_at_one(p, y) * p.shape[0]
        self._sum_perr += precision_at_equal_recall_rate(p, y) * p.shape[0]
        self.num_videos += p.shape[0]

    def get(self) -> dict[str, float]:
        """gap, map, hit1 and perr over everything accumulated."""
        if self.num_videos == 0:
            raise ValueError("no videos accumulated: call accumulate() before get()")
        cls = np.concatenate(self._classes)
        scores = np.concatenate(self._scores)
        rel = np.concatenate(self._rel)
        aps = [
            average_precision(scores[cls == c], rel[cls == c], int(self._positives[c]))
            for c in np.flatnonzero(self._positives > 0)
        ]
        return {
            "gap": average_precision(scores, rel, int(self._positives.sum())),
            "map": float(np.mean(aps)) if aps else 0.0,
            "hit1": self._sum_hit1 / self.num_videos,
            "perr": self._sum_perr / self.num_videos,
        }


class SegmentMetrics:
    """Accumulator of the 2019 segment challenge's MAP@K (see the module docstring)."""

    def __init__(self, num_classes: int, top_k: int | None = None) -> None:
        if top_k is not None and top_k <= 0:
            raise ValueError(f"top_k must be a positive integer or None, got {top_k}")
        self.num_classes, self.top_k = num_classes, top_k
        self.clear()

    def clear(self) -> None:
        """Forget everything accumulated."""
        self._probs: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self._rated: list[np.ndarray] = []
        self.num_segments = 0

    def accumulate(self, probs: np.ndarray, labels: np.ndarray, rated: np.ndarray) -> None:
        """Add (S, C) segment scores, labels and rated bits (True where the class was judged)."""
        p, y = _check_pair(probs, labels, "segment_probs")
        r = np.asarray(rated, dtype=bool)
        if r.shape != p.shape:
            raise ValueError(f"segment_rated shape {r.shape} differs from segment_probs shape {p.shape}")
        if p.shape[1] != self.num_classes:
            raise ValueError(f"expected {self.num_classes} classes, got segment_probs of shape {p.shape}")
        self._probs.append(p)
        self._labels.append(y & r)
        self._rated.append(r)
        self.num_segments += p.shape[0]

    def get(self) -> float | None:
        """Segment MAP@K, or None when no class has a positive rated segment."""
        if not self._probs:
            return None
        p, y, r = (np.concatenate(a) for a in (self._probs, self._labels, self._rated))
        aps = []
        for c in np.flatnonzero(y.any(axis=0)):
            cand = r[:, c]
            k = self.top_k or int(cand.sum())
            aps.append(average_precision(p[cand, c], y[cand, c], n=k))
        return float(np.mean(aps)) if aps else None


def segment_map(probs: np.ndarray, labels: np.ndarray, rated: np.ndarray, top_k: int | None = None) -> float | None:
    """Segment MAP@K of one set of segments."""
    acc = SegmentMetrics(np.asarray(probs).shape[1], top_k)
    acc.accumulate(probs, labels, rated)
    return acc.get()


class EvaluationMetrics:
    """Video-level (gap, map, hit1, perr) and segment-level (segment_map) metrics together."""

    def __init__(self, num_classes: int, top_k: int = TOP_K, segment_top_k: int | None = None) -> None:
        self.video = VideoMetrics(num_classes, top_k)
        self.segment = SegmentMetrics(num_classes, segment_top_k)

    def accumulate(
        self,
        video_probs: np.ndarray,
        video_labels: np.ndarray,
        segment_probs: np.ndarray | None = None,
        segment_labels: np.ndarray | None = None,
        segment_rated: np.ndarray | None = None,
    ) -> None:
        """Add a batch of videos (N, C) and optionally their labelled segments (S, C)."""
        self.video.accumulate(video_probs, video_labels)
        if segment_probs is not None and len(segment_probs):
            if segment_labels is None:
                raise ValueError("segment_probs given without segment_labels")
            rated = np.ones_like(segment_labels, dtype=bool) if segment_rated is None else segment_rated
            self.segment.accumulate(segment_probs, segment_labels, rated)

    def get(self) -> dict[str, float | int | None]:
        """gap, map, hit1, perr, segment_map, num_videos, num_segments."""
        out: dict[str, float | int | None] = dict(self.video.get())
        out["segment_map"] = self.segment.get()
        out["num_videos"] = self.video.num_videos
        out["num_segments"] = self.segment.num_segments
        return out

    def clear(self) -> None:
        """Forget everything accumulated."""
        self.video.clear()
        self.segment.clear()
