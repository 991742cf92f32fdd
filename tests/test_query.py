"""The query client over the real Redis and an index snapshot like the indexer writes.

Records are written the way the tagger writes them (docs/contracts.md, one
MULTI/EXEC per video); the snapshot is written with the indexer's own code.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

from segtag.index import IndexConfig, SegmentIndex
from segtag.index_records import Keys, SegmentRecord, write_video
from segtag.index_snapshot import write_snapshot
from segtag.query import IndexReader, IndexUnavailableError, NotFoundError, SegtagClient, demo_queries, wait_for_index
from segtag.settings import Settings
from tests.test_index import Video, make_corpus, source_of

pytestmark = pytest.mark.integration


@dataclass
class World:
    settings: Settings
    redis: redis.Redis
    corpus: list[Video]
    index: SegmentIndex

    def client(self) -> SegtagClient:
        return SegtagClient(self.settings, self.redis)

    def snapshot(self) -> None:
        write_snapshot(self.settings.index_dir, self.index, {})


def tags_of(v: Video, i: int) -> list[tuple[str, float]]:
    """Segment tags: the source's tag on every segment, 'intro' on segment 0, 'odd' on odd sources."""
    tags = [(f"source{v.source}", round(0.5 + 0.1 * i, 2))]
    if i == 0:
        tags.append(("intro", 0.9 - 0.01 * int(v.video_id[-1])))
    if v.source % 2:
        tags.append(("odd", 0.7))
    return tags


def store(r: redis.Redis, prefix: str, v: Video, version: int | None = None) -> int:
    segs = [SegmentRecord(5.0 * i, 5.0 * i + 5.0, x, tags_of(v, i)) for i, x in enumerate(v.vectors)]
    title = f"video {v.video_id}"
    return write_video(r, prefix, v.video_id, segs, tags=[(f"source{v.source}", 0.8)], title=title, version=version)


def build_world(settings: Settings, kind: str = "flat") -> World:
    r = redis.Redis.from_url(settings.redis_url)
    corpus = make_corpus(sources=5, videos_per_source=4, segments=3)
    config = IndexConfig(kind=kind, nlist=4, nprobe=4, train_min=40, hnsw_m=8)
    index = SegmentIndex(config)
    for v in corpus:
        version = store(r, settings.redis_prefix, v)
        index.upsert_video(v.video_id, version, v.segment_ids, v.vectors)
    world = World(settings, r, corpus, index)
    world.snapshot()
    return world


@pytest.fixture
def world(live_settings: Settings) -> Iterator[World]:
    w = build_world(live_settings)
    yield w
    w.redis.close()


def test_video_tags_and_segments(world: World) -> None:
    v = world.corpus[6]
    view = world.client().video(v.video_id)
    assert view.status == "done" and view.version == 1 and view.title == f"video {v.video_id}"
    assert [t.tag for t in view.tags] == [f"source{v.source}"]
    assert [s.segment_id for s in view.segments] == v.segment_ids  # time order
    assert [s.start for s in view.segments] == [0.0, 5.0, 10.0]
    assert view.segments[0].tags[0].tag == f"source{v.source}"
    with pytest.raises(NotFoundError, match="unknown video"):
        world.client().video("nope")


def test_segments_with_tag_pages_best_first(world: World) -> None:
    client = world.client()
    page = client.segments_with_tag("intro", limit=7)
    assert page.total == 20 and len(page.items) == 7
    scores = [s.score for s in page.items]
    assert scores == sorted(scores, reverse=True)  # type: ignore[type-var]
    rest = client.segments_with_tag("intro", offset=7, limit=100)
    assert len(rest.items) == 13
    ids = [s.segment_id for s in page.items + rest.items]
    assert len(set(ids)) == 20 and all(i.endswith("#0") for i in ids)
    high = client.segments_with_tag("intro", min_score=0.885)
    assert high.total == len(high.items) == 10  # videos v0 and v1 of every source
    assert client.segments_with_tag("intro", offset=50).items == []
    with pytest.raises(NotFoundError, match="unknown tag"):
        client.segments_with_tag("no-such-tag")


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_similar_finds_itself_then_same_source(live_settings: Settings, kind: str) -> None:
    w = build_world(live_settings, kind)
    client = w.client()
    for v in w.corpus[::4]:
        res = client.similar_to_segment(v.segment_ids[1], k=12)
        ids = [s.segment_id for s in res.items]
        assert ids[0] == v.segment_ids[1]
        assert res.items[0].score == pytest.approx(1.0, abs=1e-4)
        assert {source_of(i) for i in ids} == {v.source}  # 12 = every segment of the source
        assert any(not i.startswith(v.video_id + "#") for i in ids[1:4])
        res = client.similar_to_segment(v.segment_ids[1], k=3, include_self=False)
        assert v.segment_ids[1] not in [s.segment_id for s in res.items] and len(res.items) == 3
    w.redis.close()


