"""Produces the tagger's outgoing events: segments (to the indexer), completions and
dead letters.

Each send waits for the broker's acknowledgement (the producer runs with
``acks=all``; see :func:`segtag.bus.make_producer`), because the tagger commits an
upload's offset only after its results are handed on. ``KafkaProducer.flush``
alone would not do: it waits but does not report a failed record, the record's
future does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from segtag.errors import SinkUnavailableError
from segtag.events import completion_event, dead_letter, encode_json, segments_event
from segtag.settings import Settings

log = logging.getLogger(__name__)


class KafkaSink:
    """The tagger's producer side."""

    def __init__(self, producer: KafkaProducer, settings: Settings, timeout_s: float = 30.0) -> None:
        self.producer = producer
        self.settings = settings
        self.timeout_s = timeout_s

    def _send(self, topic: str, key: str | bytes | None, value: dict[str, Any]) -> tuple[int, int]:
        """Send one record and wait for its acknowledgement; (partition, offset)."""
        key_bytes = key.encode() if isinstance(key, str) else key
        try:
            future = self.producer.send(topic, key=key_bytes, value=encode_json(value))
            meta = future.get(timeout=self.timeout_s)
        except KafkaError as exc:
            raise SinkUnavailableError(f"the broker did not take a record for {topic}: {exc!r}") from exc
        return int(meta.partition), int(meta.offset)

    def send_segments(self, video_id: str, version: int, segments: Sequence[Any]) -> tuple[int, int]:
        """All segments of a video's new version (empty: the video has none any more)."""
        value = segments_event(video_id, version, [(s.index, s.start, s.end, s.embedding) for s in segments])
        return self._send(self.settings.segments_topic, video_id, value)

    def send_completion(self, video_id: str, **fields: Any) -> tuple[int, int]:
        """A video is done or failed (see :func:`segtag.events.completion_event`)."""
        return self._send(self.settings.completions_topic, video_id, completion_event(video_id, **fields))

    def send_dead_letter(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        payload: bytes | None,
        error_type: str,
        error: str,
        attempts: int,
        video_id: str | None = None,
    ) -> tuple[int, int]:
        """The original message with why it could not be processed; keyed as received."""
        value = dead_letter(topic, partition, offset, key, payload, error_type, error, attempts, video_id)
        return self._send(self.settings.dead_letter_topic, key, value)
