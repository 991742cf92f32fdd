"""Upload, segments, completion and dead-letter events: strict validation, round trips."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segtag.errors import InvalidEventError
from segtag.events import (
    MAX_METADATA_BYTES,
    MAX_TITLE_CHARS,
    completion_event,
    dead_letter,
    decode_embedding,
    encode_embedding,
    make_upload,
    parse_segments_event,
    parse_upload,
    segments_event,
    video_id_hint,
)

VALID = {"video_id": "v-1.a:b_c", "uri": "file:///media/a.mp4", "title": "A title", "schema_version": 1}


def enc(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def test_valid_upload_round_trip() -> None:
    event = parse_upload(enc({**VALID, "uploaded_at": "2026-11-25T18:00:00Z", "metadata": {"k": [1, 2]}}), b"v-1.a:b_c")
    assert event.video_id == "v-1.a:b_c" and event.title == "A title" and event.metadata == {"k": [1, 2]}
    assert parse_upload(event.to_bytes()) == event


def test_optional_fields_default() -> None:
    event = parse_upload(enc({"video_id": "x", "uri": "https://example.com/v.mp4"}))
    assert event.title == "" and event.metadata == {} and event.uploaded_at is None and event.schema_version == 1


def test_make_upload_stamps_time_and_validates() -> None:
    event = make_upload("abc", "file:///x.mp4", "t")
    assert event.uploaded_at is not None
    with pytest.raises(InvalidEventError, match="video_id"):
        make_upload("not valid!", "file:///x.mp4")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"", "not JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[1, 2]", "must be a JSON object, got array"),
        (b"null", "got null"),
        (b'{"video_id": "a", "uri": "file:///a", "uri2": 1}', "unknown field"),
        (b'{"uri": "file:///a"}', "missing required field.*video_id"),
        (b'{"video_id": "a"}', "missing required field.*uri"),
        (b'{"video_id": 5, "uri": "file:///a"}', "video_id must be a string, got number"),
        (b'{"video_id": "", "uri": "file:///a"}', "video_id '' is invalid"),
        (b'{"video_id": "a/b", "uri": "file:///a"}', "invalid"),
        (enc({"video_id": "a" * 129, "uri": "file:///a"}), "129 characters"),
        (b'{"video_id": "a", "uri": "ftp://host/a"}', "must start with file://, http:// or https://"),
        (b'{"video_id": "a", "uri": "relative/a.mp4"}', "must start with"),
        (b'{"video_id": "a", "uri": "file:a.mp4"}', "absolute path"),
        (b'{"video_id": "a", "uri": ""}', "must not be empty"),
        (b'{"video_id": "a", "uri": "file:///a\\n"}', "control characters"),
        (b'{"video_id": "a", "uri": "file:///a", "title": 3}', "title must be a string"),
        (enc({"video_id": "a", "uri": "file:///a", "title": "t" * (MAX_TITLE_CHARS + 1)}), "title is 1001 characters"),
        (b'{"video_id": "a", "uri": "file:///a", "metadata": [1]}', "metadata must be a JSON object"),
        (enc({"video_id": "a", "uri": "file:///a", "metadata": {"x": "y" * MAX_METADATA_BYTES}}), "metadata is"),
        (enc({"video_id": "a", "uri": "file:///a", "metadata": {"a": [[[[[[[[[1]]]]]]]]]}}), "nested deeper"),
        (b'{"video_id": "a", "uri": "file:///a", "uploaded_at": "yesterday"}', "not an ISO-8601"),
        (b'{"video_id": "a", "uri": "file:///a", "schema_version": 2}', "schema_version 2 is not supported"),
        (b'{"video_id": "a", "uri": "file:///a", "schema_version": true}', "schema_version must be the integer"),
        (b'{"video_id": "a", "uri": "file:///a", "x": NaN}', "NaN"),
        (b"[" * 100000 + b"]" * 100000, "over the limit"),
        (b"[" * 5000 + b"]" * 5000, "nested too deeply|must be a JSON object"),
        (None, "tombstone"),
    ],
)
def test_invalid_uploads_say_why(value: bytes | None, message: str) -> None:
    with pytest.raises(InvalidEventError, match=message):
        parse_upload(value)


def test_key_must_match_video_id() -> None:
    with pytest.raises(InvalidEventError, match="differs from video_id"):
        parse_upload(enc(VALID), b"other")


def test_video_id_hint() -> None:
    assert video_id_hint(b'{"video_id": "abc", "uri": 5}', None) == "abc"
    assert video_id_hint(b"\xff garbage", b"key-1") == "key-1"
    assert video_id_hint(b'{"video_id": "bad id"}', b"bad key") is None
    assert video_id_hint(None, None) is None


# Any value that is not a well-formed upload must be rejected with InvalidEventError,
# never crash the parser with another exception.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.binary(max_size=300))
def test_random_bytes_never_crash(value: bytes) -> None:
    with pytest.raises(InvalidEventError):
        parse_upload(value)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values)
def test_random_json_shapes_rejected(value: Any) -> None:
    with pytest.raises(InvalidEventError):
        parse_upload(enc(value))


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(sorted(VALID)), replacement=json_values)
def test_mutated_valid_events_are_valid_or_rejected_precisely(field: str, replacement: Any) -> None:
    mutated = {**VALID, field: replacement}
    try:
        event = parse_upload(enc(mutated))
    except InvalidEventError as exc:
        assert field in str(exc) or "field" in str(exc)
    else:  # only values the schema allows survive
        assert getattr(event, field) in (replacement, "", None, 1)


def test_embedding_round_trip() -> None:
    v = np.random.default_rng(0).standard_normal(256).astype(np.float32)
    text = encode_embedding(v)
    assert base64.b64decode(text) == v.astype("<f4").tobytes()
    np.testing.assert_array_equal(decode_embedding(text), v)


def test_segments_event_round_trip() -> None:
    emb = np.ones(4, np.float32) / 2
    value = segments_event("vid", 3, [(0, 0.0, 5.0, emb), (1, 5.0, 9.5, emb)])
    assert value["segments"][1]["segment_id"] == "vid#1" and value["op"] == "upsert"
    parsed = parse_segments_event(json.dumps(value).encode())
    assert parsed.version == 3 and [s.segment_id for s in parsed.segments] == ["vid#0", "vid#1"]
    np.testing.assert_array_equal(parsed.segments[1].embedding, emb)
    with pytest.raises(InvalidEventError, match="segment_id"):
        parse_segments_event(json.dumps({**value, "video_id": "other"}).encode())


def test_completion_and_dead_letter_shapes() -> None:
    done = completion_event("v", "done", "m-1", [("cat", 0.91234)], version=2, num_segments=3)
    assert done["tags"] == [{"tag": "cat", "score": 0.9123}] and "error" not in done
    failed = completion_event("v", "failed", "m-1", error="bad", error_type="VideoUnreadableError")
    assert failed["error_type"] == "VideoUnreadableError"
    with pytest.raises(ValueError):
        completion_event("v", "queued", "m")
    dl = dead_letter("t", 1, 7, b"k", b"\xff\x00", "InvalidEventError", "not UTF-8", 1)
    assert dl["payload_encoding"] == "base64" and base64.b64decode(dl["payload"]) == b"\xff\x00"
    assert dl["key"] == "k" and dl["offset"] == 7 and dl["attempts"] == 1 and dl["failed_at"]
    assert json.loads(json.dumps(dl)) == dl
