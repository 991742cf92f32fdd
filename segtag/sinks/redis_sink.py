"""Writes a video's results to Redis, atomically, in the schema of docs/redis-schema.md.

Every final write (done or failed) replaces *all* of a video's previous results in
one ``MULTI/EXEC`` transaction guarded by ``WATCH P:video:{vid}``: the old segment
hashes and their tag-index entries go, the new ones come, and the video hash moves
to the next ``version``. A reader therefore sees either the old or the new version
of a video, never half of one or a mix of two. When another client touches the
video key between our reads and ``EXEC`` (a status update, a concurrent writer),
Redis aborts the transaction and we redo it from fresh reads.

Redis being away is a :class:`~segtag.errors.SinkUnavailableError`: the caller
retries and does not commit the Kafka offset, so nothing is lost.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import numpy as np
import redis
from redis.typing import EncodableT

from segtag.errors import SinkUnavailableError
from segtag.events import segment_id
from segtag.keys import Keys

log = logging.getLogger(__name__)

T = TypeVar("T")
STATUSES = ("queued", "processing", "done", "failed")
# A video key changes only by status updates of the same video, so a handful of
# optimistic retries is plenty; more means something is hammering the key.
MAX_WATCH_RETRIES = 20


@dataclass(frozen=True)
class SegmentRecord:
    """What the sink stores per segment (a SegmentResult has these attributes)."""

    index: int
    start: float
    end: float
    tags: list[tuple[str, float]]
    concepts: list[tuple[str, float]]
    embedding: np.ndarray


@dataclass(frozen=True)
class WriteOutcome:
    """What a final write did."""

    version: int
    removed_segments: int  # segments of the previous version that were deleted


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def _tags_json(tags: Sequence[tuple[str, float]]) -> str:
    return json.dumps([{"tag": t, "score": round(float(s), 6)} for t, s in tags])


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _parse_tags(raw: Any) -> list[str]:
    """Tag names from a stored ``tags`` JSON field; an unreadable field counts as none."""
    if not raw:
        return []
    try:
        items = json.loads(raw)
        return [str(i["tag"]) for i in items if isinstance(i, dict) and "tag" in i]
    except (ValueError, TypeError):
        return []


def make_redis(url: str, timeout_s: float = 5.0) -> redis.Redis:
    """A client whose calls fail within ``timeout_s`` instead of hanging when Redis is away."""
    return redis.Redis.from_url(
        url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, health_check_interval=30
    )


@contextmanager
def unavailable_as_retryable(what: str) -> Iterator[None]:
    """Turn Redis connection problems into SinkUnavailableError."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, redis.ReadOnlyError) as exc:
        raise SinkUnavailableError(f"Redis unavailable while {what}: {exc}") from exc


