"""Answers to the users' questions, over Redis and the index snapshot.

* what are this video's tags and segments - :meth:`SegtagClient.video`
* which segments carry tag X - :meth:`SegtagClient.segments_with_tag`
* which segments look and sound like this one - :meth:`SegtagClient.similar_to_segment`,
  :meth:`SegtagClient.similar_to_video`

The client never writes the index: :class:`IndexReader` loads the indexer's
snapshot read-only and reloads it when the file changes. Redis is the truth for
what exists: a similarity result whose ``P:segment:{sid}`` key is gone (a video
re-tagged or deleted after the snapshot) is dropped and the search over-fetches
only as much as needed to still return k results.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import redis

from segtag.errors import SegtagError
from segtag.index import SegmentIndex
from segtag.index_records import Keys, decode_embedding
from segtag.index_snapshot import CorruptSnapshotError, read_snapshot, snapshot_path
from segtag.settings import Settings

log = logging.getLogger(__name__)

MAX_FETCH_ROUNDS = 4  # over-fetch rounds when Redis lost results (bounded)
RELOAD_CHECK_S = 0.5  # stat() the snapshot at most this often
_SEGMENT_FIELDS = ["video_id", "index", "start", "end", "tags", "version"]


class NotFoundError(SegtagError):
    """An unknown video, segment or tag."""


class IndexUnavailableError(SegtagError):
    """No index snapshot can be loaded yet (the indexer has not written one)."""


# -- results ---------------------------------------------------------------


@dataclass(frozen=True)
class TagScore:
    tag: str
    score: float


@dataclass(frozen=True)
class Segment:
    segment_id: str
    video_id: str
    index: int
    start: float
    end: float
    tags: list[TagScore] = field(default_factory=list)
    score: float | None = None  # similarity or tag score, depending on the question

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class VideoView:
    video_id: str
    status: str
    title: str
    duration_s: float | None
    model_version: str
    version: int | None
    tags: list[TagScore]
    segments: list[Segment]
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SegmentPage:
    tag: str
    total: int
    offset: int
    limit: int
    min_score: float
    items: list[Segment]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SimilarResult:
    query: str
    k: int
    items: list[Segment]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- reading the index snapshot -------------------------------------------------


class IndexReader:
    """The indexer's latest snapshot, loaded read-only and reloaded when it changes.

    Thread-safe: searches use whichever index object was current when they
    started; a reload swaps the reference under a lock.
    """

    def __init__(self, index_dir: str, overrides: dict[str, Any] | None = None) -> None:
        self.path = snapshot_path(index_dir)
        self.overrides = overrides  # search knobs (nprobe, ef_search) over the writer's
        self._lock = threading.Lock()
        self._index: SegmentIndex | None = None
        self._stamp: tuple[int, int, int] | None = None  # (inode, mtime_ns, size)
        self._checked = 0.0
        self.loaded_at: float | None = None
        self.positions: dict[str, int] = {}
        self.error: str | None = None

    def get(self) -> SegmentIndex | None:
        """The current index, reloading first when the snapshot file changed."""
        now = time.monotonic()
        due = now - self._checked >= RELOAD_CHECK_S or self._index is None
        # Loading a large snapshot takes seconds: while one thread does it, the others
        # keep answering from the current index instead of queueing on the lock.
        if due and self._lock.acquire(blocking=self._index is None):
            try:
                self._checked = now
                self._maybe_reload()
            finally:
                self._lock.release()
        return self._index

    def require(self) -> SegmentIndex:
        index = self.get()
        if index is None:
            why = self.error or "is the indexer running?"
            raise IndexUnavailableError(f"no index snapshot at {self.path} yet ({why})")
        return index

    def _maybe_reload(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self.error = "no snapshot"
            return
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        try:
            snap = read_snapshot(self.path, overrides=self.overrides)
        except (CorruptSnapshotError, FileNotFoundError) as exc:
            # Keep serving the previous index; the indexer will replace the file.
            self.error = str(exc)
            log.warning("index snapshot not loaded: %s", exc)
            return
        snap.index.to_gpu()
        self._index, self._stamp, self.positions = snap.index, stamp, snap.positions
        self.loaded_at, self.error = time.time(), None
        log.info("index snapshot loaded: %d vectors (%s)", len(snap.index), snap.index.kind)

    def state(self) -> dict[str, Any]:
        index = self.get()
        return {
            "loaded": index is not None,
            "path": str(self.path),
            "kind": index.kind if index is not None else None,
            "vectors": len(index) if index is not None else 0,
            "loaded_at": self.loaded_at,
            "positions": self.positions,
            "error": self.error,
        }


# -- the client ---------------------------------------------------------------------


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def _tags(raw: bytes | str | None) -> list[TagScore]:
    try:
        return [TagScore(str(t["tag"]), float(t["score"])) for t in json.loads(raw or "[]")]
    except (ValueError, KeyError, TypeError):
        return []


def _segment(sid: str, fields: list[Any], score: float | None = None) -> Segment | None:
    video_id, index, start, end, tags, _version = fields
    if video_id is None:
        return None  # the key is gone
    return Segment(
        segment_id=sid,
        video_id=_text(video_id),
        index=int(_text(index) or 0),
        start=float(_text(start) or 0.0),
        end=float(_text(end) or 0.0),
        tags=_tags(tags),
        score=score,
    )


class SegtagClient:
    """Query segtag's results: Redis for records, the index snapshot for similarity."""

    def __init__(
        self,
        settings: Settings,
        redis_client: redis.Redis | None = None,
        reader: IndexReader | None = None,
    ) -> None:
        self.settings = settings
        self.redis = redis_client or redis.Redis.from_url(settings.redis_url, socket_timeout=10)
        self.keys = Keys(settings.redis_prefix)
        self.reader = reader or IndexReader(settings.index_dir)

    def close(self) -> None:
        self.redis.close()

    # -- records ----------------------------------------------------------
    def _segments(self, sids: list[str], scores: list[float | None] | None = None) -> list[Segment | None]:
        """Segment records in one pipeline round trip; None where the key is gone."""
        pipe = self.redis.pipeline(transaction=False)
        for sid in sids:
            pipe.hmget(self.keys.segment(sid), _SEGMENT_FIELDS)
        rows = pipe.execute()
        scores = scores or [None] * len(sids)
        return [_segment(sid, row, sc) for sid, row, sc in zip(sids, rows, scores, strict=True)]

    def video(self, video_id: str) -> VideoView:
        """A video's status, tags and segments in time order."""
        # One MULTI read: the hash and the segment list of the same version.
        pipe = self.redis.pipeline(transaction=True)
        pipe.hgetall(self.keys.video(video_id))
        pipe.zrange(self.keys.video_segments(video_id), 0, -1)
        info, sids = pipe.execute()
        if not info:
            raise NotFoundError(f"unknown video {video_id!r}")
        h = {_text(k): _text(v) for k, v in info.items()}
        segments = [s for s in self._segments([_text(s) for s in sids]) if s is not None]
        return VideoView(
            video_id=video_id,
            status=h.get("status", ""),
            title=h.get("title", ""),
            duration_s=float(h["duration_s"]) if h.get("duration_s") else None,
            model_version=h.get("model_version", ""),
            version=int(h["version"]) if h.get("version") else None,
            tags=_tags(h.get("tags")),
            segments=segments,
            error=h.get("error") or None,
        )

    def segments_with_tag(self, tag: str, min_score: float = 0.0, offset: int = 0, limit: int = 20) -> SegmentPage:
        """Segments carrying ``tag`` at or above ``min_score``, best first, paged."""
        if offset < 0 or limit < 1:
            raise ValueError("offset must be >= 0 and limit >= 1")
        key = self.keys.tag_segments(tag)
        pipe = self.redis.pipeline(transaction=True)
        pipe.zcount(key, min_score, "+inf")
        pipe.zrevrangebyscore(key, "+inf", min_score, start=offset, num=limit, withscores=True)
        pipe.zscore(self.keys.tags, tag)
        total, rows, known = pipe.execute()
        if not total and known is None and not self.redis.exists(key):
            raise NotFoundError(f"unknown tag {tag!r}")
        sids = [_text(s) for s, _ in rows]
        found = self._segments(sids, [float(sc) for _, sc in rows])
        items = [s for s in found if s is not None]
        return SegmentPage(tag=tag, total=int(total), offset=offset, limit=limit, min_score=min_score, items=items)

    # -- similarity -------------------------------------------------------
    def _embedding(self, segment_id: str) -> np.ndarray:
        raw = self.redis.hget(self.keys.segment(segment_id), "embedding")
        if raw is None:
            raise NotFoundError(f"unknown segment {segment_id!r}")
        return decode_embedding(raw)

    def _tag_filter(self, index: SegmentIndex, tag: str, min_score: float) -> np.ndarray:
        sids = [_text(s) for s in self.redis.zrangebyscore(self.keys.tag_segments(tag), min_score, "+inf")]
        return index.ids_for(sids)

    def _search(
        self,
        query: np.ndarray,
        k: int,
        min_score: float,
        tag: str | None,
        exclude: set[str],
        tag_min_score: float = 0.0,
    ) -> list[Segment]:
        index = self.reader.require()
        allowed = self._tag_filter(index, tag, tag_min_score) if tag is not None else None
        want = k + len(exclude)
        fetch = want
        out: list[Segment] = []
        for _ in range(MAX_FETCH_ROUNDS):
            hits = index.search(query, fetch, allowed)[0]
            candidates = [h for h in hits if h.segment_id not in exclude and h.score >= min_score]
            found = self._segments([h.segment_id for h in candidates], [h.score for h in candidates])
            out = [s for s in found if s is not None]
            missing = len(found) - len(out)
            exhausted = len(hits) < fetch or (hits and hits[-1].score < min_score)
            if len(out) >= k or exhausted or not missing:
                break
            # Redis no longer has some results: fetch just enough more to cover the gap.
            fetch += max(missing * 2, k)
        return out[:k]

    def similar_to_segment(
        self,
        segment_id: str,
        k: int = 10,
        min_score: float = -1.0,
        tag: str | None = None,
        include_self: bool = True,
    ) -> SimilarResult:
        """Segments whose embeddings are nearest to this segment's (cosine, best first)."""
        query = self._embedding(segment_id)
        exclude = set() if include_self else {segment_id}
        return SimilarResult(segment_id, k, self._search(query, k, min_score, tag, exclude))

    def similar_to_video(
        self,
        video_id: str,
        k: int = 10,
        min_score: float = -1.0,
        tag: str | None = None,
        exclude_own: bool = True,
    ) -> SimilarResult:
        """Segments nearest to the video's mean segment embedding (its own left out by default)."""
        sids = [_text(s) for s in self.redis.zrange(self.keys.video_segments(video_id), 0, -1)]
        if not sids:
            if not self.redis.exists(self.keys.video(video_id)):
                raise NotFoundError(f"unknown video {video_id!r}")
            return SimilarResult(video_id, k, [])
        pipe = self.redis.pipeline(transaction=False)
        for sid in sids:
            pipe.hget(self.keys.segment(sid), "embedding")
        rows = [decode_embedding(r) for r in pipe.execute() if r is not None]
        if not rows:
            return SimilarResult(video_id, k, [])
        x = np.stack(rows)
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        query = x.mean(axis=0)
        exclude = set(sids) if exclude_own else set()
        return SimilarResult(video_id, k, self._search(query, k, min_score, tag, exclude))

    # -- health -----------------------------------------------------------
    def health(self) -> dict[str, Any]:
        try:
            redis_ok = bool(self.redis.ping())
            redis_error = None
        except redis.RedisError as exc:
            redis_ok, redis_error = False, str(exc)
        return {"redis": {"ok": redis_ok, "error": redis_error}, "index": self.reader.state()}


