"""YouTube-8M frame-level TFRecords, read and written without TensorFlow.

Three layers, each small enough to check by eye:

1. **TFRecord framing** - every record is ``length`` (u64 little-endian),
   ``masked_crc32c(length bytes)`` (u32 LE), ``data``, ``masked_crc32c(data)``
   (u32 LE). CRC-32C (Castagnoli) is computed in pure Python from a 256-entry
   table; ``mask(c) = ((c >> 15) | (c << 17)) + 0xA282EAD8 (mod 2^32)``.
2. **Protocol buffers** - a minimal wire-format codec (varints, 32/64-bit and
   length-delimited fields) for ``tf.train.SequenceExample``::

       SequenceExample { Features context = 1; FeatureLists feature_lists = 2; }
       Features        { map<string, Feature> feature = 1; }       # entry: key = 1, value = 2
       FeatureLists    { map<string, FeatureList> feature_list = 1; }
       FeatureList     { repeated Feature feature = 1; }
       Feature         { oneof { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }

   ``tf.train.Example`` (video-level records) has the same field 1, so both parse.
3. **YouTube-8M semantics** - context ``id``, ``labels`` and, in the 2019
   segment-rated data, ``segment_start_times`` / ``segment_end_times`` (frame
   indices; segments are 5 frames), ``segment_labels`` and ``segment_scores``;
   feature lists ``rgb`` (1024 uint8 per frame) and ``audio`` (128 uint8),
   dequantized as the starter code does:
   ``x * (max - min) / 255 + (max - min) / 512 + min`` with max 2, min -2.
   Video-level records (``mean_rgb``, ``mean_audio`` floats) become one frame.
"""

from __future__ import annotations

import functools
import logging
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from segtag.datasets.example import Example, Segment

log = logging.getLogger(__name__)

MAX_QUANTIZED = 2.0
MIN_QUANTIZED = -2.0
SEGMENT_FRAMES = 5
YT8M_CLASSES = 3862
CRC_MASK_DELTA = 0xA282EAD8

Value = list[bytes] | list[float] | list[int]


class TFRecordError(ValueError):
    """A truncated or corrupt TFRecord file, or a record that is not a (Sequence)Example."""


# --- CRC-32C -----------------------------------------------------------------


@functools.cache
def _crc_table() -> tuple[int, ...]:
    poly = 0x82F63B78  # Castagnoli polynomial, bit-reversed
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


