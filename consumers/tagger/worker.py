"""The tagger's poll loop: consumer group membership, flow control, commits, shutdown.

Delivery is at least once with an idempotent effect:

* Auto-commit is off. An upload's offset + 1 is committed only after its results
  are in Redis *and* its segments event is acknowledged by the broker, and only
  once every earlier offset of the partition is finished too (offsets commit as
  a contiguous prefix).
* The heavy work runs on the stage threads (:mod:`.stages`); this thread only
  polls, so a long video never makes the group think we died. While
  ``max_in_flight`` uploads are unfinished the partitions are paused and polling
  goes on (heartbeats, rebalances) without fetching more.
* A job whose transient failure outlasted its retries makes us seek the
  partition back to its offset and pause it for a while; everything after it
  in that partition is dropped (a new *epoch*) and will be fetched again.
* On revocation, finished offsets are committed and the rest is dropped: the
  partition's new owner processes them again, which the Redis transaction and
  the version number make harmless.
* SIGTERM/SIGINT stop polling; finished work is committed, the video in hand is
  abandoned uncommitted, and every client is closed.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from kafka import ConsumerRebalanceListener
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition

from consumers.tagger.connections import Connections, open_connections
from consumers.tagger.health import Heartbeat
from consumers.tagger.jobs import DONE, DROPPED, FAILED, RETRY, Job, JobProcessor
from consumers.tagger.metrics import TaggerMetrics
from consumers.tagger.stages import StageRunner
from segtag.bus import ensure_topics
from segtag.pipeline import VideoTagger
from segtag.settings import Settings

log = logging.getLogger(__name__)

POLL_TIMEOUT_MS = 200
REVOKE_WAIT_S = 30.0  # how long a revocation waits for a write in progress
RETRY_PAUSE_S = (2.0, 60.0)  # pause of a partition after a seek-back: first, maximum
LAG_EVERY_S = 5.0
COMMIT_TIMEOUT_MS = 10000


@dataclass
class PartitionState:
    """What this worker tracks for one assigned partition."""

    epoch: int
    in_flight: OrderedDict[int, str] = field(default_factory=OrderedDict)  # offset -> "" or outcome
    resume_at: float = 0.0  # paused for a retry until then (monotonic)
    seek_backs: int = 0
    revoking: bool = False
    position: int | None = None  # next offset we expect to receive


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"


class _Listener(ConsumerRebalanceListener):
    def __init__(self, worker: TaggerWorker) -> None:
        self.worker = worker

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.worker.on_revoked(set(revoked))

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.worker.on_assigned(set(assigned))


class TaggerWorker:
    """One tagger process (a member of the consumer group)."""

    def __init__(
        self,
        settings: Settings,
        worker_id: str | None = None,
        tagger: VideoTagger | None = None,
        max_in_flight: int = 8,
        decode_ahead: int = 2,
    ) -> None:
        self.settings = settings
        self.worker_id = worker_id or default_worker_id()
        self.tagger = tagger
        self.max_in_flight = max_in_flight
        self.decode_ahead = decode_ahead
        self.stop_event = threading.Event()
        self.metrics = TaggerMetrics()
        self.states: dict[TopicPartition, PartitionState] = {}
        self._lock = threading.Lock()  # guards states' epochs/revoking for the stage threads
        self._epochs = itertools.count(1)
        self._outcomes: list[Job] = []
        self._outcomes_lock = threading.Lock()
        self._pending_commit: dict[TopicPartition, int] = {}
        self._retries: dict[tuple[TopicPartition, int], int] = {}
        self._last_lag = 0.0
        self._started_at = time.time()
        self.conns: Connections | None = None
        self.runner: StageRunner | None = None
        self.processor: JobProcessor | None = None
        self.counts = {DONE: 0, FAILED: 0, RETRY: 0, DROPPED: 0}
        self.polls = 0  # poll() calls so far: keeps rising while a long video is tagged

    # --- lifecycle -------------------------------------------------------------

    def request_stop(self, *_: Any) -> None:
        """Ask the loop to stop (signal handler and tests)."""
        if not self.stop_event.is_set():
            log.info("tagger %s stopping", self.worker_id)
        self.stop_event.set()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s", signal.Signals(signum).name)
            self.request_stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def run(self) -> int:
        """Tag uploads until asked to stop; returns an exit code."""
        if self.tagger is None:
            # Load the model before joining the group: a rebalance should not wait on it.
            self.tagger = VideoTagger(self.settings)
        self.tagger.warm_up()
        ensure_topics(self.settings)
        heartbeat: Heartbeat | None = None
        try:
            self.conns = open_connections(self.settings, max_poll_records=self.max_in_flight)
            processor = JobProcessor(
                self.settings, self.tagger, self.conns.results, self.conns.status, self.conns.kafka,
                self.metrics, self.stop_event, self.is_current,
            )  # fmt: skip
            self.processor = processor
            self.runner = StageRunner(
                processor, self._report, self.settings.batch_size, self.settings.batch_wait_ms, self.decode_ahead
            )
            self.runner.start()
            if self.settings.metrics_port:
                self.metrics.serve(self.settings.metrics_port)
            heartbeat = Heartbeat(self.conns.status.client, self.settings.redis_prefix, self.worker_id, self.snapshot)
            heartbeat.start()
            self.conns.consumer.subscribe([self.settings.uploads_topic], listener=_Listener(self))
            log.info(
                "tagger %s consuming %s as group %s (model %s)",
                self.worker_id, self.settings.uploads_topic, self.settings.consumer_group, self.tagger.model_version,
            )  # fmt: skip
            while not self.stop_event.is_set():
                self._iteration()
        finally:
            self._shutdown(heartbeat)
        if self.runner is not None and self.runner.crashed is not None:
            return 1
        return 0

    def _shutdown(self, heartbeat: Heartbeat | None) -> None:
        self.stop_event.set()
        try:
            # The video in hand is abandoned: threads stop at their next check.
            if self.runner is not None and not self.runner.join(timeout_s=15.0):
                log.warning("a stage is still busy; abandoning its video uncommitted")
            if self.conns is not None:
                self._drain_outcomes()
                self._commit(sync=True)
            if heartbeat is not None:
                heartbeat.stop()
        finally:
            if self.conns is not None:
                self.conns.close()
            log.info("tagger %s stopped: %s", self.worker_id, self.counts)

    # --- the loop ------------------------------------------------------------------

    def _iteration(self) -> None:
        assert self.conns is not None
        consumer = self.conns.consumer
        room = max(1, self.max_in_flight - self.in_flight())
        self.polls += 1
        try:
            batches = consumer.poll(timeout_ms=POLL_TIMEOUT_MS, max_records=room)
        except KafkaError as exc:
            log.warning("poll failed (will poll again): %s", exc)
            self.stop_event.wait(1.0)
            return
        for tp, records in batches.items():
            for record in records:
                self._accept(tp, record)
        self._drain_outcomes()
        self._commit()
        self._flow_control()
        self._update_lag()

    def in_flight(self) -> int:
        return sum(len(s.in_flight) for s in self.states.values())

    def _accept(self, tp: TopicPartition, record: ConsumerRecord) -> None:
        state = self.states.get(tp)
        if state is None or state.revoking:
            return  # fetched before a revocation: the new owner gets it
        if state.position is not None and record.offset < state.position:
            return  # already in hand (a fetch that raced a seek)
        state.position = record.offset + 1
        job = Job(
            topic=tp.topic, partition=tp.partition, offset=record.offset, key=record.key, value=record.value,
            epoch=state.epoch, timestamp_ms=record.timestamp,
            attempts=1 + self._retries.get((tp, record.offset), 0),
        )  # fmt: skip
        assert self.processor is not None
        self.processor.accept(job)
        state.in_flight[record.offset] = ""
        assert self.runner is not None
        self.runner.submit(job)

    def _report(self, job: Job) -> None:
        """Called by the sink thread when a job has an outcome."""
        with self._outcomes_lock:
            self._outcomes.append(job)

    def is_current(self, job: Job) -> bool:
        """False once the job's partition was revoked or sought back (the job is then dropped)."""
        with self._lock:
            state = self.states.get(TopicPartition(job.topic, job.partition))
            return state is not None and not state.revoking and state.epoch == job.epoch

    def _drain_outcomes(self) -> None:
        with self._outcomes_lock:
            jobs, self._outcomes = self._outcomes, []
        for job in jobs:
            tp = TopicPartition(job.topic, job.partition)
            state = self.states.get(tp)
            self.counts[job.outcome] = self.counts.get(job.outcome, 0) + 1
            if state is None or state.epoch != job.epoch or job.offset not in state.in_flight:
                continue  # an outcome from before a seek-back or revocation
            if job.outcome in (DONE, FAILED):
                state.in_flight[job.offset] = job.outcome
                self._retries.pop((tp, job.offset), None)
                self._advance(tp, state)
            elif job.outcome == RETRY:
                self._seek_back(tp, state, job)
            # DROPPED jobs belong to an older epoch and were skipped above.

    def _advance(self, tp: TopicPartition, state: PartitionState) -> None:
        """Commit the finished prefix of the partition's in-flight offsets."""
        last = None
        while state.in_flight:
            offset, outcome = next(iter(state.in_flight.items()))
            if not outcome:
                break
            state.in_flight.popitem(last=False)
            last = offset
        if last is not None:
            self._pending_commit[tp] = last + 1

    def _seek_back(self, tp: TopicPartition, state: PartitionState, job: Job) -> None:
        """Retry later from ``job``'s offset: drop what follows it, rewind, pause a while."""
        assert self.conns is not None
        # Stages are FIFO, so nothing before this job is unfinished; rewinding to the
        # oldest in-flight offset keeps that true even if it were not.
        rewind_to = min([job.offset, *state.in_flight])
        with self._lock:
            state.epoch = next(self._epochs)  # jobs after it, already in the stages, are dropped
            state.in_flight.clear()
        state.seek_backs += 1
        state.position = rewind_to
        pause = min(RETRY_PAUSE_S[1], RETRY_PAUSE_S[0] * 2 ** min(state.seek_backs - 1, 8))
        state.resume_at = time.monotonic() + pause
        key = (tp, rewind_to)
        self._retries[key] = self._retries.get(key, 0) + 1
        log.warning(
            "%s: transient failure after %d attempts (%s); not committing, retrying from offset %d in %.0f s",
            job.where, self.settings.max_attempts, job.retry_error, rewind_to, pause,
        )  # fmt: skip
        self.conns.consumer.seek(tp, rewind_to)

    def _commit(self, sync: bool = False, only: set[TopicPartition] | None = None) -> None:
        assert self.conns is not None
        todo = {tp: o for tp, o in self._pending_commit.items() if only is None or tp in only}
        if not todo:
            return
        offsets = {tp: OffsetAndMetadata(o, "", -1) for tp, o in todo.items()}
        try:
            # Bounded: with the broker away an unbounded commit would stall the loop and shutdown.
            self.conns.consumer.commit(offsets, timeout_ms=COMMIT_TIMEOUT_MS)
        except CommitFailedError as exc:
            # The group moved on without us: the new owners re-process these (idempotently).
            log.warning("commit of %s rejected by the group (%s); those uploads will be redone", todo, exc)
            for tp in todo:
                self._pending_commit.pop(tp, None)
            return
        except KafkaError as exc:
            log.warning("commit of %s failed (%s); keeping it to retry", todo, exc)
            if sync:
                log.error("shutting down with uncommitted finished offsets %s; they will be redone", todo)
            return
        for tp, o in todo.items():
            if self._pending_commit.get(tp) == o:
                del self._pending_commit[tp]
        log.debug("committed %s", todo)

    def _flow_control(self) -> None:
        """Pause every partition at capacity and those waiting to retry; resume the rest."""
        assert self.conns is not None
        consumer = self.conns.consumer
        assigned = set(consumer.assignment())
        now = time.monotonic()
        full = self.in_flight() >= self.max_in_flight
        want = {tp for tp in assigned if full or self.states.get(tp, PartitionState(0)).resume_at > now}
        paused = set(consumer.paused())
        if want - paused:
            consumer.pause(*(want - paused))
        if (paused - want) & assigned:
            consumer.resume(*((paused - want) & assigned))

    def _update_lag(self) -> None:
        now = time.monotonic()
        if now - self._last_lag < LAG_EVERY_S or self.conns is None:
            return
        self._last_lag = now
        consumer = self.conns.consumer
        self.metrics.in_flight.set(self.in_flight())
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is None:
                continue
            try:
                pos = consumer.position(tp, timeout_ms=1000)
            except (KafkaError, AssertionError):
                continue
            if pos is not None:
                self.metrics.lag.labels(str(tp.partition)).set(max(0, high - pos))

    # --- rebalances (called inside poll(), on this thread) ----------------------

    def on_assigned(self, assigned: set[TopicPartition]) -> None:
        with self._lock:
            for tp in assigned:
                if tp not in self.states:
                    self.states[tp] = PartitionState(epoch=next(self._epochs))
        log.info("assigned %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))

    def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Commit what is finished in ``revoked``, drop the rest."""
        if not revoked:
            return
        with self._lock:
            for tp in revoked:
                if tp in self.states:
                    self.states[tp].revoking = True
        # A write already under way finishes first: otherwise it could land
        # after the new owner's write of a later upload of the same video.
        deadline = time.monotonic() + REVOKE_WAIT_S
        while self.runner is not None and time.monotonic() < deadline:
            current = self.runner.sinking()
            if current is None or TopicPartition(current.topic, current.partition) not in revoked:
                break
            time.sleep(0.05)
        self._drain_outcomes()  # finished jobs of the revoked partitions still count
        self._commit(sync=True, only=revoked)
        with self._lock:
            for tp in revoked:
                self.states.pop(tp, None)
                self._pending_commit.pop(tp, None)
        log.info("revoked %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in revoked))

    # --- health -----------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The heartbeat's content (called from the heartbeat thread)."""
        with self._lock:  # the poll thread changes the partition map under this lock
            partitions = sorted(tp.partition for tp in self.states)
            in_flight = sum(len(st.in_flight) for st in self.states.values())
        return {
            "worker": self.worker_id,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "group": self.settings.consumer_group,
            "topic": self.settings.uploads_topic,
            "model_version": self.tagger.model_version if self.tagger else None,
            "started_at": self._started_at,
            "partitions": partitions,
            "in_flight": in_flight,
            "done": self.counts[DONE],
            "failed": self.counts[FAILED],
            "retries": self.counts[RETRY],
        }