def test_similar_to_video_leaves_its_own_segments_out(world: World) -> None:
    v = world.corpus[9]
    res = world.client().similar_to_video(v.video_id, k=9)
    assert len(res.items) == 9
    assert all(s.video_id != v.video_id for s in res.items)
    assert {source_of(s.segment_id) for s in res.items} == {v.source}
    with pytest.raises(NotFoundError):
        world.client().similar_to_video("nope")


def test_tag_filtered_search_only_returns_tagged_segments(world: World) -> None:
    client = world.client()
    v = world.corpus[0]  # source 0 is even: none of its segments carries "odd"
    res = client.similar_to_segment(v.segment_ids[0], k=10, tag="odd")
    assert len(res.items) == 10
    assert all(any(t.tag == "odd" for t in s.tags) for s in res.items)
    assert all(source_of(s.segment_id) % 2 == 1 for s in res.items)
    intro = client.similar_to_segment(v.segment_ids[1], k=50, tag="intro")
    assert len(intro.items) == 20 and all(s.segment_id.endswith("#0") for s in intro.items)
    assert client.similar_to_segment(v.segment_ids[0], k=5, tag="never-seen").items == []


def test_results_never_name_segments_redis_no_longer_has(world: World) -> None:
    """The snapshot is stale (old version of a video, a deleted video): Redis wins."""
    client = world.client()
    k = Keys(world.settings.redis_prefix)
    v = world.corpus[4]  # source 1
    neighbours = [s.segment_id for s in client.similar_to_segment(v.segment_ids[0], k=12).items]
    # Re-tag one video of the source with fewer segments and delete another one's keys,
    # without telling the index (the indexer has not caught up yet).
    same_source = [w for w in world.corpus if w.source == v.source and w is not v]
    shrunk, deleted = same_source[0], same_source[1]
    segs = [SegmentRecord(0.0, 5.0, shrunk.vectors[0], tags_of(shrunk, 0))]
    write_video(world.redis, world.settings.redis_prefix, shrunk.video_id, segs)
    world.redis.delete(*[k.segment(s) for s in deleted.segment_ids])
    gone = {*shrunk.segment_ids[1:], *deleted.segment_ids}
    assert gone <= set(neighbours)

    res = client.similar_to_segment(v.segment_ids[0], k=12)
    ids = [s.segment_id for s in res.items]
    assert len(ids) == 12 and not gone & set(ids)
    assert ids[0] == v.segment_ids[0]
    assert {source_of(i) for i in ids[:7]} == {v.source}  # 12 - 5 gone are left of the source
    tagged = client.similar_to_segment(v.segment_ids[0], k=20, tag="odd")
    assert not gone & {s.segment_id for s in tagged.items}


def test_reader_reloads_a_changed_snapshot(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("segtag.query.RELOAD_CHECK_S", 0.0)
    client = world.client()
    v = world.corpus[0]
    before = client.reader.require()
    assert len(before) == 60
    world.index.remove_video(world.corpus[-1].video_id)
    world.snapshot()
    os.utime(client.reader.path, ns=(1, 1))  # a different mtime even within the same tick
    assert len(client.reader.require()) == 57
    assert client.reader.require() is client.reader.require()  # no reload without a change
    assert client.health()["index"]["vectors"] == 57
    assert client.similar_to_segment(v.segment_ids[0], k=1).items[0].segment_id == v.segment_ids[0]


def test_no_snapshot_is_a_clear_error(live_settings: Settings) -> None:
    client = SegtagClient(live_settings, reader=IndexReader(live_settings.index_dir))
    with pytest.raises(IndexUnavailableError, match="no index snapshot"):
        client.reader.require()
    assert client.health()["index"]["loaded"] is False
    assert client.health()["redis"]["ok"] is True
    client.close()


def test_demo_queries_print_a_tag_search_and_a_similarity_search(world: World) -> None:
    text = demo_queries(world.settings)
    assert "segments tagged" in text and "most similar to" in text


def test_wait_for_index_compares_versions_with_redis(world: World) -> None:
    vids = [v.video_id for v in world.corpus]
    assert wait_for_index(world.settings, vids, timeout_s=0)
    v = world.corpus[0]
    store(world.redis, world.settings.redis_prefix, v)  # version 2, not indexed yet
    assert not wait_for_index(world.settings, vids, timeout_s=0.2)
    world.index.upsert_video(v.video_id, 2, v.segment_ids, v.vectors)
    world.snapshot()
    assert wait_for_index(world.settings, vids, timeout_s=5)