def crc32c(data: bytes | memoryview) -> int:
    """CRC-32C (Castagnoli) of ``data``; crc32c(b"123456789") == 0xE3069283."""
    table = _crc_table()
    crc = 0xFFFFFFFF
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes | memoryview) -> int:
    """The CRC as TFRecord stores it (rotated and offset so CRCs of CRCs stay well distributed)."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + CRC_MASK_DELTA) & 0xFFFFFFFF


# --- TFRecord framing ----------------------------------------------------------


def _read_record(f: BinaryIO, path: str | Path, verify: bool) -> bytes | None:
    header = f.read(12)
    if not header:
        return None
    if len(header) < 12:
        raise TFRecordError(f"{path}: truncated record header at byte {f.tell() - len(header)}")
    (length,) = struct.unpack("<Q", header[:8])
    (length_crc,) = struct.unpack("<I", header[8:])
    if verify and masked_crc32c(header[:8]) != length_crc:
        raise TFRecordError(f"{path}: corrupt record length at byte {f.tell() - 12} (crc mismatch)")
    data = f.read(length)
    footer = f.read(4)
    if len(data) < length or len(footer) < 4:
        raise TFRecordError(f"{path}: truncated record at byte {f.tell()}")
    if verify and masked_crc32c(data) != struct.unpack("<I", footer)[0]:
        raise TFRecordError(f"{path}: corrupt record data ending at byte {f.tell()} (crc mismatch)")
    return data


def read_tfrecords(path: str | Path, verify: bool = True) -> Iterator[bytes]:
    """The records of a TFRecord file (uncompressed), checking both CRCs unless ``verify=False``."""
    with open(path, "rb") as f:
        while (data := _read_record(f, path, verify)) is not None:
            yield data


def write_tfrecords(path: str | Path, records: Iterable[bytes]) -> int:
    """Write records with TFRecord framing; returns how many were written."""
    n = 0
    with open(path, "wb") as f:
        for data in records:
            length = struct.pack("<Q", len(data))
            f.write(length + struct.pack("<I", masked_crc32c(length)))
            f.write(data + struct.pack("<I", masked_crc32c(data)))
            n += 1
    return n


# --- protobuf wire format --------------------------------------------------------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise TFRecordError("truncated varint in protobuf message")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise TFRecordError("varint longer than 10 bytes in protobuf message")


def _fields(buf: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value): int for varints and fixed, bytes for length-delimited."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise TFRecordError("length-delimited field runs past the end of its message")
            value, pos = buf[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise TFRecordError(f"unsupported protobuf wire type {wire} (field {number})")
        yield number, wire, value


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _packed_varints(buf: bytes) -> list[int]:
    out, pos = [], 0
    while pos < len(buf):
        v, pos = _varint(buf, pos)
        out.append(_signed64(v))
    return out


def _decode_list(kind: int, buf: bytes) -> Value:
    """The values of a BytesList (1), FloatList (2) or Int64List (3) message."""
    bytes_out: list[bytes] = []
    floats: list[float] = []
    ints: list[int] = []
    for number, wire, value in _fields(buf):
        if number != 1:
            continue
        if kind == 1:
            bytes_out.append(bytes(value))
        elif kind == 2:
            # packed (wire 2) is what TensorFlow writes; unpacked fixed32 (wire 5) is legal too
            floats.extend(np.frombuffer(value, "<f4").tolist())
        elif wire == 2:
            ints.extend(_packed_varints(value))
        else:
            ints.append(_signed64(value))
    return bytes_out if kind == 1 else floats if kind == 2 else ints


def _decode_feature(buf: bytes) -> Value:
    for number, _, value in _fields(buf):
        if number in (1, 2, 3):
            return _decode_list(number, value)
    return []


def _decode_map(buf: bytes) -> Iterator[tuple[str, bytes]]:
    """Entries (key, value message bytes) of a map<string, message> field 1."""
    for number, _, entry in _fields(buf):
        if number != 1:
            continue
        key, value = "", b""
        for n, _, v in _fields(entry):
            if n == 1:
                key = bytes(v).decode("utf-8")
            elif n == 2:
                value = bytes(v)
        yield key, value


def parse_sequence_example(buf: bytes) -> tuple[dict[str, Value], dict[str, list[Value]]]:
    """(context features, feature lists) of a serialized SequenceExample (or Example)."""
    context: dict[str, Value] = {}
    lists: dict[str, list[Value]] = {}
    for number, wire, value in _fields(buf):
        if wire != 2:
            raise TFRecordError(f"field {number} of a SequenceExample must be a message")
        if number == 1:
            context.update((k, _decode_feature(v)) for k, v in _decode_map(value))
        elif number == 2:
            for name, fl in _decode_map(value):
                lists[name] = [_decode_feature(f) for n, _, f in _fields(fl) if n == 1]
    return context, lists


def _enc_varint(v: int) -> bytes:
    v &= (1 << 64) - 1  # negative int64 -> two's complement, 10 bytes
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _enc_field(number: int, payload: bytes) -> bytes:
    return _enc_varint(number << 3 | 2) + _enc_varint(len(payload)) + payload


def _enc_feature(values: Sequence[Any] | np.ndarray) -> bytes:
    """A Feature message; the list type follows the Python type of the values."""
    vals = list(values)
    if vals and isinstance(vals[0], bytes | str):
        payload = b"".join(_enc_field(1, v.encode() if isinstance(v, str) else v) for v in vals)
        return _enc_field(1, payload)
    if vals and isinstance(vals[0], float | np.floating):
        return _enc_field(2, _enc_field(1, np.asarray(vals, "<f4").tobytes()))
    return _enc_field(3, _enc_field(1, b"".join(_enc_varint(int(v)) for v in vals)))


def _enc_map(items: Mapping[str, bytes]) -> bytes:
    return b"".join(_enc_field(1, _enc_field(1, k.encode()) + _enc_field(2, v)) for k, v in items.items())


def encode_sequence_example(
    context: Mapping[str, Sequence[Any] | np.ndarray], feature_lists: Mapping[str, Sequence[Sequence[Any]]]
) -> bytes:
    """Serialize a SequenceExample (bytes/str -> BytesList, float -> FloatList, int -> Int64List)."""
    ctx = _enc_map({k: _enc_feature(v) for k, v in context.items()})
    fls = _enc_map({k: b"".join(_enc_field(1, _enc_feature(f)) for f in frames) for k, frames in feature_lists.items()})
    return _enc_field(1, ctx) + (_enc_field(2, fls) if feature_lists else b"")


# --- YouTube-8M ----------------------------------------------------------------


def dequantize(q: np.ndarray, max_q: float = MAX_QUANTIZED, min_q: float = MIN_QUANTIZED) -> np.ndarray:
    """uint8 -> float32 as the starter code's Dequantize (with its half-bucket bias)."""
    span = max_q - min_q
    return (q.astype(np.float32) * (span / 255.0) + (span / 512.0 + min_q)).astype(np.float32)


