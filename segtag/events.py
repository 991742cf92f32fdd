"""The events segtag reads and writes on Kafka, and their strict validation.

Four topics carry JSON values (UTF-8), keyed by ``video_id``:

* uploads (any producer -> tagger): :class:`UploadEvent`, parsed with :func:`parse_upload`.
* segments (tagger -> indexer): :func:`segments_event` / :func:`parse_segments_event`.
* completions (tagger -> anyone): :func:`completion_event`.
* dead letters (tagger -> operators): :func:`dead_letter`.

The public schema with examples is ``docs/events.md``. Validation is strict on
purpose: an event with an unknown field, a wrong type or a value over a limit is
rejected with an :class:`~segtag.errors.InvalidEventError` that names the field,
so a producer's mistake ends on the dead-letter topic with a precise reason
instead of being half-understood.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from segtag.errors import InvalidEventError

SCHEMA_VERSION = 1
VIDEO_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
URI_SCHEMES = ("file", "http", "https")

# Size limits of an upload event. They bound what one message can make the
# tagger hold and write to Redis; the values are generous for real titles.
MAX_EVENT_BYTES = 64 * 1024
MAX_URI_CHARS = 4096
MAX_TITLE_CHARS = 1000
MAX_METADATA_BYTES = 16 * 1024
MAX_METADATA_DEPTH = 8
MAX_SEGMENTS_EVENT_BYTES = 64 * 1024 * 1024

UPLOAD_FIELDS = ("video_id", "uri", "title", "uploaded_at", "metadata", "schema_version")
SEGMENTS_OPS = ("upsert",)
STATUSES = ("queued", "processing", "done", "failed")


@dataclass(frozen=True)
class UploadEvent:
    """One upload: the video to tag and what the uploader told us about it."""

    video_id: str
    uri: str
    title: str = ""
    uploaded_at: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        """The event as it goes on the wire (optional fields only when set)."""
        out: dict[str, Any] = {"schema_version": self.schema_version, "video_id": self.video_id, "uri": self.uri}
        if self.title:
            out["title"] = self.title
        if self.uploaded_at:
            out["uploaded_at"] = self.uploaded_at
        if self.metadata:
            out["metadata"] = self.metadata
        return out

    def to_bytes(self) -> bytes:
        """UTF-8 JSON bytes of :meth:`to_json`."""
        return encode_json(self.to_json())


def encode_json(value: Any) -> bytes:
    """Compact UTF-8 JSON, the encoding of every segtag event."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def now_iso() -> str:
    """The current UTC time as ISO-8601 with a ``Z``-free ``+00:00`` offset."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def make_upload(
    video_id: str, uri: str, title: str = "", uploaded_at: str | None = None, metadata: Mapping[str, Any] | None = None
) -> UploadEvent:
    """Build an upload event and validate it exactly as the tagger will."""
    raw: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "video_id": video_id, "uri": uri}
    if title:
        raw["title"] = title
    raw["uploaded_at"] = uploaded_at or now_iso()
    if metadata:
        raw["metadata"] = dict(metadata)
    return parse_upload(encode_json(raw))


def _decode_object(value: bytes | str | None, what: str, max_bytes: int = MAX_EVENT_BYTES) -> dict[str, Any]:
    """Bytes -> a JSON object, or InvalidEventError saying what is wrong with them."""
    if value is None:
        raise InvalidEventError(f"{what}: the message has no value (tombstone)")
    if isinstance(value, str):
        value = value.encode()
    if len(value) > max_bytes:
        raise InvalidEventError(f"{what}: the value is {len(value)} bytes, over the limit of {max_bytes}")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEventError(f"{what}: the value is not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise InvalidEventError(
            f"{what}: the value is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except ValueError as exc:  # NaN / Infinity
        raise InvalidEventError(f"{what}: {exc}") from exc
    except RecursionError as exc:
        raise InvalidEventError(f"{what}: the JSON is nested too deeply") from exc
    if not isinstance(data, dict):
        raise InvalidEventError(f"{what}: the value must be a JSON object, got {_json_type(data)}")
    return data


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _check_fields(data: Mapping[str, Any], allowed: Sequence[str], required: Sequence[str], what: str) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise InvalidEventError(
            f"{what}: unknown field(s) {', '.join(repr(u) for u in unknown)}; allowed: {', '.join(allowed)}"
        )
    missing = [f for f in required if f not in data]
    if missing:
        raise InvalidEventError(f"{what}: missing required field(s) {', '.join(repr(m) for m in missing)}")


def check_video_id(value: Any, what: str = "video_id") -> str:
    """A valid video id (1-128 characters of ``[A-Za-z0-9._:-]``) or InvalidEventError."""
    if not isinstance(value, str):
        raise InvalidEventError(f"{what} must be a string, got {_json_type(value)}")
    if not VIDEO_ID_RE.fullmatch(value):
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise InvalidEventError(
            f"{what} {shown!r} is invalid: use 1 to 128 characters of A-Z a-z 0-9 . _ : - (got {len(value)} characters)"
        )
    return value


def _check_uri(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidEventError(f"uri must be a string, got {_json_type(value)}")
    if not value:
        raise InvalidEventError("uri must not be empty")
    if len(value) > MAX_URI_CHARS:
        raise InvalidEventError(f"uri is {len(value)} characters, over the limit of {MAX_URI_CHARS}")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InvalidEventError("uri contains control characters")
    scheme = value.split(":", 1)[0].lower() if ":" in value else ""
    if scheme not in URI_SCHEMES:
        raise InvalidEventError(f"uri {value[:80]!r} must start with file://, http:// or https://")
    if scheme == "file" and not value.startswith("file:/"):
        raise InvalidEventError(f"uri {value[:80]!r}: a file URI needs an absolute path (file:///...)")
    if scheme in ("http", "https") and len(value.split("://", 1)) < 2:
        raise InvalidEventError(f"uri {value[:80]!r}: an http(s) URI needs a host (https://host/...)")
    return value


def _check_title(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidEventError(f"title must be a string, got {_json_type(value)}")
    if len(value) > MAX_TITLE_CHARS:
        raise InvalidEventError(f"title is {len(value)} characters, over the limit of {MAX_TITLE_CHARS}")
    return value


def _check_uploaded_at(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidEventError(f"uploaded_at must be an ISO-8601 string, got {_json_type(value)}")
    try:
        datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidEventError(f"uploaded_at {value[:40]!r} is not an ISO-8601 date-time") from exc
    return value


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _check_metadata(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidEventError(f"metadata must be a JSON object, got {_json_type(value)}")
    size = len(encode_json(value))
    if size > MAX_METADATA_BYTES:
        raise InvalidEventError(f"metadata is {size} bytes as JSON, over the limit of {MAX_METADATA_BYTES}")
    if _depth(value) > MAX_METADATA_DEPTH:
        raise InvalidEventError(f"metadata is nested deeper than {MAX_METADATA_DEPTH} levels")
    return value


def _check_schema_version(value: Any) -> int:
    if value is None:
        return SCHEMA_VERSION
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidEventError(f"schema_version must be the integer {SCHEMA_VERSION}, got {_json_type(value)}")
    if value != SCHEMA_VERSION:
        raise InvalidEventError(f"schema_version {value} is not supported; this tagger reads version {SCHEMA_VERSION}")
    return value


def parse_upload(value: bytes | str | None, key: bytes | str | None = None) -> UploadEvent:
    """Validate the value (and key, when given) of an uploads message.

    Raises InvalidEventError naming the first problem found. When the message has
    a key it must equal ``video_id``: the key routes every version of a video to
    one partition, which is what keeps re-uploads of a video in order.
    """
    data = _decode_object(value, "upload event")
    _check_fields(data, UPLOAD_FIELDS, ("video_id", "uri"), "upload event")
    event = UploadEvent(
        video_id=check_video_id(data["video_id"]),
        uri=_check_uri(data["uri"]),
        title=_check_title(data.get("title")),
        uploaded_at=_check_uploaded_at(data.get("uploaded_at")),
        metadata=_check_metadata(data.get("metadata")),
        schema_version=_check_schema_version(data.get("schema_version")),
    )
    if key is not None:
        key_text = key.decode("utf-8", errors="replace") if isinstance(key, bytes) else key
        if key_text != event.video_id:
            raise InvalidEventError(
                f"message key {key_text[:140]!r} differs from video_id {event.video_id!r}; "
                "key upload events by video_id so versions of a video stay in order"
            )
    return event


def video_id_hint(value: bytes | str | None, key: bytes | str | None = None) -> str | None:
    """The video id of a message that failed validation, when one can still be trusted.

    Used to mark the video failed in Redis: a valid ``video_id`` field first, else
    a key that is itself a valid id, else None.
    """
    try:
        data = json.loads(value) if value is not None else None
    except (ValueError, UnicodeDecodeError, TypeError, RecursionError):
        data = None
    candidates: list[Any] = []
    if isinstance(data, dict):
        candidates.append(data.get("video_id"))
    candidates.append(key.decode("utf-8", errors="replace") if isinstance(key, bytes) else key)
    for c in candidates:
        if isinstance(c, str) and VIDEO_ID_RE.fullmatch(c):
            return c
    return None


# --- segments (tagger -> indexer) -----------------------------------------------


def encode_embedding(vector: np.ndarray) -> str:
    """Base64 of the vector as float32 little-endian bytes."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def decode_embedding(text: str) -> np.ndarray:
    """The float32 vector of :func:`encode_embedding`."""
    return np.frombuffer(base64.b64decode(text, validate=True), dtype="<f4").astype(np.float32)


