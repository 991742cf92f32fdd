"""What happens to one upload event: parse -> status -> pipeline -> sinks.

A :class:`Job` carries one Kafka record through the stages; :class:`JobProcessor`
holds the steps. The steps never raise for bad input: a poison error is stored in
the job and ends as a dead letter plus a ``failed`` status. A transient error
(Redis or the broker away, an HTTP origin timing out) is retried here with
backoff, ``max_attempts`` times; if it persists the job ends as ``retry`` and the
worker seeks back to its offset (nothing is committed, nothing lost).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from consumers.tagger.metrics import TaggerMetrics
from segtag.errors import InvalidEventError, PoisonError, RetryableError, SegtagError
from segtag.events import UploadEvent, parse_upload, video_id_hint
from segtag.pipeline import ModelOutputs, VideoResult, VideoTagger
from segtag.settings import Settings
from segtag.sinks.kafka_sink import KafkaSink
from segtag.sinks.redis_sink import RedisSink

if TYPE_CHECKING:
    from segtag.features.extractor import VideoFeatures

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_BACKOFF_S = 10.0

# Outcomes a job can end with (reported to the worker, which commits or seeks).
DONE, FAILED, RETRY, DROPPED = "done", "failed", "retry", "dropped"


@dataclass
class Job:
    """One upload record on its way through the tagger."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    epoch: int  # the partition's epoch when received; a stale epoch means "drop me"
    timestamp_ms: int = -1  # the record's Kafka timestamp (produce time)
    attempts: int = 1  # how many times this record has been tried in this process
    received: float = field(default_factory=time.monotonic)
    event: UploadEvent | None = None
    error: SegtagError | None = None  # poison: dead-letter it
    retry_error: RetryableError | None = None  # transient and exhausted: seek back
    features: VideoFeatures | None = None
    outputs: ModelOutputs | None = None
    result: VideoResult | None = None
    timings: dict[str, float] = field(default_factory=dict)
    feature_timings: dict[str, float] = field(default_factory=dict)
    version: int | None = None
    outcome: str = ""
    # Sink steps already done, so a retried sink step does not redo them.
    sink_steps: set[str] = field(default_factory=set)

    @property
    def video_id(self) -> str | None:
        if self.event is not None:
            return self.event.video_id
        return video_id_hint(self.value, self.key)

    @property
    def where(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


class Stopped(Exception):
    """The worker is shutting down: abandon the job without committing it."""


def backoff_s(attempt: int) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
    return min(MAX_BACKOFF_S, 0.5 * 2 ** (attempt - 1))


class JobProcessor:
    """The steps of a job, used by the stage threads."""

    def __init__(
        self,
        settings: Settings,
        tagger: VideoTagger,
        results: RedisSink,
        status: RedisSink,
        kafka: KafkaSink,
        metrics: TaggerMetrics,
        stop: threading.Event,
        is_current: Callable[[Job], bool],
    ) -> None:
        self.settings = settings
        self.tagger = tagger
        self.results = results
        self.status = status
        self.kafka = kafka
        self.metrics = metrics
        self.stop = stop
        self.is_current = is_current

    # --- helpers ----------------------------------------------------------------

    def retry(self, what: str, stage: str, fn: Callable[[], T]) -> T:
        """Call ``fn`` until it stops raising RetryableError, at most ``max_attempts`` times."""
        limit = self.settings.max_attempts
        for attempt in range(1, limit + 1):
            try:
                return fn()
            except RetryableError as exc:
                self.metrics.retries.labels(stage).inc()
                if attempt == limit:
                    log.error("%s failed %d times, giving up for now: %s", what, limit, exc)
                    raise
                wait = backoff_s(attempt)
                log.warning(
                    "%s failed (attempt %d of %d, %d left): %s; retrying in %.1f s",
                    what, attempt, limit, limit - attempt, exc, wait,
                )  # fmt: skip
                if self.stop.wait(wait):
                    raise Stopped() from exc
        raise AssertionError("unreachable")

    def _best_effort_status(self, job: Job, status: str) -> None:
        """queued/processing are informative only: Redis being away must not stop the work."""
        if job.event is None:
            return
        try:
            self.status.set_status(job.event.video_id, status, job.event.uri, job.event.title, job.attempts)
        except RetryableError as exc:
            log.warning("could not mark %s %s (the final write will retry): %s", job.event.video_id, status, exc)

    # --- step 0: on receipt (poll thread) ------------------------------------

    def accept(self, job: Job) -> None:
        """Parse the event and mark the video queued."""
        try:
            job.event = parse_upload(job.value, job.key)
        except InvalidEventError as exc:
            job.error = exc
            return
        self._best_effort_status(job, "queued")

    # --- step 1: decode and features (decode thread) -------------------------

    def decode(self, job: Job) -> None:
        """Decode the video and compute its features; errors are stored in the job."""
        if job.error is not None or job.event is None or not self.is_current(job):
            return
        event = job.event
        self._best_effort_status(job, "processing")
        started = time.perf_counter()
        try:
            job.features = self.retry(
                f"fetching {event.uri} for {event.video_id}",
                "decode",
                lambda: self.tagger.extract(event.uri, event.title),
            )
        except PoisonError as exc:
            job.error = exc
        except RetryableError as exc:
            job.retry_error = exc
        except Stopped:
            raise
        except Exception as exc:  # a decoder bug on one odd file must not stop the service
            log.exception("unexpected error decoding %s (%s); dead-lettering it", event.video_id, job.where)
            job.error = SegtagError(f"{type(exc).__name__}: {exc}")
        job.timings["decode_features"] = time.perf_counter() - started
        if job.features is not None:
            # The extractor's own split (decode, visual, audio, title) for the per-video log line.
            job.feature_timings = dict(getattr(job.features, "timings", {}) or {})

    # --- step 2: the model, several videos at once (model thread) ----------

    def infer(self, jobs: Sequence[Job]) -> None:
        """Tag the videos of ``jobs`` that have features, batching their windows."""
        ready = [j for j in jobs if j.features is not None and self.is_current(j)]
        if not ready:
            return
        try:
            outputs = self.tagger.infer([j.features for j in ready if j.features is not None])
        except Exception as exc:
            if len(ready) == 1:
                log.exception("the model failed on %s (%s)", ready[0].video_id, ready[0].where)
                ready[0].error = SegtagError(f"model failed: {type(exc).__name__}: {exc}")
                ready[0].features = None
                return
            # Find the one video that breaks the batch: tag each on its own.
            log.warning("a batch of %d videos failed in the model (%s); tagging them one by one", len(ready), exc)
            for j in ready:
                self.infer([j])
            return
        rows = sum(1 + len(j.features.windows) for j in ready if j.features is not None)
        self.metrics.batch_windows.observe(rows)
        for job, out in zip(ready, outputs, strict=True):
            assert job.features is not None
            job.timings["model"] = out.seconds
            job.result = self.tagger.assemble(job.features, out, job.video_id, job.timings)
            job.features = None  # the frames' features are no longer needed: free them early

    # --- step 3: sinks (sink thread) ------------------------------------------

    def finish(self, job: Job) -> str:
        """Write the job's results (or failure) and hand them on; returns the outcome."""
        if not self.is_current(job):
            return DROPPED
        if job.retry_error is not None:
            return RETRY
        started = time.perf_counter()
        try:
            if job.result is not None and job.error is None:
                self._finish_done(job, job.result)
                outcome = DONE
            else:
                self._finish_failed(job)
                outcome = FAILED
        except RetryableError as exc:
            job.retry_error = exc
            return RETRY
        job.timings["sinks"] = time.perf_counter() - started
        self._observe(job, outcome)
        return outcome

    def _finish_done(self, job: Job, result: VideoResult) -> None:
        event = job.event
        assert event is not None
        vid = event.video_id
        if "redis" not in job.sink_steps:
            outcome = self.retry(
                f"writing {vid} to Redis",
                "redis",
                lambda: self.results.write_done(
                    vid,
                    event.uri,
                    event.title,
                    result.tags,
                    result.segments,
                    result.duration_s,
                    result.model_version,
                    job.attempts,
                ),
            )
            job.version = outcome.version
            job.sink_steps.add("redis")
        version = job.version or 1
        if "segments" not in job.sink_steps:
            self.retry(
                f"sending the segments of {vid}",
                "kafka",
                lambda: self.kafka.send_segments(vid, version, result.segments),
            )
            job.sink_steps.add("segments")
        if "completion" not in job.sink_steps:
            self.retry(
                f"sending the completion of {vid}",
                "kafka",
                lambda: self.kafka.send_completion(
                    status="done",
                    model_version=result.model_version,
                    tags=result.tags,
                    version=version,
                    num_segments=len(result.segments),
                    duration_s=result.duration_s,
                    video_id=vid,
                ),
            )
            job.sink_steps.add("completion")

    def _finish_failed(self, job: Job) -> None:
        error = job.error or SegtagError("unknown failure")
        error_type = type(error).__name__
        message = str(error)
        vid = job.video_id
        uri = job.event.uri if job.event else ""
        title = job.event.title if job.event else ""
        model_version = self.tagger.model_version
        if vid is not None and "redis" not in job.sink_steps:
            outcome = self.retry(
                f"marking {vid} failed in Redis",
                "redis",
                lambda: self.results.write_failed(vid, uri, title, error_type, message, model_version, job.attempts),
            )
            job.version = outcome.version
            job.sink_steps.add("redis")
        if vid is not None and "segments" not in job.sink_steps:
            # An empty segment list at the new version: the indexer drops the
            # vectors of whatever version this upload replaced.
            version = job.version or 1
            self.retry(
                f"sending the (empty) segments of {vid}", "kafka", lambda: self.kafka.send_segments(vid, version, [])
            )
            job.sink_steps.add("segments")
        if "dead_letter" not in job.sink_steps:
            self.retry(
                f"dead-lettering {job.where}",
                "kafka",
                lambda: self.kafka.send_dead_letter(
                    job.topic, job.partition, job.offset, job.key, job.value, error_type, message, job.attempts, vid
                ),
            )
            job.sink_steps.add("dead_letter")
        if vid is not None and "completion" not in job.sink_steps:
            self.retry(
                f"sending the completion of {vid}",
                "kafka",
                lambda: self.kafka.send_completion(
                    video_id=vid,
                    status="failed",
                    model_version=model_version,
                    version=job.version,
                    error=message,
                    error_type=error_type,
                ),
            )
            job.sink_steps.add("completion")

    def _observe(self, job: Job, outcome: str) -> None:
        """Metrics and the one structured log line per video."""
        total = time.monotonic() - job.received
        for stage in ("decode_features", "model", "sinks"):
            if stage in job.timings:
                self.metrics.stage_seconds.labels(stage).observe(job.timings[stage])
        self.metrics.stage_seconds.labels("total").observe(total)
        line: dict[str, Any] = {
            "event": "video_" + outcome,
            "video_id": job.video_id,
            "partition": job.partition,
            "offset": job.offset,
            "attempts": job.attempts,
            "version": job.version,
            "timings": {k: round(v, 4) for k, v in job.timings.items()},
            "feature_timings": {k: round(v, 4) for k, v in job.feature_timings.items()},
            "total_s": round(total, 4),
        }
        if job.timestamp_ms > 0:
            line["produce_to_done_s"] = round(time.time() - job.timestamp_ms / 1000.0, 4)
        if outcome == DONE and job.result is not None:
            self.metrics.videos_done.inc()
            self.metrics.add_windows(len(job.result.segments))
            line.update(
                duration_s=round(job.result.duration_s, 3),
                windows=len(job.result.segments),
                tags=[t for t, _ in job.result.tags],
            )
        else:
            error = job.error or SegtagError("unknown failure")
            self.metrics.videos_failed.labels(type(error).__name__).inc()
            line.update(error_type=type(error).__name__, error=str(error)[:500])
        log.info(json.dumps(line))