class RedisSink:
    """Status updates and atomic result writes for the tagger."""

    def __init__(self, client: redis.Redis, prefix: str, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.keys = Keys(prefix)
        self.clock = clock

    # --- status -------------------------------------------------------------

    def set_status(self, vid: str, status: str, uri: str = "", title: str = "", attempts: int | None = None) -> None:
        """Move a video to ``queued`` or ``processing`` (the results stay as they are).

        ``uri`` and ``title`` are only filled in for a video not seen before: for a
        re-upload they change together with its results, in the final write.
        """
        if status not in ("queued", "processing"):
            raise ValueError("set_status is for queued/processing; done/failed go through write_done/write_failed")
        now = self.clock()
        key = self.keys.video(vid)
        with unavailable_as_retryable(f"setting {vid} {status}"):
            pipe = self.client.pipeline(transaction=True)
            pipe.hsetnx(key, "created_at", _iso(now))
            pipe.hsetnx(key, "uri", uri)
            pipe.hsetnx(key, "title", title)
            pipe.hsetnx(key, "version", 0)
            fields: dict[EncodableT, EncodableT] = {"status": status, "updated_at": _iso(now)}
            if attempts is not None:
                fields["attempts"] = attempts
            pipe.hset(key, mapping=fields)
            pipe.zadd(self.keys.videos, {vid: now})
            pipe.execute()

    # --- final writes -------------------------------------------------------

    def write_done(
        self,
        vid: str,
        uri: str,
        title: str,
        tags: Sequence[tuple[str, float]],
        segments: Sequence[SegmentRecord] | Sequence[Any],
        duration_s: float,
        model_version: str,
        attempts: int = 1,
    ) -> WriteOutcome:
        """Replace the video's results with these tags and segments (status ``done``)."""
        fields: dict[EncodableT, EncodableT] = {
            "status": "done",
            "uri": uri,
            "title": title,
            "duration_s": f"{float(duration_s):.3f}",
            "model_version": model_version,
            "tags": _tags_json(tags),
            "num_segments": len(segments),
            "attempts": attempts,
            "error": "",
            "error_type": "",
        }
        return self._replace(vid, fields, list(tags), list(segments))

    def write_failed(
        self, vid: str, uri: str, title: str, error_type: str, error: str, model_version: str, attempts: int = 1
    ) -> WriteOutcome:
        """Mark the video failed and remove results of earlier versions.

        The upload that failed replaced the video: keeping the tags of the previous
        file would describe content that is no longer there.
        """
        fields: dict[EncodableT, EncodableT] = {
            "status": "failed",
            "uri": uri,
            "title": title,
            "duration_s": "",
            "model_version": model_version,
            "tags": "[]",
            "num_segments": 0,
            "attempts": attempts,
            "error": error[:2000],
            "error_type": error_type,
        }
        return self._replace(vid, fields, [], [])

    def _replace(
        self, vid: str, fields: dict[EncodableT, EncodableT], tags: list[tuple[str, float]], segments: list[Any]
    ) -> WriteOutcome:
        with unavailable_as_retryable(f"writing the results of {vid}"):
            for attempt in range(1, MAX_WATCH_RETRIES + 1):
                try:
                    return self._replace_once(vid, fields, tags, segments)
                except redis.WatchError:
                    log.debug(
                        "video %s changed during the write (try %d of %d); redoing it", vid, attempt, MAX_WATCH_RETRIES
                    )
        raise SinkUnavailableError(f"video {vid} kept changing during {MAX_WATCH_RETRIES} write attempts")

    def _replace_once(
        self, vid: str, fields: dict[EncodableT, EncodableT], tags: list[tuple[str, float]], segments: list[Any]
    ) -> WriteOutcome:
        k = self.keys
        vkey = k.video(vid)
        with self.client.pipeline(transaction=True) as pipe:
            pipe.watch(vkey)
            # Reads in immediate mode, on the watched connection: any change of
            # the video key from here to EXEC aborts the transaction.
            old_version, old_tags_raw, created_at = pipe.hmget(vkey, ["version", "tags", "created_at"])
            old_sids = [_text(s) for s in pipe.zrange(k.video_segments(vid), 0, -1)]
            old_seg_tags: list[Any] = []
            if old_sids:
                reader = self.client.pipeline(transaction=False)
                for sid in old_sids:
                    reader.hget(k.segment(sid), "tags")
                old_seg_tags = reader.execute()
            version = int(old_version or 0) + 1
            now = self.clock()

            pipe.multi()
            # 1. everything of the previous version
            for sid, raw in zip(old_sids, old_seg_tags, strict=True):
                for tag in _parse_tags(raw):
                    pipe.zrem(k.tag_segments(tag), sid)
                pipe.delete(k.segment(sid))
            pipe.delete(k.video_segments(vid))
            for tag in _parse_tags(old_tags_raw):
                pipe.zrem(k.tag_videos(tag), vid)
                pipe.zincrby(k.tags, -1, tag)
            # 2. the new version
            for seg in segments:
                sid = segment_id(vid, int(seg.index))
                pipe.hset(
                    k.segment(sid),
                    mapping={
                        "video_id": vid,
                        "index": int(seg.index),
                        "start": f"{float(seg.start):.3f}",
                        "end": f"{float(seg.end):.3f}",
                        "tags": _tags_json(seg.tags),
                        "concepts": json.dumps([{"concept": c, "score": round(float(s), 6)} for c, s in seg.concepts]),
                        "embedding": np.asarray(seg.embedding, dtype="<f4").tobytes(),
                        "version": version,
                    },
                )
                pipe.zadd(k.video_segments(vid), {sid: float(seg.start)})
                for tag, score in seg.tags:
                    pipe.zadd(k.tag_segments(tag), {sid: float(score)})
            for tag, score in tags:
                pipe.zadd(k.tag_videos(tag), {vid: float(score)})
                pipe.zincrby(k.tags, 1, tag)
            # Counts that fell to zero belong to tags no video carries any more.
            pipe.zremrangebyscore(k.tags, "-inf", 0)
            pipe.hset(
                vkey,
                mapping={
                    **fields,
                    "version": version,
                    "created_at": _text(created_at) if created_at else _iso(now),
                    "updated_at": _iso(now),
                },
            )
            pipe.zadd(k.videos, {vid: now})
            pipe.execute()
        return WriteOutcome(version=version, removed_segments=len(old_sids))

    # --- reads (tests, demo, operators) -------------------------------------

    def read_video(self, vid: str) -> dict[str, Any] | None:
        """One consistent snapshot of a video and its segments, or None if unknown."""
        with unavailable_as_retryable(f"reading {vid}"):
            for _ in range(MAX_WATCH_RETRIES):
                try:
                    return self._read_once(vid)
                except redis.WatchError:
                    continue
        raise SinkUnavailableError(f"video {vid} kept changing while being read")

    def _read_once(self, vid: str) -> dict[str, Any] | None:
        k = self.keys
        with self.client.pipeline(transaction=True) as pipe:
            pipe.watch(k.video(vid))
            raw = pipe.hgetall(k.video(vid))
            if not raw:
                pipe.unwatch()
                return None
            video = {_text(a): _text(b) for a, b in raw.items()}
            sids = [_text(s) for s in pipe.zrange(k.video_segments(vid), 0, -1)]
            reader = self.client.pipeline(transaction=False)
            for sid in sids:
                reader.hgetall(k.segment(sid))
            seg_raw = reader.execute()
            # An empty transaction that fails if the video changed while we read.
            pipe.multi()
            pipe.hget(k.video(vid), "version")
            pipe.execute()
        segments = []
        for sid, h in zip(sids, seg_raw, strict=True):
            seg = {_text(a): b for a, b in h.items()}
            segments.append(
                {
                    "segment_id": sid,
                    "index": int(seg.get("index", b"-1")),
                    "start": float(seg.get("start", b"0")),
                    "end": float(seg.get("end", b"0")),
                    "tags": json.loads(seg.get("tags", b"[]")),
                    "concepts": json.loads(seg.get("concepts", b"[]")),
                    "embedding": np.frombuffer(seg.get("embedding", b""), dtype="<f4").copy(),
                    "version": int(seg.get("version", b"0")),
                }
            )
        out: dict[str, Any] = dict(video)
        out["tags"] = json.loads(video.get("tags") or "[]")
        out["segments"] = segments
        return out

    def statuses(self, vids: Sequence[str]) -> dict[str, str | None]:
        """The status of each video (None when unknown), in one round trip."""
        with unavailable_as_retryable("reading statuses"):
            pipe = self.client.pipeline(transaction=False)
            for vid in vids:
                pipe.hget(self.keys.video(vid), "status")
            return {vid: (_text(s) if s is not None else None) for vid, s in zip(vids, pipe.execute(), strict=True)}
