"""The FAISS segment index and its snapshot file, with synthetic clustered embeddings.

Each "source" is a random unit centre; a video of that source has segments at the
centre plus small noise, so every segment's nearest neighbours are itself, then
segments of the same source in other videos.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segtag.index import IndexConfig, IndexDataError, SegmentIndex
from segtag.index_snapshot import CorruptSnapshotError, read_snapshot, snapshot_path, write_snapshot

DIM = 32


@dataclass
class Video:
    video_id: str
    source: int
    segment_ids: list[str]
    vectors: np.ndarray


def make_corpus(
    sources: int = 5, videos_per_source: int = 4, segments: int = 3, dim: int = DIM, noise: float = 0.15, seed: int = 0
) -> list[Video]:
    """Videos whose segments cluster around their source's centre."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(sources, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = []
    for s in range(sources):
        for v in range(videos_per_source):
            vid = f"s{s}v{v}"
            x = centres[s] + noise * rng.normal(size=(segments, dim)).astype(np.float32) / np.sqrt(dim) * 4
            out.append(Video(vid, s, [f"{vid}#{i}" for i in range(segments)], x.astype(np.float32)))
    return out


def source_of(segment_id: str) -> int:
    return int(segment_id.split("v")[0][1:])


def fill(index: SegmentIndex, corpus: list[Video], version: int = 1) -> None:
    for v in corpus:
        assert index.upsert_video(v.video_id, version, v.segment_ids, v.vectors)


CONFIGS = {
    "flat": IndexConfig(kind="flat"),
    "ivf": IndexConfig(kind="ivf", nlist=4, nprobe=4, train_min=40),
    "hnsw": IndexConfig(kind="hnsw", hnsw_m=8, ef_search=64, rebuild_min_dead=1, rebuild_dead_fraction=0.3),
}


@pytest.fixture(params=sorted(CONFIGS))
def config(request: pytest.FixtureRequest) -> IndexConfig:
    return CONFIGS[request.param]


def test_segment_finds_itself_then_its_source(config: IndexConfig) -> None:
    corpus = make_corpus()
    index = SegmentIndex(config)
    fill(index, corpus)
    assert len(index) == 60
    if config.kind == "ivf":
        assert index.kind == "ivf"  # trained once 40 vectors were there
    per_source = 4 * 3
    for v in corpus[::3]:
        hits = index.search(v.vectors[0], per_source)[0]
        assert hits[0].segment_id == v.segment_ids[0]
        assert hits[0].score == pytest.approx(1.0, abs=1e-4)
        assert {source_of(h.segment_id) for h in hits} == {v.source}
        assert any(not h.segment_id.startswith(v.video_id + "#") for h in hits[1:])
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_reingest_replaces_a_videos_vectors(config: IndexConfig) -> None:
    corpus = make_corpus()
    index = SegmentIndex(config)
    fill(index, corpus)
    target = corpus[0]
    other = corpus[-1]  # another source: the video now looks like that one
    new_sids = [f"{target.video_id}#{i}" for i in range(2)]
    assert index.upsert_video(target.video_id, 2, new_sids, other.vectors[:2])
    assert len(index) == 60 - 3 + 2
    assert f"{target.video_id}#2" not in index
    hits = index.search(target.vectors[0], 60)[0]
    names = [h.segment_id for h in hits]
    assert f"{target.video_id}#2" not in names
    assert len(names) == len(set(names)) == 59
    # The re-ingested segment now sits with its new neighbours.
    near = index.search(other.vectors[0], 3)[0]
    assert {h.segment_id for h in near} >= {other.segment_ids[0], new_sids[0]}
    # Older or equal versions change nothing.
    assert not index.upsert_video(target.video_id, 2, target.segment_ids, target.vectors)
    assert not index.upsert_video(target.video_id, 1, target.segment_ids, target.vectors)
    assert index.video_version(target.video_id) == 2
    assert index.video_segments(target.video_id) == new_sids


def test_tag_filter_only_returns_allowed_ids(config: IndexConfig) -> None:
    corpus = make_corpus()
    index = SegmentIndex(config)
    fill(index, corpus)
    allowed_sids = [v.segment_ids[1] for v in corpus if v.source in (1, 3)]
    allowed = index.ids_for(allowed_sids)
    query = corpus[0].vectors[0]  # source 0: none of its neighbours are allowed
    hits = index.search(query, 5, allowed)[0]
    assert len(hits) == 5
    assert {h.segment_id for h in hits} <= set(allowed_sids)
    # Asking for more than allowed returns all allowed, no filler.
    assert {h.segment_id for h in index.search(query, 50, allowed)[0]} == set(allowed_sids)
    assert index.search(query, 5, index.ids_for([]))[0] == []


