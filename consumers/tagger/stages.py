"""The three threads behind the poll loop.

::

    submit() -> [inbox] -> decode thread -> [ready, bounded] -> model thread -> [written] -> sink thread -> outcomes

* The decode thread decodes videos and computes features, running ahead of the
  model by at most ``decode_ahead`` videos (the bounded queue holds it back).
* The model thread takes what is ready, waits up to ``batch_wait_ms`` for more
  until ``batch_size`` rows are there, and tags those videos in shared batches.
* The sink thread writes results to Redis and Kafka and reports each job's
  outcome to the worker, which commits.

Every stage is one thread taking jobs first-in first-out, so jobs leave in the
order they came: two uploads of the same video (same key, same partition) are
written in upload order and the later one wins.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from consumers.tagger.jobs import Job, JobProcessor, Stopped

log = logging.getLogger(__name__)

_POLL_S = 0.2  # how often an idle stage looks at the stop flag


class StageRunner:
    """Runs jobs through decode -> model -> sinks on three threads."""

    def __init__(
        self,
        processor: JobProcessor,
        report: Callable[[Job], None],
        batch_size: int,
        batch_wait_ms: int,
        decode_ahead: int = 2,
    ) -> None:
        self.processor = processor
        self.report = report
        self.batch_size = batch_size
        self.batch_wait_s = batch_wait_ms / 1000.0
        self.stop = processor.stop
        self.inbox: queue.Queue[Job] = queue.Queue()
        self.ready: queue.Queue[Job] = queue.Queue(maxsize=max(1, decode_ahead))
        self.written: queue.Queue[list[Job]] = queue.Queue(maxsize=2)
        self._sinking: Job | None = None
        self._sink_lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._guard, args=(self._decode_loop,), name="tagger-decode", daemon=True),
            threading.Thread(target=self._guard, args=(self._model_loop,), name="tagger-model", daemon=True),
            threading.Thread(target=self._guard, args=(self._sink_loop,), name="tagger-sink", daemon=True),
        ]
        self.crashed: BaseException | None = None

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def submit(self, job: Job) -> None:
        self.inbox.put(job)

    def sinking(self) -> Job | None:
        """The job whose results are being written right now, if any."""
        with self._sink_lock:
            return self._sinking

    def join(self, timeout_s: float) -> bool:
        """Wait for the threads after ``stop`` is set; True if all ended in time."""
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    # --- threads ----------------------------------------------------------------

    def _guard(self, loop: Callable[[], None]) -> None:
        """Run a stage loop; an unexpected crash stops the worker instead of hanging it."""
        try:
            loop()
        except Stopped:
            pass
        except BaseException as exc:
            log.exception("a tagger stage crashed; stopping the worker")
            self.crashed = exc
            self.stop.set()

    def _get(self, q: queue.Queue[Job], timeout: float) -> Job | None:
        try:
            return q.get(timeout=timeout)
        except queue.Empty:
            return None

    def _put(self, q: queue.Queue[Job] | queue.Queue[list[Job]], item: Job | list[Job]) -> None:
        """Put into a bounded queue, giving up when the worker stops."""
        while not self.stop.is_set():
            try:
                q.put(item, timeout=_POLL_S)  # type: ignore[arg-type]
                return
            except queue.Full:
                continue
        raise Stopped()

    def _decode_loop(self) -> None:
        while not self.stop.is_set():
            job = self._get(self.inbox, _POLL_S)
            if job is None:
                continue
            self.processor.decode(job)
            self._put(self.ready, job)

    def _model_loop(self) -> None:
        while not self.stop.is_set():
            first = self._get(self.ready, _POLL_S)
            if first is None:
                continue
            batch = [first]
            rows = self._rows(first)
            deadline = time.monotonic() + self.batch_wait_s
            # Gather more videos while the batch is not full and the wait allows.
            while rows < self.batch_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                more = self._get(self.ready, remaining)
                if more is None:
                    break
                batch.append(more)
                rows += self._rows(more)
            self.processor.infer(batch)
            self._put(self.written, batch)

    @staticmethod
    def _rows(job: Job) -> int:
        return 0 if job.features is None else 1 + len(job.features.windows)

    def _sink_loop(self) -> None:
        while not self.stop.is_set():
            try:
                batch = self.written.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            for job in batch:
                with self._sink_lock:
                    self._sinking = job
                try:
                    job.outcome = self.processor.finish(job)
                finally:
                    with self._sink_lock:
                        self._sinking = None
                self.report(job)