def quantize(x: np.ndarray, max_q: float = MAX_QUANTIZED, min_q: float = MIN_QUANTIZED) -> np.ndarray:
    """float -> uint8, the inverse of :func:`dequantize` up to rounding."""
    span = max_q - min_q
    return np.clip(np.round((np.asarray(x) - span / 512.0 - min_q) * 255.0 / span), 0, 255).astype(np.uint8)


def write_sequence_examples(path: str | Path, examples: Iterable[Mapping[str, Any]]) -> int:
    """Write YouTube-8M style frame-level records.

    Each example maps ``id`` (str), ``labels`` (ints), ``rgb`` (T, 1024) uint8,
    ``audio`` (T, 128) uint8 and optionally ``segment_start_times``,
    ``segment_end_times``, ``segment_labels`` (ints) and ``segment_scores``
    (floats); other keys go to the context as they are.
    """

    def records() -> Iterator[bytes]:
        for ex in examples:
            context: dict[str, Any] = {"id": [str(ex["id"]).encode()], "labels": [int(v) for v in ex["labels"]]}
            for key, value in ex.items():
                if key in ("id", "labels", "rgb", "audio"):
                    continue
                if key == "segment_scores":
                    value = [float(v) for v in value]
                elif key.startswith("segment_"):
                    value = [int(v) for v in value]
                context[key] = value
            lists = {
                name: [[np.asarray(frame, np.uint8).tobytes()] for frame in ex[name]]
                for name in ("rgb", "audio")
                if name in ex
            }
            yield encode_sequence_example(context, lists)

    return write_tfrecords(path, records())


def _frames(lists: dict[str, list[Value]], name: str) -> np.ndarray | None:
    frames = lists.get(name)
    if not frames:
        return None
    raw = b"".join(bytes(f[0]) for f in frames if f)  # type: ignore[arg-type]
    return dequantize(np.frombuffer(raw, np.uint8).reshape(len(frames), -1))


def _segments(context: dict[str, Value], num_classes: int) -> list[Segment]:
    starts = [int(v) for v in context.get("segment_start_times", [])]
    if not starts:
        return []
    ends = [int(v) for v in context.get("segment_end_times", [])] or [s + SEGMENT_FRAMES for s in starts]
    labels = [int(v) for v in context.get("segment_labels", [])]
    scores = [float(v) for v in context.get("segment_scores", [])] or [1.0] * len(starts)
    if not len(starts) == len(ends) == len(labels) == len(scores):
        raise TFRecordError("segment_start_times, _end_times, _labels and _scores differ in length")
    out: list[Segment] = []
    for s, e, c, score in zip(starts, ends, labels, scores, strict=True):
        if not 0 <= c < num_classes:
            continue
        y = np.zeros(num_classes, np.float32)
        rated = np.zeros(num_classes, bool)
        rated[c] = True  # each 2019 rating judges one class of one segment
        y[c] = 1.0 if score >= 0.5 else 0.0
        out.append((s, e if e > s else s + SEGMENT_FRAMES, y, rated))
    return out