def _segment_line(s: Segment) -> str:
    tags = ", ".join(f"{t.tag} {t.score:.2f}" for t in s.tags[:3])
    score = f"{s.score:.3f}" if s.score is not None else "-"
    return f"  {score:>7}  {s.segment_id:<28} {s.start:7.1f}-{s.end:<7.1f} {tags}"


def wait_for_index(settings: Settings, video_ids: list[str], timeout_s: float = 60.0) -> bool:
    """Wait (bounded) until the index snapshot holds the version Redis has of every done video."""
    client = SegtagClient(settings)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            pipe = client.redis.pipeline(transaction=False)
            for vid in video_ids:
                pipe.hmget(client.keys.video(vid), ["status", "version"])
            wanted = {vid: int(v) for vid, (s, v) in zip(video_ids, pipe.execute(), strict=True) if _text(s) == "done"}
            index = client.reader.get()
            if index is not None and all(index.video_version(vid) == v for vid, v in wanted.items()):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)
    finally:
        client.close()


def demo_queries(settings: Settings, tag: str | None = None, segment_id: str | None = None) -> str:
    """One tag search and one similarity search over whatever is indexed, as text.

    Picks the most common tag and the best segment carrying it when none are given.
    """
    client = SegtagClient(settings)
    try:
        if tag is None:
            top = client.redis.zrevrange(client.keys.tags, 0, 0)
            if not top:
                return "no tagged videos yet"
            tag = _text(top[0])
        page = client.segments_with_tag(tag, limit=5)
        lines = [f"segments tagged {tag!r} ({page.total} in all):", *map(_segment_line, page.items)]
        sid = segment_id or (page.items[0].segment_id if page.items else None)
        if sid is not None:
            similar = client.similar_to_segment(sid, k=5, include_self=False)
            lines += [f"segments most similar to {sid}:", *map(_segment_line, similar.items)]
        return "\n".join(lines)
    finally:
        client.close()