def test_hnsw_tombstones_are_filtered_then_rebuilt() -> None:
    corpus = make_corpus()
    index = SegmentIndex(CONFIGS["hnsw"])
    fill(index, corpus)
    gone = corpus[:7]
    for v in gone:
        index.remove_video(v.video_id)
    assert index.dead_count == 21 and index.physical_size == 60 and len(index) == 39
    names = {h.segment_id for h in index.search(gone[0].vectors[0], 60)[0]}
    assert len(names) == 39 and not names & {s for v in gone for s in v.segment_ids}
    assert index.maybe_rebuild()  # 21 dead of 60 > 30 %
    assert index.dead_count == 0 and index.physical_size == 39
    assert index.search(corpus[10].vectors[0], 1)[0][0].segment_id == corpus[10].segment_ids[0]


def test_ivf_stays_flat_until_it_can_be_trained() -> None:
    index = SegmentIndex(IndexConfig(kind="ivf", nlist=4, nprobe=2, train_min=100))
    fill(index, make_corpus())
    assert index.kind == "ivf-untrained"
    for v in make_corpus(seed=1, sources=3):  # 60 + 36: still below
        index.upsert_video("b" + v.video_id, 1, ["b" + s for s in v.segment_ids], v.vectors)
    assert index.kind == "ivf-untrained"
    index.upsert_video("extra", 1, [f"extra#{i}" for i in range(10)], np.eye(10, DIM, dtype=np.float32))
    assert index.kind == "ivf" and len(index) == 106  # the same ids, now in inverted lists
    assert index.search(np.eye(1, DIM, dtype=np.float32), 1)[0][0].segment_id == "extra#0"


def test_bad_input_is_refused() -> None:
    index = SegmentIndex(CONFIGS["flat"])
    fill(index, make_corpus())
    with pytest.raises(IndexDataError):
        index.upsert_video("x", 1, ["x#0"], np.ones((1, DIM + 1), np.float32))
    with pytest.raises(IndexDataError):
        index.upsert_video("x", 1, ["x#0", "x#1"], np.ones((1, DIM), np.float32))
    with pytest.raises(IndexDataError):
        index.upsert_video("x", 1, ["s0v0#0"], np.ones((1, DIM), np.float32))  # another video's segment
    with pytest.raises(IndexDataError):
        IndexConfig(kind="lsh")


def test_snapshot_round_trip_and_corruption(tmp_path: Path, config: IndexConfig) -> None:
    corpus = make_corpus()
    index = SegmentIndex(config)
    fill(index, corpus)
    index.remove_video(corpus[1].video_id)  # a tombstone for HNSW
    path = write_snapshot(tmp_path, index, {"t.segments:0": 12, "t.segments:1": 3})
    assert path == snapshot_path(tmp_path)
    assert not list(tmp_path.glob(".*.tmp"))
    snap = read_snapshot(path)
    assert snap.positions == {"t.segments:0": 12, "t.segments:1": 3}
    assert len(snap.index) == len(index) and snap.index.kind == index.kind
    q = corpus[4].vectors[0]
    assert [h.segment_id for h in snap.index.search(q, 5)[0]] == [h.segment_id for h in index.search(q, 5)[0]]
    assert snap.index.video_version(corpus[0].video_id) == 1
    assert read_snapshot(path, overrides={"nprobe": 1, "ef_search": 8}).index.config.nprobe == 1

    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptSnapshotError):
        read_snapshot(path)
    path.write_bytes(bytes(data[:100]))
    with pytest.raises(CorruptSnapshotError):
        read_snapshot(path)
    path.write_bytes(b"")
    with pytest.raises(CorruptSnapshotError):
        read_snapshot(path)


def test_empty_index_snapshot(tmp_path: Path) -> None:
    write_snapshot(tmp_path, SegmentIndex(IndexConfig()), {})
    snap = read_snapshot(snapshot_path(tmp_path))
    assert len(snap.index) == 0
    assert snap.index.search(np.ones(DIM, np.float32), 3) == [[]]


ops = st.lists(st.tuples(st.integers(0, 5), st.integers(1, 4), st.integers(0, 4)), min_size=1, max_size=25)


@settings(max_examples=30, deadline=None)
@given(ops=ops, kind=st.sampled_from(sorted(CONFIGS)))
def test_any_upsert_sequence_keeps_one_vector_per_live_segment(ops: list[tuple[int, int, int]], kind: str) -> None:
    """Whatever the order of upserts and versions, the index holds each video's newest segments once."""
    rng = np.random.default_rng(1)
    index = SegmentIndex(CONFIGS[kind])
    expected: dict[str, tuple[int, int]] = {}  # video -> (version, segments)
    for video, version, n in ops:
        vid = f"v{video}"
        sids = [f"{vid}#{i}" for i in range(n)]
        applied = index.upsert_video(vid, version, sids, rng.normal(size=(n, 8)).astype(np.float32))
        assert applied == (vid not in expected or version > expected[vid][0])
        if applied:
            expected[vid] = (version, n)
    live = {f"{vid}#{i}" for vid, (_, n) in expected.items() for i in range(n)}
    assert set(index.segment_ids()) == live
    assert len(index) == len(live)
    if live:
        found = [h.segment_id for h in index.search(np.ones(8, np.float32), 100)[0]]
        assert len(found) == len(set(found))
        assert set(found) <= live
