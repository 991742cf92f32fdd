"""Metrics against hand-computed cases and a naive reference implementation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segtag.metrics import (
    EvaluationMetrics,
    SegmentMetrics,
    VideoMetrics,
    average_precision,
    gap,
    hit_at_one,
    precision_at_equal_recall_rate,
    segment_map,
)

PRED = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.7]])
LAB = np.array([[1, 0, 0], [0, 0, 1]])


def test_average_precision_by_hand() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    labels = np.array([1, 0, 1, 0])
    # ranks 1 and 3 are positive: (1/1 + 2/3) / 2
    assert average_precision(scores, labels) == pytest.approx((1 + 2 / 3) / 2)
    # one more positive exists outside the list: divide by 3
    assert average_precision(scores, labels, num_positives=3) == pytest.approx((1 + 2 / 3) / 3)
    # AP@2 keeps only the first two and divides by min(P, 2)
    assert average_precision(scores, labels, n=2) == pytest.approx(1 / 2)
    assert average_precision(scores, np.zeros(4)) == 0.0


def test_ties_are_broken_pessimistically() -> None:
    assert average_precision(np.array([0.5, 0.5]), np.array([1, 0])) == pytest.approx(0.5)
    assert average_precision(np.array([0.5, 0.5]), np.array([0, 1])) == pytest.approx(0.5)


def test_gap_by_hand() -> None:
    # top 2 per video: (0.9, +), (0.5, -) and (0.8, -), (0.7, +); pooled: + - + -; 2 positives
    assert gap(PRED, LAB, k=2) == pytest.approx((1 + 2 / 3) / 2)
    # top 1 per video: (0.9, +), (0.8, -); the positive at 0.7 is missed but still counted
    assert gap(PRED, LAB, k=1) == pytest.approx(0.5)


def test_hit_at_one_and_perr_by_hand() -> None:
    assert hit_at_one(PRED, LAB) == pytest.approx(0.5)
    assert precision_at_equal_recall_rate(PRED, LAB) == pytest.approx(0.5)
    pred = np.array([[0.9, 0.8, 0.1, 0.7], [0.1, 0.2, 0.3, 0.4]])
    lab = np.array([[1, 0, 0, 1], [0, 0, 0, 0]])
    # video 1: top 2 = {0, 1}, one positive -> 1/2; video 2 has no labels -> 0 (as the starter code)
    assert precision_at_equal_recall_rate(pred, lab) == pytest.approx(0.25)
    # a positive scored exactly 0 does not count
    assert precision_at_equal_recall_rate(np.array([[0.0, 0.0]]), np.array([[1, 0]])) == 0.0


def test_video_metrics_accumulate_in_batches_like_one_batch() -> None:
    rng = np.random.default_rng(1)
    pred = rng.random((50, 9))
    lab = (rng.random((50, 9)) < 0.2).astype(int)
    whole = VideoMetrics(9, top_k=4)
    whole.accumulate(pred, lab)
    parts = VideoMetrics(9, top_k=4)
    for i in range(0, 50, 7):
        parts.accumulate(pred[i : i + 7], lab[i : i + 7])
    assert parts.get() == pytest.approx(whole.get())
    assert whole.get()["gap"] == pytest.approx(gap(pred, lab, 4))
    parts.clear()
    with pytest.raises(ValueError, match="no videos accumulated"):
        parts.get()


def test_map_by_hand() -> None:
    m = VideoMetrics(3, top_k=1)
    m.accumulate(PRED, LAB)
    # class 0: its only positive is video 1's top 1 -> AP 1; class 2: its positive is not in any top 1 -> 0;
    # class 1 has no positives and is left out of the mean
    assert m.get()["map"] == pytest.approx(0.5)
    m = VideoMetrics(3, top_k=3)
    m.accumulate(PRED, LAB)
    # class 2: 0.7 (+) ranks above 0.5 (-) -> AP 1
    assert m.get()["map"] == pytest.approx(1.0)


def test_segment_map_by_hand() -> None:
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.3], [0.4, 0.7]])
    labels = np.array([[1, 0], [0, 0], [0, 1], [1, 1]])
    rated = np.array([[1, 1], [1, 1], [1, 1], [0, 1]], bool)
    # class 0 candidates (rated): 0.9 +, 0.6 -, 0.2 -  -> AP 1 (segment 3 is unrated for class 0)
    # class 1: 0.8 -, 0.7 +, 0.3 +, 0.1 -  -> (1/2 + 2/3) / 2
    ap1 = (1 / 2 + 2 / 3) / 2
    assert segment_map(probs, labels, rated) == pytest.approx((1 + ap1) / 2)
    # K = 2: class 0 -> 1/min(1, 2) * 1; class 1 -> (1/2) / min(2, 2)
    assert segment_map(probs, labels, rated, top_k=2) == pytest.approx((1 + 0.25) / 2)


def test_segment_map_skips_classes_without_rated_positives() -> None:
    probs = np.array([[0.9, 0.1], [0.2, 0.8]])
    labels = np.array([[1, 0], [0, 0]])
    assert segment_map(probs, labels, np.ones((2, 2), bool)) == pytest.approx(1.0)
    assert segment_map(probs, np.zeros((2, 2)), np.ones((2, 2), bool)) is None
    assert SegmentMetrics(2).get() is None


def test_evaluation_metrics_combines_everything() -> None:
    m = EvaluationMetrics(3, top_k=2)
    m.accumulate(PRED, LAB, PRED, LAB, np.ones_like(LAB, bool))
    got = m.get()
    assert set(got) == {"gap", "map", "hit1", "perr", "segment_map", "num_videos", "num_segments"}
    assert got["gap"] == pytest.approx((1 + 2 / 3) / 2)
    assert got["num_videos"] == 2 and got["num_segments"] == 2
    m.accumulate(PRED, LAB)  # videos without segments
    assert m.get()["num_segments"] == 2
    m.clear()
    with pytest.raises(ValueError):
        m.get()


def test_clear_error_messages() -> None:
    with pytest.raises(ValueError, match=r"shape \(2, 3\) and labels shape \(2, 2\) differ"):
        gap(PRED, LAB[:, :2])
    with pytest.raises(ValueError, match="must be 2-D"):
        hit_at_one(PRED[0], LAB[0])
    with pytest.raises(ValueError, match="k must be a positive integer"):
        gap(PRED, LAB, k=0)
    with pytest.raises(ValueError, match="expected 4 classes"):
        VideoMetrics(4).accumulate(PRED, LAB)
    with pytest.raises(ValueError, match="segment_rated shape"):
        SegmentMetrics(3).accumulate(PRED, LAB, np.ones((1, 3), bool))


def naive_ap(scores: list[float], labels: list[int], total: int) -> float:
    """The starter code's loop, with distinct scores so the order is unambiguous."""
    order = sorted(range(len(scores)), key=lambda i: scores[i], reverse=True)
    hits, ap = 0, 0.0
    for rank, i in enumerate(order, 1):
        if labels[i]:
            hits += 1
            ap += hits / rank / total
    return ap


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 12), st.integers(2, 8), st.integers(1, 5), st.integers(0, 10_000))
def test_gap_matches_naive_reference(n: int, c: int, k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    pred = rng.permutation(n * c).reshape(n, c) / (n * c)  # distinct scores
    lab = (rng.random((n, c)) < 0.3).astype(int)
    total = int(lab.sum())
    pooled_s, pooled_l = [], []
    for v in range(n):
        top = np.argsort(-pred[v])[: min(k, c)]
        pooled_s += pred[v, top].tolist()
        pooled_l += lab[v, top].tolist()
    expected = naive_ap(pooled_s, pooled_l, total) if total else 0.0
    assert gap(pred, lab, k) == pytest.approx(expected)