def segment_id(video_id: str, index: int) -> str:
    """The id of a segment: ``{video_id}#{index}``."""
    return f"{video_id}#{index}"


@dataclass(frozen=True)
class SegmentVector:
    """One segment as the indexer receives it."""

    segment_id: str
    start: float
    end: float
    embedding: np.ndarray  # (E,) float32


@dataclass(frozen=True)
class SegmentsEvent:
    """All segments of one version of a video; an empty list removes the video's vectors."""

    video_id: str
    version: int
    segments: list[SegmentVector]
    op: str = "upsert"


def segments_event(
    video_id: str, version: int, segments: Sequence[tuple[int, float, float, np.ndarray]]
) -> dict[str, Any]:
    """The JSON of a segments event from (index, start, end, embedding) tuples."""
    return {
        "video_id": video_id,
        "version": int(version),
        "op": "upsert",
        "segments": [
            {
                "segment_id": segment_id(video_id, int(i)),
                "start": round(float(s), 3),
                "end": round(float(e), 3),
                "embedding_b64": encode_embedding(emb),
            }
            for i, s, e, emb in segments
        ],
    }


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidEventError(f"{what} must be a finite number, got {_json_type(value)}")
    return float(value)


def parse_segments_event(value: bytes | str | None) -> SegmentsEvent:
    """Validate a segments message (for the indexer)."""
    # A long video has thousands of segments: far larger than an upload may be.
    data = _decode_object(value, "segments event", max_bytes=MAX_SEGMENTS_EVENT_BYTES)
    _check_fields(
        data, ("video_id", "version", "segments", "op"), ("video_id", "version", "segments"), "segments event"
    )
    vid = check_video_id(data["video_id"])
    version = data["version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidEventError(f"segments event: version must be an integer >= 1, got {version!r}")
    op = data.get("op", "upsert")
    if op not in SEGMENTS_OPS:
        raise InvalidEventError(f"segments event: op must be one of {SEGMENTS_OPS}, got {op!r}")
    if not isinstance(data["segments"], list):
        raise InvalidEventError("segments event: segments must be an array")
    out = []
    for n, seg in enumerate(data["segments"]):
        where = f"segments event: segments[{n}]"
        if not isinstance(seg, dict):
            raise InvalidEventError(f"{where} must be an object")
        _check_fields(
            seg, ("segment_id", "start", "end", "embedding_b64"), ("segment_id", "start", "end", "embedding_b64"), where
        )
        sid = seg["segment_id"]
        if not isinstance(sid, str) or not sid.startswith(vid + "#"):
            raise InvalidEventError(f"{where}.segment_id must be '{vid}#<index>', got {sid!r}")
        try:
            emb = decode_embedding(seg["embedding_b64"])
        except (ValueError, TypeError) as exc:
            raise InvalidEventError(f"{where}.embedding_b64 is not base64 of float32 values: {exc}") from exc
        out.append(
            SegmentVector(sid, _number(seg["start"], f"{where}.start"), _number(seg["end"], f"{where}.end"), emb)
        )
    return SegmentsEvent(vid, version, out, op)


# --- completions and dead letters -------------------------------------------------


def completion_event(
    video_id: str,
    status: str,
    model_version: str,
    tags: Sequence[tuple[str, float]] = (),
    version: int | None = None,
    num_segments: int = 0,
    duration_s: float | None = None,
    error: str | None = None,
    error_type: str | None = None,
) -> dict[str, Any]:
    """The JSON of a completion event (a video is done or failed)."""
    if status not in ("done", "failed"):
        raise ValueError(f"a completion has status done or failed, not {status!r}")
    out: dict[str, Any] = {
        "video_id": video_id,
        "status": status,
        "model_version": model_version,
        "tags": [{"tag": t, "score": round(float(s), 4)} for t, s in tags],
        "num_segments": int(num_segments),
        "completed_at": now_iso(),
    }
    if version is not None:
        out["version"] = int(version)
    if duration_s is not None:
        out["duration_s"] = round(float(duration_s), 3)
    if error is not None:
        out["error"] = error
        out["error_type"] = error_type or "Error"
    return out


def _payload_text(payload: bytes | None) -> tuple[str | None, str]:
    """The original payload for a dead letter: UTF-8 text when it is, else base64."""
    if payload is None:
        return None, "none"
    try:
        return payload.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(payload).decode("ascii"), "base64"


def dead_letter(
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    payload: bytes | None,
    error_type: str,
    error: str,
    attempts: int,
    video_id: str | None = None,
) -> dict[str, Any]:
    """The JSON of a dead-letter record; the original payload is kept verbatim (or base64)."""
    text, encoding = _payload_text(payload)
    key_text, key_encoding = _payload_text(key)
    return {
        "topic": topic,
        "partition": int(partition),
        "offset": int(offset),
        "key": key_text,
        "key_encoding": key_encoding,
        "payload": text,
        "payload_encoding": encoding,
        "error_type": error_type,
        "error": error,
        "attempts": int(attempts),
        "video_id": video_id,
        "failed_at": now_iso(),
    }
