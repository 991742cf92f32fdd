"""The HTTP API's contract, route by route, with FastAPI's TestClient (httpx) over the
real Redis and an index snapshot: status codes, response schemas, 404s and 422s."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from fastapi.testclient import TestClient

from segtag.api import create_app
from segtag.index_records import SegmentRecord, write_video
from segtag.settings import Settings
from tests.test_query import World, build_world, source_of

pytestmark = pytest.mark.integration

SEGMENT_KEYS = {"segment_id", "video_id", "index", "start", "end", "tags", "score"}


@pytest.fixture
def world(live_settings: Settings) -> Iterator[World]:
    w = build_world(live_settings)
    yield w
    w.redis.close()


@pytest.fixture
def api(world: World) -> Iterator[TestClient]:
    with TestClient(create_app(world.settings)) as client:
        yield client


def _segment_ok(s: dict[str, Any]) -> None:
    assert set(s) == SEGMENT_KEYS
    assert isinstance(s["segment_id"], str) and s["segment_id"].startswith(s["video_id"] + "#")
    assert isinstance(s["start"], float) and s["end"] > s["start"]
    assert all(set(t) == {"tag", "score"} for t in s["tags"])


def test_get_video(api: TestClient, world: World) -> None:
    v = world.corpus[3]
    r = api.get(f"/videos/{v.video_id}")
    assert r.status_code == 200
    body = r.json()
    fields = {"video_id", "status", "title", "duration_s", "model_version", "version", "tags", "segments", "error"}
    assert set(body) == fields
    assert body["video_id"] == v.video_id and body["status"] == "done" and body["version"] == 1
    assert [s["segment_id"] for s in body["segments"]] == v.segment_ids
    for s in body["segments"]:
        _segment_ok(s)
    r = api.get("/videos/missing-video")
    assert r.status_code == 404 and "unknown video" in r.json()["detail"]


def test_tag_segments_paging_and_validation(api: TestClient) -> None:
    r = api.get("/tags/intro/segments", params={"limit": 5, "offset": 2})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"tag", "total", "offset", "limit", "min_score", "items"}
    assert body["total"] == 20 and body["offset"] == 2 and len(body["items"]) == 5
    for s in body["items"]:
        _segment_ok(s)
    scores = [s["score"] for s in body["items"]]
    assert scores == sorted(scores, reverse=True)
    r = api.get("/tags/intro/segments", params={"min_score": 0.885, "limit": 100})
    assert r.json()["total"] == 10 and len(r.json()["items"]) == 10
    assert api.get("/tags/unknown-tag/segments").status_code == 404
    for bad in ({"limit": 0}, {"limit": 1001}, {"offset": -1}, {"min_score": 2}, {"min_score": "high"}, {"limit": "x"}):
        r = api.get("/tags/intro/segments", params=bad)
        assert r.status_code == 422, bad
        assert "detail" in r.json()


def test_similar_segments(api: TestClient, world: World) -> None:
    v = world.corpus[5]
    sid = v.segment_ids[2]
    path = f"/segments/{quote(sid, safe='')}/similar"  # '#' would start a URL fragment
    r = api.get(path, params={"k": 12})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"query", "k", "items"} and body["query"] == sid and body["k"] == 12
    ids = [s["segment_id"] for s in body["items"]]
    assert ids[0] == sid and {source_of(i) for i in ids} == {v.source}
    for s in body["items"]:
        _segment_ok(s)
    r = api.get(path, params={"k": 4, "include_self": "false", "min_score": 0.5})
    assert sid not in [s["segment_id"] for s in r.json()["items"]]
    assert all(s["score"] >= 0.5 for s in r.json()["items"])
    r = api.get(path, params={"tag": "odd", "k": 6})
    assert r.status_code == 200 and len(r.json()["items"]) == 6
    assert all(any(t["tag"] == "odd" for t in s["tags"]) for s in r.json()["items"])
    # '#' must be percent-encoded in a path; an unknown segment is a 404.
    assert api.get("/segments/nope%230/similar").status_code == 404
    for bad in ({"k": 0}, {"k": 100000}, {"min_score": -3}, {"k": "many"}, {"tag": ""}):
        assert api.get(path, params=bad).status_code == 422, bad


def test_similar_to_video(api: TestClient, world: World) -> None:
    v = world.corpus[10]
    r = api.get(f"/videos/{v.video_id}/similar", params={"k": 5})
    assert r.status_code == 200
    items = r.json()["items"]
    assert len(items) == 5 and all(s["video_id"] != v.video_id for s in items)
    assert {source_of(s["segment_id"]) for s in items} == {v.source}
    r = api.get(f"/videos/{v.video_id}/similar", params={"k": 5, "tag": "intro"})
    assert all(s["segment_id"].endswith("#0") for s in r.json()["items"])
    assert api.get("/videos/nope/similar").status_code == 404
    assert api.get(f"/videos/{v.video_id}/similar", params={"k": -1}).status_code == 422


def test_health_metrics_and_openapi(api: TestClient) -> None:
    r = api.get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["ok"] is True and body["redis"]["ok"] is True
    assert body["index"]["loaded"] is True and body["index"]["vectors"] == 60 and body["index"]["kind"] == "flat"
    api.get("/videos/missing")
    r = api.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert "segtag_index_vectors 60.0" in r.text
    assert 'segtag_api_requests_total{route="/videos/{video_id}",status="404"} 1.0' in r.text
    spec = api.get("/openapi.json").json()
    routes = {"/videos/{video_id}", "/tags/{tag}/segments", "/segments/{segment_id}/similar"}
    routes.add("/videos/{video_id}/similar")
    assert routes <= set(spec["paths"])
    assert api.get("/docs").status_code == 200


def test_no_index_yet_is_503_but_records_still_answer(live_settings: Settings) -> None:
    w = build_world(live_settings)
    os.remove(os.path.join(live_settings.index_dir, "segments.snapshot"))
    with TestClient(create_app(live_settings)) as api:
        assert api.get("/healthz").status_code == 503
        assert api.get("/healthz").json()["index"]["loaded"] is False
        r = api.get(f"/segments/{quote(w.corpus[0].segment_ids[0], safe='')}/similar")
        assert r.status_code == 503 and "no index snapshot" in r.json()["detail"]
        assert api.get(f"/videos/{w.corpus[0].video_id}").status_code == 200
    w.redis.close()


def test_embedding_of_another_size_is_a_clear_500(api: TestClient, world: World) -> None:
    write_video(world.redis, world.settings.redis_prefix, "odd-size", [SegmentRecord(0.0, 5.0, np.ones(7, np.float32))])
    r = api.get("/segments/odd-size%230/similar")
    assert r.status_code == 500 and "7 dimensions" in r.json()["detail"]
