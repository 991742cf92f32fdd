"""When the indexer snapshots, and where its state comes from at start-up."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import redis

from consumers.indexer.rebuild import rebuild_from_redis
from segtag.errors import SinkUnavailableError
from segtag.index import IndexConfig
from segtag.index_snapshot import CorruptSnapshotError, Snapshot, quarantine, read_snapshot, snapshot_path
from segtag.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

REDIS_TRIES = 5


@dataclass
class SnapshotPolicy:
    """Snapshot after ``every`` applied events or ``interval_s`` seconds with changes."""

    interval_s: float = 10.0
    every: int = 1000
    _last: float = 0.0

    def __post_init__(self) -> None:
        self._last = time.monotonic()

    def due(self, pending: int) -> bool:
        if pending <= 0:
            return False
        return pending >= self.every or time.monotonic() - self._last >= self.interval_s

    def done(self) -> None:
        self._last = time.monotonic()


@dataclass
class StartState:
    """The index to start from and whether it came from Redis rather than a snapshot."""

    snapshot: Snapshot
    rebuilt: bool


def load_or_rebuild(settings: Settings, config: IndexConfig, r: redis.Redis) -> StartState:
    """The last good snapshot; else (missing, corrupt, other kind) an index rebuilt from Redis."""
    path = snapshot_path(settings.index_dir)
    reason = ""
    try:
        snap = read_snapshot(path, config)
        if snap.index.config.kind == config.kind:
            log.info("loaded snapshot %s: %d vectors, positions %s", path, len(snap.index), snap.positions)
            return StartState(snap, rebuilt=False)
        reason = f"snapshot is a {snap.index.config.kind} index, {config.kind} is configured"
    except FileNotFoundError:
        reason = "no snapshot"
    except CorruptSnapshotError as exc:
        moved = quarantine(path)
        reason = f"corrupt snapshot ({exc}); moved to {moved}"
    log.warning("%s: rebuilding the index from Redis", reason)
    index = _with_retries(lambda: rebuild_from_redis(r, settings.redis_prefix, config))
    return StartState(Snapshot(index=index, positions={}, created_at=time.time()), rebuilt=True)


def _with_retries(fn: Callable[[], T]) -> T:
    """Call fn, retrying a Redis outage a bounded number of times with backoff."""
    delay = 0.5
    for attempt in range(1, REDIS_TRIES + 1):
        try:
            return fn()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if attempt == REDIS_TRIES:
                raise SinkUnavailableError(f"Redis unavailable while rebuilding the index: {exc}") from exc
            log.warning("Redis unavailable (%s); retry %d/%d in %.1fs", exc, attempt, REDIS_TRIES, delay)
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")
