"""Build the index from Redis: the embeddings of every video whose status is ``done``.

Used when the snapshot is missing or corrupt. Redis holds each finished video's
latest results, so the rebuilt index equals what the log would produce for those
videos; replaying the log afterwards only applies events newer than Redis (older
or equal versions are ignored by the upsert).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import redis

from segtag.index import IndexConfig, IndexDataError, SegmentIndex
from segtag.index_records import Keys, decode_embedding

log = logging.getLogger(__name__)

MAX_TRIES = 3  # a video rewritten while we read it is read again, a bounded number of times


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def _read_video(r: redis.Redis, keys: Keys, vid: str) -> tuple[int, list[str], np.ndarray] | None:
    """One video's (version, segment ids, vectors) if done and self-consistent, else None."""
    for _ in range(MAX_TRIES):
        status, version = r.hmget(keys.video(vid), ["status", "version"])
        if _text(status) != "done" or version is None:
            return None
        sids = [_text(s) for s in r.zrange(keys.video_segments(vid), 0, -1)]
        pipe = r.pipeline(transaction=False)
        for sid in sids:
            pipe.hmget(keys.segment(sid), ["embedding", "version"])
        rows = pipe.execute()
        # The tagger replaces a video in one transaction; if it did so between our reads
        # the segment versions disagree with the video's (or keys vanished): read again.
        if all(emb is not None and _text(v) == _text(version) for emb, v in rows):
            vectors = [decode_embedding(emb) for emb, _ in rows]
            x = np.stack(vectors) if vectors else np.zeros((0, 0), np.float32)
            return int(version), sids, x
    log.warning("video %s kept changing while the index was rebuilt; left to the log", vid)
    return None


def rebuild_from_redis(r: redis.Redis, prefix: str, config: IndexConfig) -> SegmentIndex:
    """A fresh index holding every done video in Redis."""
    keys = Keys(prefix)
    index = SegmentIndex(config)
    vids = [_text(v) for v in r.zrange(keys.videos, 0, -1)]
    added = 0
    for vid in vids:
        got = _read_video(r, keys, vid)
        if got is None:
            continue
        version, sids, x = got
        try:
            index.upsert_video(vid, version, sids, x)
            added += len(sids)
        except IndexDataError as exc:
            log.warning("video %s skipped in rebuild: %s", vid, exc)
    log.info("rebuilt index from Redis: %d videos, %d segments", len(index.videos()), added)
    return index