def to_example(buf: bytes, num_classes: int = YT8M_CLASSES) -> Example:
    """A YouTube-8M frame-level (or video-level) record as an :class:`Example`."""
    context, lists = parse_sequence_example(buf)
    ids = context.get("id") or [b""]
    video_id = bytes(ids[0]).decode("utf-8", "replace") if isinstance(ids[0], bytes) else str(ids[0])
    rgb, audio = _frames(lists, "rgb"), _frames(lists, "audio")
    if rgb is None and "mean_rgb" in context:  # video-level record: one "frame" of mean features
        rgb = np.asarray(context["mean_rgb"], np.float32)[None]
        audio = np.asarray(context.get("mean_audio", np.zeros(128)), np.float32)[None]
    if rgb is None:
        raise TFRecordError(f"record {video_id!r} has no rgb frames and no mean_rgb")
    T = rgb.shape[0]
    audio_arr = np.zeros((T, 128), np.float32) if audio is None else audio
    audio_mask = np.zeros(T, bool)
    n = min(T, audio_arr.shape[0])
    audio_mask[:n] = audio is not None
    audio_out = np.zeros((T, audio_arr.shape[1]), np.float32)
    audio_out[:n] = audio_arr[:n]
    labels = np.zeros(num_classes, np.float32)
    for c in context.get("labels", []):
        if 0 <= int(c) < num_classes:
            labels[int(c)] = 1.0
    segments = [(s, min(e, T), y, r) for s, e, y, r in _segments(context, num_classes) if s < T]
    return Example(
        video_id=video_id,
        rgb=rgb,
        audio=audio_out,
        audio_mask=audio_mask,
        title=np.zeros(0, np.float32),  # YouTube-8M has no titles
        title_mask=False,
        labels=labels,
        segments=segments,
    )


def tfrecord_files(path: str | Path) -> list[Path]:
    """A .tfrecord file itself, or the sorted *.tfrecord files of a directory."""
    p = Path(path)
    if p.is_file():
        return [p]
    return sorted(p.glob("*.tfrecord")) if p.is_dir() else []


class YT8MDataset:
    """Random access over YouTube-8M TFRecord files.

    Opening scans the framing once (record offsets, ids and label range, without
    reading the frames' CRCs); ``dataset[i]`` reads, verifies and decodes one
    record. ``num_classes`` defaults to the largest label seen + 1, so a toy
    file does not carry a 3862-way classifier; the vocabulary is the class ids.
    """

    def __init__(self, files: Sequence[str | Path], num_classes: int | None = None) -> None:
        self.files = [Path(f) for f in files]
        self.offsets: list[tuple[int, int]] = []  # (file index, byte offset)
        self.video_ids: list[str] = []
        max_label = -1
        for fi, path in enumerate(self.files):
            for offset, data in _scan(path):
                context, _ = parse_sequence_example(_context_only(data))
                ids = context.get("id") or [b""]
                self.video_ids.append(bytes(ids[0]).decode("utf-8", "replace"))  # type: ignore[arg-type]
                labels = [int(v) for v in context.get("labels", [])]
                labels += [int(v) for v in context.get("segment_labels", [])]
                max_label = max([max_label, *labels])
                self.offsets.append((fi, offset))
        self.num_classes = num_classes if num_classes is not None else max(1, max_label + 1)
        self.vocabulary = [str(i) for i in range(self.num_classes)]
        self.root = self.files[0].parent if self.files else Path(".")

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, i: int) -> Example:
        fi, offset = self.offsets[i]
        with open(self.files[fi], "rb") as f:
            f.seek(offset)
            data = _read_record(f, self.files[fi], verify=True)
        if data is None:
            raise TFRecordError(f"{self.files[fi]}: no record at byte {offset}")
        return to_example(data, self.num_classes)


def _scan(path: Path) -> Iterator[tuple[int, bytes]]:
    """(offset, data) of every record, checking only the length CRC (the data CRC is checked on read)."""
    with open(path, "rb") as f:
        while True:
            offset = f.tell()
            header = f.read(12)
            if not header:
                return
            if len(header) < 12 or masked_crc32c(header[:8]) != struct.unpack("<I", header[8:])[0]:
                raise TFRecordError(f"{path}: corrupt or truncated record header at byte {offset}")
            (length,) = struct.unpack("<Q", header[:8])
            data = f.read(length)
            if len(data) < length or len(f.read(4)) < 4:
                raise TFRecordError(f"{path}: truncated record at byte {offset}")
            yield offset, data


def _context_only(buf: bytes) -> bytes:
    """The bytes of field 1 (context) only, so indexing skips decoding the frames."""
    return b"".join(_enc_field(1, bytes(v)) for n, w, v in _fields(buf) if n == 1 and w == 2)
