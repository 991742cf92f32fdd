"""Liveness of tagger processes through Redis.

Each running tagger refreshes ``P:health:tagger:{worker}`` (a JSON string with a
TTL) every few seconds. A tagger that dies stops refreshing and its key expires,
so ``segtag tagger --check`` (:func:`check`) lists exactly the live ones.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import redis

from segtag.events import now_iso
from segtag.keys import Keys

log = logging.getLogger(__name__)

SERVICE = "tagger"
INTERVAL_S = 5.0
TTL_S = 20  # several missed beats before a worker counts as gone


class Heartbeat:
    """A daemon thread that writes ``snapshot()`` to the worker's health key."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        worker: str,
        snapshot: Callable[[], dict[str, Any]],
        interval_s: float = INTERVAL_S,
    ) -> None:
        self.client = client
        self.key = Keys(prefix).health(SERVICE, worker)
        self.snapshot = snapshot
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{worker}", daemon=True)
        self._failing = False

    def start(self) -> None:
        self._thread.start()

    def beat(self) -> None:
        """Write one heartbeat now; Redis being away is logged once, not raised."""
        try:
            payload = {**self.snapshot(), "updated_at": now_iso()}
            self.client.set(self.key, json.dumps(payload, default=str), ex=TTL_S)
            if self._failing:
                log.info("heartbeat written again to %s", self.key)
            self._failing = False
        except Exception as exc:  # Redis away, or a snapshot error: the thread must live on
            if not self._failing:
                log.warning("cannot write the heartbeat %s: %s (will keep trying)", self.key, exc)
            self._failing = True

    def _run(self) -> None:
        while not self._stop.is_set():
            self.beat()
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        """Stop beating and remove the key: a cleanly stopped worker is not alive."""
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 2)
        try:
            self.client.delete(self.key)
        except redis.RedisError as exc:
            log.warning("could not remove the heartbeat %s (it expires in %d s): %s", self.key, TTL_S, exc)


def check(client: redis.Redis, prefix: str, worker: str | None = None) -> list[dict[str, Any]]:
    """The heartbeats of live taggers (one worker's when ``worker`` is given)."""
    keys = Keys(prefix)
    if worker:
        names = [keys.health(SERVICE, worker).encode()]
    else:
        names = sorted(client.scan_iter(match=keys.health(SERVICE, "*"), count=100))
    out = []
    for name in names:
        raw = client.get(name)
        if raw is None:
            continue
        try:
            beat = json.loads(raw)
        except ValueError:
            beat = {"raw": raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)}
        beat["ttl_s"] = client.ttl(name)
        beat["key"] = name.decode() if isinstance(name, bytes) else str(name)
        out.append(beat)
    return out
