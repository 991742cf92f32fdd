"""Prometheus metrics of one tagger process.

Kept in the worker's own registry (no module-level global state) and served on
``metrics_port`` when it is set.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

STAGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)


class TaggerMetrics:
    """Counters, histograms and gauges of the tagger."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.videos_done = Counter("segtag_tagger_videos_done", "Videos tagged and written", registry=r)
        self.videos_failed = Counter("segtag_tagger_videos_failed", "Uploads dead-lettered", ["error_type"], registry=r)
        self.windows = Counter("segtag_tagger_windows", "Windows (segments) tagged", registry=r)
        self.windows_per_second = Gauge(
            "segtag_tagger_windows_per_second", "Windows tagged per second over the last minute", registry=r
        )
        self.retries = Counter("segtag_tagger_retries", "Transient failures retried", ["stage"], registry=r)
        self.stage_seconds = Histogram(
            "segtag_tagger_stage_seconds",
            "Seconds per video in each stage",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.batch_windows = Histogram(
            "segtag_tagger_batch_rows",
            "Rows (windows and whole videos) per model batch",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.lag = Gauge(
            "segtag_tagger_consumer_lag", "Messages behind the end of each partition", ["partition"], registry=r
        )
        self.in_flight = Gauge("segtag_tagger_in_flight", "Uploads received and not yet committed", registry=r)
        self._recent: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()

    def add_windows(self, n: int, now: float | None = None) -> None:
        """Count tagged windows and refresh the per-second rate over the last 60 s."""
        now = time.monotonic() if now is None else now
        self.windows.inc(n)
        with self._lock:
            self._recent.append((now, n))
            while self._recent and self._recent[0][0] < now - 60:
                self._recent.popleft()
            span = max(1.0, now - self._recent[0][0]) if self._recent else 60.0
            self.windows_per_second.set(sum(c for _, c in self._recent) / span)

    def serve(self, port: int) -> None:
        """Expose /metrics on ``port`` (all interfaces, as Prometheus scrapes from outside)."""
        start_http_server(port, registry=self.registry)
        log.info("metrics on http://0.0.0.0:%d/metrics", port)
