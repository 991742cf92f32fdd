"""The Redis keys and the segments event, as the index and query layer see them.

docs/contracts.md is the source of truth; the key names live in :mod:`segtag.keys` and
the event schema in :mod:`segtag.events`; this module adapts them for the indexer, the
query client and their tests.
:func:`write_video` writes one video's records the way the tagger does (one
``MULTI/EXEC``) so the tests and the demo can make data without the model.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import redis

from segtag.errors import InvalidEventError
from segtag.events import encode_embedding as encode_embedding_b64
from segtag.events import parse_segments_event, segment_id
from segtag.keys import Keys

__all__ = [
    "Keys",
    "SegmentRecord",
    "SegmentsEvent",
    "decode_embedding",
    "decode_segments_event",
    "encode_embedding",
    "encode_segments_event",
    "segment_id",
    "write_video",
]


def encode_embedding(vector: np.ndarray) -> bytes:
    """float32 little-endian bytes, as Redis and the event carry them."""
    return np.asarray(vector, dtype="<f4").tobytes()


def decode_embedding(raw: Any) -> np.ndarray:
    """float32 LE bytes (as Redis returns them) to a float32 vector."""
    if not isinstance(raw, bytes | bytearray):
        raise ValueError(f"embedding is {type(raw).__name__}, not bytes")
    if len(raw) % 4:
        raise ValueError(f"embedding of {len(raw)} bytes is not float32")
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)


# -- the segments event (tagger -> indexer) ---------------------------------


@dataclass(frozen=True)
class SegmentsEvent:
    """One decoded segments event."""

    video_id: str
    version: int
    op: str
    segment_ids: list[str]
    vectors: np.ndarray  # (N, D) float32


def encode_segments_event(
    video_id: str, version: int, segments: Sequence[tuple[str, float, float, np.ndarray]]
) -> bytes:
    """The JSON value of a segments event: ``segments`` are (segment_id, start, end, embedding)."""
    return json.dumps(
        {
            "video_id": video_id,
            "version": version,
            "op": "upsert",
            "segments": [
                {
                    "segment_id": sid,
                    "start": start,
                    "end": end,
                    "embedding_b64": encode_embedding_b64(emb),
                }
                for sid, start, end, emb in segments
            ],
        }
    ).encode()


def decode_segments_event(value: bytes | None) -> SegmentsEvent:
    """Parse a segments event with :func:`segtag.events.parse_segments_event` and stack its
    vectors for the index; bad input raises :class:`InvalidEventError`."""
    event = parse_segments_event(value)
    rows = [seg.embedding for seg in event.segments]
    if rows and len({r.shape[0] for r in rows}) != 1:
        raise InvalidEventError("segments event: embeddings of different lengths")
    if rows and (rows[0].shape[0] == 0 or not all(np.isfinite(r).all() for r in rows)):
        raise InvalidEventError("segments event: empty or non-finite embedding")
    vectors = np.stack(rows) if rows else np.zeros((0, 0), np.float32)
    return SegmentsEvent(event.video_id, event.version, event.op, [s.segment_id for s in event.segments], vectors)


# -- writing a video the way the tagger does (tests, demo) -------------------


@dataclass(frozen=True)
class SegmentRecord:
    """One segment to write with :func:`write_video`."""

    start: float
    end: float
    embedding: np.ndarray
    tags: Sequence[tuple[str, float]] = ()


def write_video(
    r: redis.Redis,
    prefix: str,
    video_id: str,
    segments: Sequence[SegmentRecord],
    *,
    version: int | None = None,
    tags: Sequence[tuple[str, float]] = (),
    title: str = "",
    status: str = "done",
) -> int:
    """Replace a video's records in one MULTI/EXEC (contract's Redis schema); returns the version."""
    k = Keys(prefix)
    old_sids = [s.decode() if isinstance(s, bytes) else str(s) for s in r.zrange(k.video_segments(video_id), 0, -1)]
    old_tags = r.hget(k.video(video_id), "tags")
    if version is None:
        version = int(r.hget(k.video(video_id), "version") or 0) + 1
    now = time.time()
    pipe = r.pipeline(transaction=True)
    for sid in old_sids:
        for entry in json.loads(r.hget(k.segment(sid), "tags") or b"[]"):
            pipe.zrem(k.tag_segments(entry["tag"]), sid)
        pipe.delete(k.segment(sid))
    for entry in json.loads(old_tags or b"[]"):
        pipe.zrem(k.tag_videos(entry["tag"]), video_id)
        pipe.zincrby(k.tags, -1, entry["tag"])
    pipe.delete(k.video_segments(video_id))
    for i, seg in enumerate(segments):
        sid = segment_id(video_id, i)
        seg_tags = [{"tag": t, "score": s} for t, s in seg.tags]
        pipe.hset(
            k.segment(sid),
            mapping={
                "video_id": video_id,
                "index": i,
                "start": seg.start,
                "end": seg.end,
                "tags": json.dumps(seg_tags),
                "concepts": "[]",
                "embedding": encode_embedding(seg.embedding),
                "version": version,
            },
        )
        pipe.zadd(k.video_segments(video_id), {sid: seg.start})
        for t, s in seg.tags:
            pipe.zadd(k.tag_segments(t), {sid: s})
    for t, s in tags:
        pipe.zadd(k.tag_videos(t), {video_id: s})
        pipe.zincrby(k.tags, 1, t)
    stamp = datetime.fromtimestamp(now, UTC).isoformat()
    pipe.hset(
        k.video(video_id),
        mapping={
            "status": status,
            "uri": f"file:///{video_id}.mp4",
            "title": title,
            "duration_s": max((s.end for s in segments), default=0.0),
            "model_version": "test",
            "version": version,
            "tags": json.dumps([{"tag": t, "score": s} for t, s in tags]),
            "num_segments": len(segments),
            "error": "",
            "created_at": stamp,
            "updated_at": stamp,
        },
    )
    pipe.zadd(k.videos, {video_id: now})
    pipe.execute()
    return version
